"""The durable-state interface every role uses (an ABC) and its record types."""

from __future__ import annotations

import abc
import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

# Step status: intent written -> effect recorded (e.g. a signed tx hash) -> done | failed.
INTENT, EFFECT, DONE, FAILED = "intent", "effect", "done", "failed"
STEP_STATUSES = (INTENT, EFFECT, DONE, FAILED)
OFFER_KINDS = ("data", "compute")


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class OfferRecord:
    """An offer, own or seen. `offer_id` is the Registry id (None until registered); `doc` the schema/spec document."""

    key: str  # own offers: the step id that creates it; seen offers: str(offer_id)
    kind: str
    offer_id: int | None = None
    owner: str = ""  # Ethereum address
    peer_id: str = ""
    price_wei: int = 0
    cid: str = ""
    active: bool = True
    doc: dict = field(default_factory=dict)
    block: int = 0  # chain block of the last registry event applied
    updated: float = field(default_factory=now)


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    role: str  # the local role that follows it (model, data, compute)
    status: str
    doc: dict = field(default_factory=dict)
    updated: float = field(default_factory=now)


@dataclass(frozen=True)
class MatchRecord:
    task_id: str
    provider: str  # Ethereum address of the data provider matched
    status: str
    doc: dict = field(default_factory=dict)
    updated: float = field(default_factory=now)


@dataclass(frozen=True)
class RoundRecord:
    task_id: str
    round: int
    status: str
    doc: dict = field(default_factory=dict)
    updated: float = field(default_factory=now)


@dataclass(frozen=True)
class UpdateRecord:
    task_id: str
    round: int
    provider: str
    cid: str
    status: str
    doc: dict = field(default_factory=dict)
    updated: float = field(default_factory=now)


@dataclass(frozen=True)
class PayoutRecord:
    task_id: str
    account: str
    amount_wei: int
    status: str
    doc: dict = field(default_factory=dict)
    updated: float = field(default_factory=now)


@dataclass(frozen=True)
class Cursor:
    """Where one consumer of chain events stands: every event up to `block` was handled."""

    consumer: str
    block: int
    block_hash: str = ""
    doc: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One step with an outside effect: intent, then effect (e.g. signed tx, CID), then result."""

    step_id: str
    kind: str
    status: str
    intent: dict
    effect: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    error: str = ""
    created: float = field(default_factory=now)
    updated: float = field(default_factory=now)

    @property
    def finished(self) -> bool:
        return self.status in (DONE, FAILED)


class State(abc.ABC):
    """Everything a role must remember across a crash.

    Every method is one transaction; `transaction()` groups several into one (nested
    calls join the outer one), so a logical step is written completely or not at all.
    Methods are synchronous: each is a small local write (a few ms with fsync).
    """

    # --- lifecycle ------------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager: ...

    # --- offers ---------------------------------------------------------------------
    @abc.abstractmethod
    def put_own_offer(self, offer: OfferRecord) -> None: ...

    @abc.abstractmethod
    def get_own_offer(self, key: str) -> OfferRecord | None: ...

    @abc.abstractmethod
    def list_own_offers(self, kind: str | None = None) -> list[OfferRecord]: ...

    @abc.abstractmethod
    def put_seen_offer(self, offer: OfferRecord) -> None:
        """Insert or replace a network offer (keyed by its offer_id)."""

    @abc.abstractmethod
    def get_seen_offer(self, offer_id: int) -> OfferRecord | None: ...

    @abc.abstractmethod
    def list_seen_offers(self, kind: str | None = None, *, active: bool | None = None) -> list[OfferRecord]: ...

    # --- training (used by the task roles) ------------------------------------------
    @abc.abstractmethod
    def put_task(self, task: TaskRecord) -> None: ...

    @abc.abstractmethod
    def get_task(self, task_id: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    def list_tasks(self, role: str | None = None, status: str | None = None) -> list[TaskRecord]: ...

    @abc.abstractmethod
    def put_match(self, match: MatchRecord) -> None: ...

    @abc.abstractmethod
    def list_matches(self, task_id: str) -> list[MatchRecord]: ...

    @abc.abstractmethod
    def put_round(self, rnd: RoundRecord) -> None: ...

    @abc.abstractmethod
    def get_round(self, task_id: str, round: int) -> RoundRecord | None: ...

    @abc.abstractmethod
    def list_rounds(self, task_id: str) -> list[RoundRecord]: ...

    @abc.abstractmethod
    def put_update(self, update: UpdateRecord) -> None: ...

    @abc.abstractmethod
    def list_updates(self, task_id: str, round: int | None = None) -> list[UpdateRecord]: ...

    @abc.abstractmethod
    def put_payout(self, payout: PayoutRecord) -> None: ...

    @abc.abstractmethod
    def list_payouts(self, task_id: str) -> list[PayoutRecord]: ...

    # --- chain-event cursors ----------------------------------------------------------
    @abc.abstractmethod
    def get_cursor(self, consumer: str) -> Cursor | None: ...

    @abc.abstractmethod
    def set_cursor(self, cursor: Cursor) -> None:
        """Atomic and kept across a crash of the process; on power loss it may fall back (events replay)."""

    # --- steps: intent -> effect -> result ----------------------------------------------
    @abc.abstractmethod
    def get_step(self, step_id: str) -> Step | None: ...

    @abc.abstractmethod
    def _put_step(self, step: Step) -> None: ...

    @abc.abstractmethod
    def list_steps(self, kind: str | None = None, *, unfinished: bool = False) -> list[Step]: ...

    def begin_step(self, step_id: str, kind: str, intent: dict) -> Step:
        """Record the intent (once): an existing step with this id is returned unchanged, so a
        retried or resumed request continues where it stopped instead of starting over."""
        with self.transaction():
            existing = self.get_step(step_id)
            if existing is not None:
                return existing
            step = Step(step_id=step_id, kind=kind, status=INTENT, intent=dict(intent))
            self._put_step(step)
            return step

    def record_effect(self, step_id: str, **effect: Any) -> Step:
        """Merge `effect` into the step (before doing what it describes, e.g. the signed tx)."""
        with self.transaction():
            step = self._require_step(step_id)
            out = replace(step, status=EFFECT if not step.finished else step.status, effect={**step.effect, **effect}, updated=now())
            self._put_step(out)
            return out

    def finish_step(self, step_id: str, result: dict) -> Step:
        with self.transaction():
            step = self._require_step(step_id)
            out = replace(step, status=DONE, result=dict(result), updated=now())
            self._put_step(out)
            return out

    def fail_step(self, step_id: str, error: str) -> Step:
        with self.transaction():
            step = self._require_step(step_id)
            out = replace(step, status=FAILED, error=error, updated=now())
            self._put_step(out)
            return out

    def _require_step(self, step_id: str) -> Step:
        step = self.get_step(step_id)
        if step is None:
            from dainode.errors import StateError

            raise StateError(f"no step {step_id!r} in the node's state; begin_step it first")
        return step


def check_kind(kind: str) -> None:
    if kind not in OFFER_KINDS:
        from dainode.errors import StateError

        raise StateError(f"offer kind must be one of {', '.join(OFFER_KINDS)}, not {kind!r}")


@contextlib.contextmanager
def _null() -> Iterator[None]:
    yield
