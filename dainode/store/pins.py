"""Recursive and direct pins in SQLite, and garbage collection of unpinned blocks."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dainode.errors import InvalidBlock, StoreError
from dainode.store.blockstore import Blockstore
from dainode.store.cid import CID, RAW

log = logging.getLogger(__name__)

RECURSIVE = "recursive"
DIRECT = "direct"
_TYPES = (RECURSIVE, DIRECT)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pins (
    key BLOB PRIMARY KEY,        -- CIDv1 bytes: a CIDv0 and its CIDv1 are one pin
    cid TEXT NOT NULL,           -- as given when pinned (shown by `pin ls`)
    type TEXT NOT NULL CHECK (type IN ('recursive', 'direct')),
    created REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Pin:
    cid: CID
    type: str
    created: float


def _pin_key(cid: CID) -> bytes:
    return cid.to_v1().to_bytes()


class PinStore:
    """Pins keyed by CID (version-independent). Every change is one SQLite transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open pin database {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, fn):
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result
            except sqlite3.Error as e:
                raise StoreError(f"pin database {self.path}: {e}") from e

    def add(self, cid: CID, *, recursive: bool = True) -> str:
        """Pin `cid`; returns the pin type now in effect.

        As in kubo, a recursive pin replaces a direct one, and asking for a direct pin of a
        recursively pinned CID leaves the recursive pin (it already keeps the block).
        """
        want = RECURSIVE if recursive else DIRECT

        def op(db):
            row = db.execute("SELECT type FROM pins WHERE key = ?", (_pin_key(cid),)).fetchone()
            if row and (row[0] == RECURSIVE or row[0] == want):
                return row[0]
            db.execute(
                "INSERT INTO pins (key, cid, type, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET type = excluded.type",
                (_pin_key(cid), str(cid), want, time.time()),
            )
            return want

        return self._tx(op)

    def remove(self, cid: CID) -> bool:
        """Unpin `cid` (either type); False if it was not pinned."""
        return self._tx(lambda db: db.execute("DELETE FROM pins WHERE key = ?", (_pin_key(cid),)).rowcount > 0)

    def is_pinned(self, cid: CID) -> str | None:
        """"recursive", "direct" or None (indirect pins are not tracked here; see `gc`)."""
        row = self._tx(lambda db: db.execute("SELECT type FROM pins WHERE key = ?", (_pin_key(cid),)).fetchone())
        return row[0] if row else None

    def list(self, type: str | None = None) -> list[Pin]:
        if type is not None and type not in _TYPES:
            raise StoreError(f"pin type must be 'recursive' or 'direct', not {type!r}")

        def op(db):
            if type is None:
                return db.execute("SELECT cid, type, created FROM pins ORDER BY created, cid").fetchall()
            return db.execute("SELECT cid, type, created FROM pins WHERE type = ? ORDER BY created, cid", (type,)).fetchall()

        return [Pin(CID.parse(c), t, created) for c, t, created in self._tx(op)]

    def reachable(self, blockstore: Blockstore, get_links: Callable[[CID, bytes], list[CID]]) -> tuple[set[bytes], int]:
        """Multihashes every pin keeps, and how many pinned blocks are missing locally.

        A missing block's children cannot be known, so they are not protected: an
        incomplete pinned DAG keeps what is reachable through local blocks only.
        """
        keep: set[bytes] = set()
        missing = 0
        seen: set[bytes] = set()
        stack: list[CID] = []
        for pin in self.list():
            keep.add(pin.cid.key())
            if pin.type == RECURSIVE:
                stack.append(pin.cid)
        while stack:
            cid = stack.pop()
            # dedupe on (codec, multihash): the same bytes under another codec have other links
            ident = cid.to_v1().to_bytes()
            if ident in seen:
                continue
            seen.add(ident)
            keep.add(cid.key())
            if cid.codec == RAW:
                continue
            block = blockstore.get(cid)
            if block is None:
                missing += 1
                continue
            try:
                stack.extend(get_links(cid, block))
            except InvalidBlock as e:
                log.warning("gc: pinned block %s does not decode (%s); its children are not protected", cid, e)
        return keep, missing

    def gc(
        self,
        blockstore: Blockstore,
        get_links: Callable[[CID, bytes], list[CID]],
        *,
        protect: Callable[[bytes], bool] | None = None,
    ) -> dict:
        """Delete every block not reachable from a recursive pin and not directly pinned.

        The candidates are listed *before* the pins are walked, so a block written while
        gc runs is never collected. The caller must keep pin-less writes that are about to
        be pinned from racing with gc (the store service holds a lock), or pass `protect`
        (multihash -> True to keep). Raises StoreError for a pinned codec it cannot follow,
        before deleting anything.
        """
        candidates = list(blockstore.keys())
        keep, missing = self.reachable(blockstore, get_links)
        removed = 0
        freed = 0
        for mh in candidates:
            if mh in keep or (protect is not None and protect(mh)):
                continue
            cid = CID(1, RAW, mh)
            size = blockstore.size(cid) or 0
            blockstore.delete(cid)
            removed += 1
            freed += size
        return {"removed": removed, "freed_bytes": freed, "kept": len(candidates) - removed, "missing_pinned": missing}
