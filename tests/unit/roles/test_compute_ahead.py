"""Compute job work-ahead: an update computed on a pushed model is submitted only if the chain names that round result."""

from __future__ import annotations

from types import SimpleNamespace

import trio

from dainode.roles.compute_task import Job
from dainode.state import TaskRecord, open_state
from dainode.store.cid import cid_of


def update_cid(t: int, result_cid: str) -> str:
    return str(cid_of(f"update {t} from {result_cid}".encode()))


class FakeChain:
    account = "0x" + "22" * 20

    def __init__(self):
        self.sent = []

    async def send(self, fn, *args, state=None, step_id=None, timings=None):
        self.sent.append((fn, args))
        return {"transactionHash": "0x" + "ab" * 32}


def bare_job(nursery) -> Job:
    state = open_state(None)
    rec = TaskRecord("cp-7-1", "compute", "running", {"task_id": 7, "data_offer_id": 1, "key_ref": "k"})
    owner = SimpleNamespace(ctx=SimpleNamespace(state=state), tc=FakeChain(), mp_peers={}, role=None)
    job = Job(owner, rec, 3)
    job._bg, job.data, job.rounds = nursery, ("x", "y"), 5
    job.task = SimpleNamespace(manifest=SimpleNamespace(task=SimpleNamespace(privacy="fl")))  # an fl task
    job.worked = []

    async def work(t, result_cid):  # stands in for open + train + seal + store
        job.worked.append((t, result_cid))
        await trio.sleep(0.01)
        return {"sealed": b"sealed-" + result_cid.encode(), "cid": update_cid(t, result_cid), "timing": {"round": t}}

    job._work = work
    return job


async def test_work_on_the_pushed_model_is_used_when_the_chain_names_the_same_result():
    async with trio.open_nursery() as n:
        job = bare_job(n)
        job.next_round = 1
        job.pushed_round(0, "bafy-result-A")  # round 0's result pushed: round 1 starts now
        await trio.sleep(0.05)
        assert job.worked == [(1, "bafy-result-A")]
        job.published[0] = "bafy-result-A"  # GlobalModelPublished(0) names it
        await job._round(1)
    assert job.worked == [(1, "bafy-result-A")]  # not computed twice
    (fn, args), = job.tc.sent
    assert fn == "submitUpdate" and job.timings[-1]["ahead"] is True
    assert job.ctx.state.get_step("update-7-3-1").result["update_cid"] == update_cid(1, "bafy-result-A")


async def test_work_on_a_pushed_model_the_chain_does_not_name_is_dropped():
    async with trio.open_nursery() as n:
        job = bare_job(n)
        job.next_round = 1
        job.pushed_round(0, "bafy-result-PUSHED")  # a push the chain never confirms
        job.published[0] = "bafy-result-ONCHAIN"
        await job._round(1)
    assert sorted(job.worked) == [(1, "bafy-result-ONCHAIN"), (1, "bafy-result-PUSHED")]
    assert job.ctx.state.get_step("update-7-3-1").result["update_cid"] == update_cid(1, "bafy-result-ONCHAIN")
    assert job.timings[-1]["ahead"] is False and len(job.tc.sent) == 1


async def test_no_work_ahead_for_rounds_already_done_or_past_the_last():
    async with trio.open_nursery() as n:
        job = bare_job(n)
        job.next_round = 3
        job.pushed_round(1, "bafy-old")  # round 2 is done already
        job.pushed_round(4, "bafy-final")  # round 5 does not exist (5 rounds: 0..4)
        await trio.sleep(0.05)
    assert job.worked == [] and job._prepared == {}


async def test_a_push_that_arrives_after_the_event_starts_no_second_computation():
    async with trio.open_nursery() as n:
        job = bare_job(n)
        job.next_round = 1
        job.published[0] = "bafy-result-A"  # the chain event came first: round 1 is computed from it
        job.pushed_round(0, "bafy-result-A")
        await trio.sleep(0.05)
    assert job.worked == [] and job._prepared == {} and 0 in job.push_at
