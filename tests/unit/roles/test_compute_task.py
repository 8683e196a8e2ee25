"""A compute job that misses rounds (a fetch or the chain failing, the node away) goes on and rejoins at the open round."""

from types import SimpleNamespace

import trio

from dainode.errors import ChainError, TaskError
from dainode.roles.compute_task import Job


class FakeTC:
    def __init__(self):
        self.round = 0
        self.fail = False

    async def task(self, task_id):
        if self.fail:
            raise ChainError("endpoint unreachable")
        return SimpleNamespace(round=self.round)


def make_job(rounds=10):
    job = object.__new__(Job)
    job.task_id, job.match_id, job.rounds = 7, 1, rounds
    job.data, job.started, job.next_round, job.published = ("x", "y"), True, 0, {}
    job.tc = FakeTC()
    job.trained = []
    return job


def test_a_failing_round_is_missed_and_the_job_goes_on():
    job = make_job()

    async def _round(t):
        if t == 1:
            raise TaskError("global model 1 could not be fetched within 10 s")
        job.trained.append(t)

    job._round = _round

    async def main():
        await job._advance()  # round 0
        job.published[0] = "r0"
        job.tc.round = 1
        await job._advance()  # round 1 fails: missed, not fatal
        assert job.next_round == 2
        job.published[1] = "r1"
        job.tc.round = 2
        job.tc.fail = True
        await job._advance()  # the chain is away: round 2 is missed too
        job.tc.fail = False
        job.published[2] = "r2"
        job.tc.round = 3
        await job._advance()

    trio.run(main)
    assert job.trained == [0, 3]


def test_back_after_rounds_closed_it_trains_the_open_round_from_the_latest_model():
    job = make_job()
    job.next_round = 3  # it trained rounds 0-2, then was away while rounds 3-5 closed
    job.published = {r: f"r{r}" for r in range(6)}
    job.tc.round = 6

    async def _round(t):
        job.trained.append(t)
        job.tc.round = t + 1 if t + 1 in job.published else job.tc.round

    job._round = _round
    trio.run(job._advance)
    assert job.trained == [6], "rounds 3-5 are not trained (their submit would revert); round 6 starts from model 6"
