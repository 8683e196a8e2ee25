"""SQLite State in <data-dir>/state.db: WAL, one transaction per logical step, forward migrations by user_version."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

from dainode.errors import StateError
from dainode.state.base import (
    Cursor, MatchRecord, OfferRecord, PayoutRecord, RoundRecord, State, Step, TaskRecord, UpdateRecord, check_kind,
)

# MIGRATIONS[i] takes the schema from version i to i+1. Append only; never edit a released one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE own_offers (key TEXT PRIMARY KEY, kind TEXT NOT NULL, offer_id INTEGER, owner TEXT NOT NULL,
        peer_id TEXT NOT NULL, price_wei TEXT NOT NULL, cid TEXT NOT NULL, active INTEGER NOT NULL, doc TEXT NOT NULL,
        block INTEGER NOT NULL, updated REAL NOT NULL);
    CREATE TABLE seen_offers (offer_id INTEGER PRIMARY KEY, key TEXT NOT NULL, kind TEXT NOT NULL, owner TEXT NOT NULL,
        peer_id TEXT NOT NULL, price_wei TEXT NOT NULL, cid TEXT NOT NULL, active INTEGER NOT NULL, doc TEXT NOT NULL,
        block INTEGER NOT NULL, updated REAL NOT NULL);
    CREATE TABLE tasks (task_id TEXT PRIMARY KEY, role TEXT NOT NULL, status TEXT NOT NULL, doc TEXT NOT NULL, updated REAL NOT NULL);
    CREATE TABLE matches (task_id TEXT NOT NULL, provider TEXT NOT NULL, status TEXT NOT NULL, doc TEXT NOT NULL,
        updated REAL NOT NULL, PRIMARY KEY (task_id, provider));
    CREATE TABLE rounds (task_id TEXT NOT NULL, round INTEGER NOT NULL, status TEXT NOT NULL, doc TEXT NOT NULL,
        updated REAL NOT NULL, PRIMARY KEY (task_id, round));
    CREATE TABLE updates (task_id TEXT NOT NULL, round INTEGER NOT NULL, provider TEXT NOT NULL, cid TEXT NOT NULL,
        status TEXT NOT NULL, doc TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (task_id, round, provider));
    CREATE TABLE payouts (task_id TEXT NOT NULL, account TEXT NOT NULL, amount_wei TEXT NOT NULL, status TEXT NOT NULL,
        doc TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (task_id, account));
    CREATE TABLE cursors (consumer TEXT PRIMARY KEY, block INTEGER NOT NULL, block_hash TEXT NOT NULL, doc TEXT NOT NULL);
    CREATE TABLE steps (step_id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, intent TEXT NOT NULL,
        effect TEXT NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
    CREATE INDEX steps_unfinished ON steps (status, created);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_OFFER_COLS = "key, kind, offer_id, owner, peer_id, price_wei, cid, active, doc, block, updated"


def _j(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _offer_row(o: OfferRecord) -> tuple:
    return (o.key, o.kind, o.offer_id, o.owner, o.peer_id, str(o.price_wei), o.cid, int(o.active), _j(o.doc), o.block, o.updated)


def _offer(row) -> OfferRecord:
    key, kind, offer_id, owner, peer_id, price, cid, active, doc, block, updated = row
    return OfferRecord(key=key, kind=kind, offer_id=offer_id, owner=owner, peer_id=peer_id, price_wei=int(price), cid=cid,
                       active=bool(active), doc=json.loads(doc), block=block, updated=updated)


class SqliteState(State):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists()
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if fresh:
                os.chmod(self.path, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a finished step survives power loss, not only SIGKILL
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the node's state {self.path}: {exc}; is the disk full or the file damaged?") from exc

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} has state schema version {version}, newer than this dainode's {SCHEMA_VERSION}; "
                "run the newer dainode (state is never migrated backwards)"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                for stmt in MIGRATIONS[target - 1].split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version = {target}")

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"state {self.path}: cannot begin a transaction: {exc}") from exc
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateError(f"state {self.path}: commit failed: {exc}") from exc

    def _exec(self, sql: str, params: tuple = ()) -> None:
        with self.transaction():
            try:
                self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise StateError(f"state {self.path}: {exc}") from exc

    def _rows(self, sql: str, params: tuple = ()) -> list:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"state {self.path}: {exc}") from exc

    # offers
    def put_own_offer(self, offer: OfferRecord) -> None:
        check_kind(offer.kind)
        self._exec(f"INSERT OR REPLACE INTO own_offers ({_OFFER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", _offer_row(offer))

    def get_own_offer(self, key: str) -> OfferRecord | None:
        rows = self._rows(f"SELECT {_OFFER_COLS} FROM own_offers WHERE key = ?", (key,))
        return _offer(rows[0]) if rows else None

    def list_own_offers(self, kind: str | None = None) -> list[OfferRecord]:
        rows = self._rows(f"SELECT {_OFFER_COLS} FROM own_offers WHERE ? IS NULL OR kind = ? ORDER BY updated, key", (kind, kind))
        return [_offer(r) for r in rows]

    def put_seen_offer(self, offer: OfferRecord) -> None:
        check_kind(offer.kind)
        if offer.offer_id is None:
            raise StateError("a seen offer needs its Registry offer_id")
        self._exec(f"INSERT OR REPLACE INTO seen_offers ({_OFFER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", _offer_row(offer))

    def get_seen_offer(self, offer_id: int) -> OfferRecord | None:
        rows = self._rows(f"SELECT {_OFFER_COLS} FROM seen_offers WHERE offer_id = ?", (int(offer_id),))
        return _offer(rows[0]) if rows else None

    def list_seen_offers(self, kind: str | None = None, *, active: bool | None = None) -> list[OfferRecord]:
        act = None if active is None else int(active)
        rows = self._rows(
            f"SELECT {_OFFER_COLS} FROM seen_offers WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR active = ?) ORDER BY offer_id",
            (kind, kind, act, act),
        )
        return [_offer(r) for r in rows]

    # training
    def put_task(self, task: TaskRecord) -> None:
        self._exec("INSERT OR REPLACE INTO tasks VALUES (?,?,?,?,?)", (task.task_id, task.role, task.status, _j(task.doc), task.updated))

    def get_task(self, task_id: str) -> TaskRecord | None:
        rows = self._rows("SELECT task_id, role, status, doc, updated FROM tasks WHERE task_id = ?", (task_id,))
        return TaskRecord(rows[0][0], rows[0][1], rows[0][2], json.loads(rows[0][3]), rows[0][4]) if rows else None

    def list_tasks(self, role: str | None = None, status: str | None = None) -> list[TaskRecord]:
        rows = self._rows(
            "SELECT task_id, role, status, doc, updated FROM tasks WHERE (? IS NULL OR role = ?) AND (? IS NULL OR status = ?) ORDER BY task_id",
            (role, role, status, status),
        )
        return [TaskRecord(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def put_match(self, match: MatchRecord) -> None:
        self._exec("INSERT OR REPLACE INTO matches VALUES (?,?,?,?,?)", (match.task_id, match.provider, match.status, _j(match.doc), match.updated))

    def list_matches(self, task_id: str) -> list[MatchRecord]:
        rows = self._rows("SELECT task_id, provider, status, doc, updated FROM matches WHERE task_id = ? ORDER BY provider", (task_id,))
        return [MatchRecord(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def put_round(self, rnd: RoundRecord) -> None:
        self._exec("INSERT OR REPLACE INTO rounds VALUES (?,?,?,?,?)", (rnd.task_id, rnd.round, rnd.status, _j(rnd.doc), rnd.updated))

    def get_round(self, task_id: str, round: int) -> RoundRecord | None:
        rows = self._rows("SELECT task_id, round, status, doc, updated FROM rounds WHERE task_id = ? AND round = ?", (task_id, round))
        return RoundRecord(rows[0][0], rows[0][1], rows[0][2], json.loads(rows[0][3]), rows[0][4]) if rows else None

    def list_rounds(self, task_id: str) -> list[RoundRecord]:
        rows = self._rows("SELECT task_id, round, status, doc, updated FROM rounds WHERE task_id = ? ORDER BY round", (task_id,))
        return [RoundRecord(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def put_update(self, update: UpdateRecord) -> None:
        u = update
        self._exec("INSERT OR REPLACE INTO updates VALUES (?,?,?,?,?,?,?)", (u.task_id, u.round, u.provider, u.cid, u.status, _j(u.doc), u.updated))

    def list_updates(self, task_id: str, round: int | None = None) -> list[UpdateRecord]:
        rows = self._rows(
            "SELECT task_id, round, provider, cid, status, doc, updated FROM updates WHERE task_id = ? AND (? IS NULL OR round = ?) "
            "ORDER BY round, provider",
            (task_id, round, round),
        )
        return [UpdateRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def put_payout(self, payout: PayoutRecord) -> None:
        p = payout
        self._exec("INSERT OR REPLACE INTO payouts VALUES (?,?,?,?,?,?)", (p.task_id, p.account, str(p.amount_wei), p.status, _j(p.doc), p.updated))

    def list_payouts(self, task_id: str) -> list[PayoutRecord]:
        rows = self._rows("SELECT task_id, account, amount_wei, status, doc, updated FROM payouts WHERE task_id = ? ORDER BY account", (task_id,))
        return [PayoutRecord(r[0], r[1], int(r[2]), r[3], json.loads(r[4]), r[5]) for r in rows]

    # cursors
    def get_cursor(self, consumer: str) -> Cursor | None:
        rows = self._rows("SELECT consumer, block, block_hash, doc FROM cursors WHERE consumer = ?", (consumer,))
        return Cursor(rows[0][0], rows[0][1], rows[0][2], json.loads(rows[0][3])) if rows else None

    def set_cursor(self, cursor: Cursor) -> None:
        # A cursor moves with every block (dozens of commits a round, each an fsync of ~1.5 ms on the event loop's
        # thread), and losing its last moves only replays events, which every consumer takes at least once anyway.
        # So it commits without the fsync: atomic and safe from a SIGKILL as ever (WAL), but on power loss it may
        # fall back to the position of the last fully synced commit.
        with self._lock:
            relaxed = not self._depth  # inside a caller's transaction, that one decides
            if relaxed:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._exec("INSERT OR REPLACE INTO cursors VALUES (?,?,?,?)",
                           (cursor.consumer, cursor.block, cursor.block_hash, _j(cursor.doc)))
            finally:
                if relaxed:
                    self._db.execute("PRAGMA synchronous=FULL")

    # steps
    _STEP_COLS = "step_id, kind, status, intent, effect, result, error, created, updated"

    @staticmethod
    def _step(r) -> Step:
        return Step(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), json.loads(r[5]), r[6], r[7], r[8])

    def get_step(self, step_id: str) -> Step | None:
        rows = self._rows(f"SELECT {self._STEP_COLS} FROM steps WHERE step_id = ?", (step_id,))
        return self._step(rows[0]) if rows else None

    def _put_step(self, s: Step) -> None:
        self._exec(
            f"INSERT OR REPLACE INTO steps ({self._STEP_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (s.step_id, s.kind, s.status, _j(s.intent), _j(s.effect), _j(s.result), s.error, s.created, s.updated),
        )

    def list_steps(self, kind: str | None = None, *, unfinished: bool = False) -> list[Step]:
        rows = self._rows(
            f"SELECT {self._STEP_COLS} FROM steps WHERE (? IS NULL OR kind = ?) AND (? = 0 OR status NOT IN ('done', 'failed')) "
            "ORDER BY created, step_id",
            (kind, kind, int(unfinished)),
        )
        return [self._step(r) for r in rows]
