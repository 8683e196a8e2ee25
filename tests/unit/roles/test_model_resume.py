"""model_resume against the SQLite state: which tasks resume, the create step, the secret test set, matches and rounds
adopted from the chain, and the closed rounds recomputed from their posted documents."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import numpy as np
import pytest
import trio

from dainode.errors import DainodeError, TaskError
from dainode.roles import model_resume as mr
from dainode.state import MatchRecord, RoundRecord, TaskRecord
from dainode.state.sqlite import SqliteState
from dainode.store.cid import cid_of


@pytest.fixture
def state(tmp_path):
    s = SqliteState(tmp_path / "state.db")
    yield s
    s.close()


class Content:
    """The content port over a dict: put_bytes / get_bytes / hash_bytes by sha2-256 raw CIDs."""

    def __init__(self):
        self.blocks: dict[str, bytes] = {}

    async def put_bytes(self, data: bytes):
        cid = cid_of(bytes(data))
        self.blocks[str(cid)] = bytes(data)
        return cid

    async def hash_bytes(self, data: bytes):
        return cid_of(bytes(data))

    async def get_bytes(self, cid, *, limit=0, providers=None) -> bytes:
        return self.blocks[str(cid)]


def test_only_the_model_roles_open_tasks_resume(state):
    for tid, role, status in [("1", "model", "training"), ("2", "model", "final"), ("3", "model", "abandoned"),
                              ("4", "model", "split_posted"), ("dp-5-1", "data", "consented"), ("10", "model", "matching")]:
        state.put_task(TaskRecord(tid, role, status, {}))
    assert [r.task_id for r in mr.resumable(state)] == ["1", "4", "10"]


def test_the_create_step_is_found_by_its_id_or_by_the_task_id_it_opened(state):
    state.begin_step("task-create-a", "task_create", {"manifest": {}})
    state.record_effect("task-create-a", task_id=3, salt="00")
    state.begin_step("task-create-b", "task_create", {"manifest": {}})
    state.record_effect("task-create-b", task_id=4, salt="11")
    assert mr.create_step(state, 4, {"create_step": "task-create-b"}).step_id == "task-create-b"
    assert mr.create_step(state, 3, {}).step_id == "task-create-a"  # a record from before create_step was kept
    with pytest.raises(TaskError, match="no task_create step"):
        mr.create_step(state, 9, {})


def test_the_test_set_is_kept_private_and_must_match_its_commitment(tmp_path):
    from dainode.tasks.manifest import parse_manifest
    from dainode.tasks.testset import encode_test_set, load_test_set
    from tests.integration.task_driver import manifest_doc

    manifest = parse_manifest(manifest_doc(2))
    ds = load_test_set(manifest)
    data = encode_test_set(ds.x, ds.y)
    path = mr.save_test_set(tmp_path, 7, data)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    content = Content()
    ctx = SimpleNamespace(data_dir=tmp_path, content=content)
    other = encode_test_set(np.ones((3, 64), np.float32), np.arange(3))

    async def main():
        assert await mr.load_test_set(ctx, manifest, 7, None, str(cid_of(data))) == data
        path.write_bytes(data[:-1] + b"\x01")  # a damaged copy: the manifest's spec gives the committed bytes again
        assert await mr.load_test_set(ctx, manifest, 7, None, str(cid_of(data))) == data
        assert not content.blocks, "nothing goes to the blockstore before the reveal"
        with pytest.raises(TaskError, match="no test set matching the commitment"):
            await mr.load_test_set(ctx, manifest, 7, None, str(cid_of(other)))

    trio.run(main)


def test_matches_round_trip_and_a_lost_one_is_adopted_from_the_chain_with_its_step(state):
    m = {"match_id": 0, "data_provider": "0xD", "compute_provider": "0xC", "data_price_wei": 10**17,
         "compute_price_wei": 5 * 10**16, "cp_key_cid": "bafyk", "compute_peer_id": "12D3", "rows": 100, "cp_key": object()}
    state.put_match(MatchRecord("5", "0xD", "matched", mr.match_doc(m)))
    got = mr.load_matches(state, 5)
    assert got[0]["data_price_wei"] == 10**17 and "cp_key" not in got[0]
    ev = SimpleNamespace(args={"matchId": 1, "dataProvider": "0xE", "computeProvider": "0xF", "dataOfferId": 8,
                               "computeOfferId": 9, "dataPrice": 3, "computePrice": 2})
    assert mr.adopt_match(state, 5, ev, None) is None  # the step does not know the compute provider's key
    state.begin_step("task-5-match-8", "task_recordMatch", {"data_offer_id": 8, "cp_key_cid": "bafyk2", "rows": 50})
    adopted = mr.adopt_match(state, 5, ev, state.get_step("task-5-match-8"))
    assert adopted["cp_key_cid"] == "bafyk2" and adopted["compute_price_wei"] == 2
    assert sorted(mr.load_matches(state, 5)) == [0, 1]


def test_a_round_published_on_chain_but_not_recorded_is_adopted_once(state):
    res = SimpleNamespace(model_cid="bafym", accuracy=0.5, loss=1.0)
    assert mr.adopt_round(state, 5, 3, "bafyr", res)
    assert state.get_round("5", 3).doc["adopted"] is True
    assert not mr.adopt_round(state, 5, 3, "bafyr", res)
    state.put_round(RoundRecord("5", 4, "published", {"result_cid": "bafyX"}))
    assert mr.adopt_round(state, 5, 4, "bafyr4", res)  # the chain's result counts
    assert state.get_round("5", 4).doc["result_cid"] == "bafyr4"


def test_closed_rounds_are_recomputed_from_their_posted_documents(state):
    """Two rounds run as the model provider runs them, documents in a content store; a fresh run rebuilds the same
    outcomes (what the split needs) and the model the next round starts from."""
    from dainode.tasks.documents import ModelBinding, UpdateBinding, open_update, seal_global_model, seal_update
    from dainode.tasks.keys import TaskKey
    from dainode.tasks.manifest import parse_manifest
    from dainode.tasks.rounds import aggregate_round, compute_update, initial_params
    from dainode.tasks.sealed import TaskRef
    from tests.integration.task_driver import manifest_doc

    manifest = parse_manifest(manifest_doc(2))
    key, ref, mp = TaskKey.generate(), TaskRef(31337, "0x" + "ab" * 20, 5), "0x" + "0a" * 20
    rng = np.random.default_rng(0)
    shards = {m: (rng.random((60, 64), dtype=np.float32), rng.integers(0, 10, 60)) for m in (0, 1)}
    test = (rng.random((40, 64), dtype=np.float32), rng.integers(0, 10, 40))
    cps = {0: "0x" + "c0" * 20, 1: "0x" + "c1" * 20}
    content = Content()

    async def live() -> tuple[dict, list]:
        w, cids, outs = initial_params(manifest), {}, []
        for t in range(2):
            opened, ucids = [], {}
            for m, (x, y) in shards.items():
                res = compute_update(manifest, w, x, y, round=t, match_id=m)
                b = UpdateBinding(ref, m, t, cps[m])
                blob = seal_update(b, res.update, res.n_examples, [key.public.key])
                ucids[m] = str(await content.put_bytes(blob))
                opened.append(open_update(blob, key.private, b, manifest.model_spec))
            out = aggregate_round(manifest, t, w, opened, test)
            model = await content.put_bytes(seal_global_model(ModelBinding(ref, t + 1, mp), out.params, [key.public.key]))
            cids[t] = str(await content.put_bytes(out.result(ucids, model_cid=str(model)).to_bytes()))
            outs.append(out)
            w = out.params
        return cids, outs

    cids, outs = trio.run(live)
    state.put_round(RoundRecord("5", 0, "published", {"result_cid": cids[0], "total_ms": 12.5}))  # round 1: lost
    ctx = SimpleNamespace(content=content, state=state, keys=SimpleNamespace(address=mp))
    run = SimpleNamespace(task_id=5, manifest=manifest, key=key, ref=ref, test=test, results=[], outcomes=[], timings=[],
                          matches={m: {"compute_provider": cps[m], "rows": None} for m in cps})
    params = trio.run(mr.rebuild_rounds, ctx, run, cids)
    assert np.array_equal(params, outs[-1].params)
    assert [r.round for r in run.results] == [0, 1]
    for got, want in zip(run.outcomes, outs):
        assert got.match_ids == want.match_ids and np.array_equal(got.updates, want.updates)
        assert np.array_equal(got.global_params, want.global_params) and got.accuracy == want.accuracy
    assert run.timings == [{"round": 0, "total_ms": 12.5}, {"round": 1, "adopted": True}]
    assert state.get_round("5", 1).doc["result_cid"] == cids[1]
    # updates that do not open under the recorded matches stop the resume with a reason, not a wrong model
    run2 = SimpleNamespace(**{**vars(run), "results": [], "outcomes": [], "timings": [],
                              "matches": {m: {"compute_provider": cps[1 - m], "rows": None} for m in cps}})
    with pytest.raises(DainodeError):
        trio.run(mr.rebuild_rounds, ctx, run2, cids)
