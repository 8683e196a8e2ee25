"""The node's durable local state: one interface (`State`), SQLite on disk and an in-memory twin."""

from dainode.state.base import (
    Cursor,
    MatchRecord,
    OfferRecord,
    PayoutRecord,
    RoundRecord,
    State,
    Step,
    TaskRecord,
    UpdateRecord,
)

__all__ = [
    "Cursor", "MatchRecord", "OfferRecord", "PayoutRecord", "RoundRecord", "State", "Step", "TaskRecord", "UpdateRecord",
    "open_state",
]


def open_state(path=None) -> State:
    """SQLite state at `path` (e.g. <data-dir>/state.db); in memory when `path` is None."""
    if path is None:
        from dainode.state.memory import MemoryState

        return MemoryState()
    from dainode.state.sqlite import SqliteState

    return SqliteState(path)
