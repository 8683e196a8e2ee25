"""The State contract, run against SQLite and the in-memory twin; SQLite durability and migrations."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from dainode.errors import StateError
from dainode.state import (
    Cursor, MatchRecord, OfferRecord, PayoutRecord, RoundRecord, TaskRecord, UpdateRecord, open_state,
)
from dainode.state.base import DONE, EFFECT, FAILED, INTENT
from dainode.state.sqlite import SCHEMA_VERSION, SqliteState

ADDR = "0x" + "ab" * 20


@pytest.fixture(params=["sqlite", "memory"])
def state(request, tmp_path):
    st = open_state(tmp_path / "state.db" if request.param == "sqlite" else None)
    yield st
    st.close()


def test_own_and_seen_offers_round_trip(state):
    own = OfferRecord(key="step-1", kind="data", owner=ADDR, price_wei=10**20, cid="bafy1", doc={"rows": 5, "nested": [1, 2]})
    state.put_own_offer(own)
    assert state.get_own_offer("step-1") == own
    assert state.get_own_offer("nope") is None
    assert state.list_own_offers("compute") == []
    seen = [OfferRecord(key=str(i), kind=k, offer_id=i, owner=ADDR, active=i != 2, price_wei=2**79) for i, k in
            [(3, "compute"), (1, "data"), (2, "data")]]
    for o in seen:
        state.put_seen_offer(o)
    assert [o.offer_id for o in state.list_seen_offers()] == [1, 2, 3]
    assert [o.offer_id for o in state.list_seen_offers("data", active=True)] == [1]
    assert [o.offer_id for o in state.list_seen_offers(active=False)] == [2]
    assert state.get_seen_offer(3).price_wei == 2**79  # beyond 64-bit integers: stored exactly
    state.put_seen_offer(OfferRecord(key="1", kind="data", offer_id=1, active=False))
    assert state.get_seen_offer(1).active is False and len(state.list_seen_offers()) == 3


def test_bad_offers_are_refused(state):
    with pytest.raises(StateError, match="kind"):
        state.put_own_offer(OfferRecord(key="x", kind="model"))
    with pytest.raises(StateError, match="offer_id"):
        state.put_seen_offer(OfferRecord(key="x", kind="data"))


def test_training_records(state):
    state.put_task(TaskRecord("t1", "model", "open", {"rounds": 3}))
    state.put_task(TaskRecord("t2", "data", "matched"))
    assert state.get_task("t1").doc == {"rounds": 3}
    assert [t.task_id for t in state.list_tasks(role="data")] == ["t2"]
    assert [t.task_id for t in state.list_tasks(status="open")] == ["t1"]
    state.put_match(MatchRecord("t1", "0xB", "consented"))
    state.put_match(MatchRecord("t1", "0xA", "asked"))
    state.put_match(MatchRecord("t1", "0xA", "consented"))
    assert [(m.provider, m.status) for m in state.list_matches("t1")] == [("0xA", "consented"), ("0xB", "consented")]
    state.put_round(RoundRecord("t1", 2, "open"))
    state.put_round(RoundRecord("t1", 1, "aggregated", {"acc": 0.9}))
    assert [r.round for r in state.list_rounds("t1")] == [1, 2] and state.get_round("t1", 1).doc == {"acc": 0.9}
    assert state.get_round("t1", 9) is None
    state.put_update(UpdateRecord("t1", 1, "0xC", "bafyu", "received"))
    state.put_update(UpdateRecord("t1", 2, "0xC", "bafyv", "received"))
    assert [u.cid for u in state.list_updates("t1")] == ["bafyu", "bafyv"]
    assert [u.cid for u in state.list_updates("t1", 2)] == ["bafyv"]
    state.put_payout(PayoutRecord("t1", "0xC", 10**21, "credited"))
    assert state.list_payouts("t1")[0].amount_wei == 10**21 and state.list_payouts("t2") == []


def test_cursors_per_consumer(state):
    assert state.get_cursor("offers") is None
    state.set_cursor(Cursor("offers", 10, "0xaa"))
    state.set_cursor(Cursor("tasks", 3))
    state.set_cursor(Cursor("offers", 12, "0xbb", {"seen": [1]}))
    assert state.get_cursor("offers") == Cursor("offers", 12, "0xbb", {"seen": [1]})
    assert state.get_cursor("tasks").block == 3


def test_step_lifecycle(state):
    s = state.begin_step("offer-1", "offer_data", {"dataset": "digits"})
    assert s.status == INTENT and not s.finished
    again = state.begin_step("offer-1", "offer_data", {"dataset": "other"})
    assert again.intent == {"dataset": "digits"}  # an existing step is resumed, not restarted
    s = state.record_effect("offer-1", cid="bafy")
    s = state.record_effect("offer-1", tx_hash="0x1")
    assert s.status == EFFECT and s.effect == {"cid": "bafy", "tx_hash": "0x1"}
    state.begin_step("offer-2", "offer_compute", {})
    assert [x.step_id for x in state.list_steps(unfinished=True)] == ["offer-1", "offer-2"]
    state.finish_step("offer-1", {"offer_id": 7})
    state.fail_step("offer-2", "bad dataset")
    assert state.get_step("offer-1").status == DONE and state.get_step("offer-1").result == {"offer_id": 7}
    assert state.get_step("offer-2").status == FAILED and state.get_step("offer-2").error == "bad dataset"
    assert state.list_steps(unfinished=True) == []
    assert [x.step_id for x in state.list_steps("offer_data")] == ["offer-1"]
    with pytest.raises(StateError, match="begin_step"):
        state.record_effect("missing", x=1)


def test_transaction_is_all_or_nothing(state):
    state.begin_step("s", "k", {})
    with pytest.raises(RuntimeError):
        with state.transaction():
            state.finish_step("s", {"offer_id": 1})
            with state.transaction():  # nested: joins the outer one
                state.put_own_offer(OfferRecord(key="s", kind="data", offer_id=1))
            raise RuntimeError("crash between the two writes")
    assert state.get_step("s").status == INTENT
    assert state.get_own_offer("s") is None
    with state.transaction():
        state.finish_step("s", {"offer_id": 1})
        state.put_own_offer(OfferRecord(key="s", kind="data", offer_id=1))
    assert state.get_step("s").status == DONE and state.get_own_offer("s").offer_id == 1


# --- SQLite only -----------------------------------------------------------------------


def test_sqlite_survives_reopen_and_is_private(tmp_path):
    path = tmp_path / "state.db"
    st = SqliteState(path)
    st.begin_step("a", "k", {"x": 1})
    st.set_cursor(Cursor("c", 5))
    st.close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    st = SqliteState(path)
    assert st.get_step("a").intent == {"x": 1} and st.get_cursor("c").block == 5
    assert st.schema_version == SCHEMA_VERSION
    assert st._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    st.close()


def test_cursor_commits_skip_the_fsync_and_everything_else_keeps_it(tmp_path):
    """A cursor moves with every block: its commit runs at synchronous=NORMAL (no fsync; a lost move only replays
    events), every other write at FULL; inside a caller's transaction the cursor goes with that transaction."""
    st = SqliteState(tmp_path / "state.db")
    seen: list[str] = []
    st._db.set_trace_callback(seen.append)
    st.set_cursor(Cursor("c", 5))
    sync = [q for q in seen if q.startswith("PRAGMA synchronous")]
    insert = next(i for i, q in enumerate(seen) if q.startswith("INSERT OR REPLACE INTO cursors"))
    assert sync == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"]
    assert seen.index("PRAGMA synchronous=NORMAL") < insert < seen.index("PRAGMA synchronous=FULL")
    assert st._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for steps and records
    seen.clear()
    with pytest.raises(RuntimeError):
        with st.transaction():
            st.begin_step("a", "k", {"x": 1})
            st.set_cursor(Cursor("c", 6))
            raise RuntimeError("the step failed")
    assert not [q for q in seen if q.startswith("PRAGMA")]
    assert st.get_cursor("c").block == 5 and st.get_step("a") is None  # rolled back together
    st.close()


def test_sqlite_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "state.db"
    SqliteState(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="newer"):
        SqliteState(path)


def test_sqlite_migrates_forward_from_an_older_version(tmp_path, monkeypatch):
    from dainode.state import sqlite as mod

    path = tmp_path / "state.db"
    SqliteState(path).close()
    monkeypatch.setattr(mod, "MIGRATIONS", mod.MIGRATIONS + ["ALTER TABLE tasks ADD COLUMN extra TEXT"])
    monkeypatch.setattr(mod, "SCHEMA_VERSION", len(mod.MIGRATIONS))
    st = mod.SqliteState(path)
    assert st.schema_version == SCHEMA_VERSION + 1
    assert "extra" in [r[1] for r in st._db.execute("PRAGMA table_info(tasks)")]
    st.close()


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from dainode.state.sqlite import SqliteState
    from dainode.state import OfferRecord
    st = SqliteState(sys.argv[1])
    point = sys.argv[2]
    st.begin_step("offer", "offer_data", {"dataset": "digits"})
    if point == "after_intent":
        os.kill(os.getpid(), signal.SIGKILL)
    st.record_effect("offer", cid="bafy", tx_hash="0x1")
    if point == "after_effect":
        os.kill(os.getpid(), signal.SIGKILL)
    with st.transaction():
        st.finish_step("offer", {"offer_id": 1})
        if point == "inside_result":
            os.kill(os.getpid(), signal.SIGKILL)
        st.put_own_offer(OfferRecord(key="offer", kind="data", offer_id=1, cid="bafy"))
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize(
    "point, status, effect, offer",
    [
        ("after_intent", INTENT, {}, None),
        ("after_effect", EFFECT, {"cid": "bafy", "tx_hash": "0x1"}, None),
        ("inside_result", EFFECT, {"cid": "bafy", "tx_hash": "0x1"}, None),
        ("after_result", DONE, {"cid": "bafy", "tx_hash": "0x1"}, 1),
    ],
)
def test_sigkill_mid_step_leaves_a_consistent_state(tmp_path, point, status, effect, offer):
    path = tmp_path / "state.db"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(path), point], timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -signal.SIGKILL
    st = SqliteState(path)
    step = st.get_step("offer")
    assert (step.status, step.effect) == (status, effect)
    own = st.get_own_offer("offer")
    assert (own.offer_id if own else None) == offer
    st.close()
