"""In-memory State for unit tests: the same behaviour as SQLite (transactions roll back), nothing on disk."""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator

from dainode.errors import StateError
from dainode.state.base import (
    Cursor, MatchRecord, OfferRecord, PayoutRecord, RoundRecord, State, Step, TaskRecord, UpdateRecord, check_kind,
)

_TABLES = ("own", "seen", "tasks", "matches", "rounds", "updates", "payouts", "cursors", "steps")


class MemoryState(State):
    def __init__(self) -> None:
        self._t: dict[str, dict] = {name: {} for name in _TABLES}
        self._depth = 0
        self._closed = False

    def close(self) -> None:
        self._closed = True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._closed:
            raise StateError("the state is closed")
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        snapshot = copy.deepcopy(self._t)
        self._depth = 1
        try:
            yield
        except BaseException:
            self._t = snapshot
            raise
        finally:
            self._depth = 0

    def _put(self, table: str, key, value) -> None:
        with self.transaction():
            self._t[table][key] = copy.deepcopy(value)

    def _get(self, table: str, key):
        if self._closed:
            raise StateError("the state is closed")
        return copy.deepcopy(self._t[table].get(key))

    def _all(self, table: str) -> list:
        if self._closed:
            raise StateError("the state is closed")
        return [copy.deepcopy(v) for _, v in sorted(self._t[table].items(), key=lambda kv: kv[0])]

    # offers
    def put_own_offer(self, offer: OfferRecord) -> None:
        check_kind(offer.kind)
        self._put("own", offer.key, offer)

    def get_own_offer(self, key: str) -> OfferRecord | None:
        return self._get("own", key)

    def list_own_offers(self, kind: str | None = None) -> list[OfferRecord]:
        return sorted((o for o in self._all("own") if kind in (None, o.kind)), key=lambda o: (o.updated, o.key))

    def put_seen_offer(self, offer: OfferRecord) -> None:
        check_kind(offer.kind)
        if offer.offer_id is None:
            raise StateError("a seen offer needs its Registry offer_id")
        self._put("seen", offer.offer_id, offer)

    def get_seen_offer(self, offer_id: int) -> OfferRecord | None:
        return self._get("seen", int(offer_id))

    def list_seen_offers(self, kind: str | None = None, *, active: bool | None = None) -> list[OfferRecord]:
        return [o for o in self._all("seen") if kind in (None, o.kind) and active in (None, o.active)]

    # training
    def put_task(self, task: TaskRecord) -> None:
        self._put("tasks", task.task_id, task)

    def get_task(self, task_id: str) -> TaskRecord | None:
        return self._get("tasks", task_id)

    def list_tasks(self, role: str | None = None, status: str | None = None) -> list[TaskRecord]:
        return [t for t in self._all("tasks") if role in (None, t.role) and status in (None, t.status)]

    def put_match(self, match: MatchRecord) -> None:
        self._put("matches", (match.task_id, match.provider), match)

    def list_matches(self, task_id: str) -> list[MatchRecord]:
        return [m for m in self._all("matches") if m.task_id == task_id]

    def put_round(self, rnd: RoundRecord) -> None:
        self._put("rounds", (rnd.task_id, rnd.round), rnd)

    def get_round(self, task_id: str, round: int) -> RoundRecord | None:
        return self._get("rounds", (task_id, round))

    def list_rounds(self, task_id: str) -> list[RoundRecord]:
        return [r for r in self._all("rounds") if r.task_id == task_id]

    def put_update(self, update: UpdateRecord) -> None:
        self._put("updates", (update.task_id, update.round, update.provider), update)

    def list_updates(self, task_id: str, round: int | None = None) -> list[UpdateRecord]:
        return [u for u in self._all("updates") if u.task_id == task_id and round in (None, u.round)]

    def put_payout(self, payout: PayoutRecord) -> None:
        self._put("payouts", (payout.task_id, payout.account), payout)

    def list_payouts(self, task_id: str) -> list[PayoutRecord]:
        return [p for p in self._all("payouts") if p.task_id == task_id]

    # cursors
    def get_cursor(self, consumer: str) -> Cursor | None:
        return self._get("cursors", consumer)

    def set_cursor(self, cursor: Cursor) -> None:
        self._put("cursors", cursor.consumer, cursor)

    # steps
    def get_step(self, step_id: str) -> Step | None:
        return self._get("steps", step_id)

    def _put_step(self, step: Step) -> None:
        self._put("steps", step.step_id, step)

    def list_steps(self, kind: str | None = None, *, unfinished: bool = False) -> list[Step]:
        steps = [s for s in self._all("steps") if kind in (None, s.kind) and not (unfinished and s.finished)]
        return sorted(steps, key=lambda s: (s.created, s.step_id))
