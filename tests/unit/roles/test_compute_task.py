"""A compute job whose round fails (a fetch or the chain failing, the node away) tries again while the round is open,
and rejoins at the open round once the chain has moved on."""

from types import SimpleNamespace

import trio
import trio.testing

from dainode.chain.training_task import Phase

from dainode.errors import ChainError, TaskError
from dainode.roles.compute_task import Job


class FakeTC:
    def __init__(self):
        self.round = 0
        self.phase = Phase.TRAINING
        self.fail = False

    async def task(self, task_id):
        if self.fail:
            raise ChainError("endpoint unreachable")
        return SimpleNamespace(round=self.round, phase=self.phase)


def make_job(rounds=10):
    job = object.__new__(Job)
    job.task_id, job.match_id, job.rounds = 7, 1, rounds
    job.data, job.started, job.next_round, job.published = ("x", "y"), True, 0, {}
    job.tc = FakeTC()
    job.trained = []
    return job


def test_a_failing_round_is_tried_again_while_open_and_left_once_the_chain_moved_on():
    """Regression: one failed fetch (the model provider restarting for a few seconds) cost the whole round: the job
    gave up on it at once, although the round stayed open for long after."""
    job = make_job()
    attempts = []

    async def _round(t):
        attempts.append(t)
        if t == 1 and attempts.count(1) < 3:  # the model provider is back after two tries
            raise TaskError("global model 1 could not be fetched within 10 s")
        if t == 2:
            job.tc.fail = True  # the chain goes away, and the round closes without this node meanwhile
            job.tc.round = 3
            job.published[2] = "r2"
            raise TaskError("update 2 could not be submitted")
        job.trained.append(t)

    job._round = _round

    async def main():
        await job._advance()  # round 0
        job.published[0] = "r0"
        job.tc.round = 1
        await job._advance()  # round 1: fails twice, done on the third try
        assert job.trained == [0, 1] and job.next_round == 2
        job.published[1] = "r1"
        job.tc.round = 2
        with trio.move_on_after(30):
            await job._advance()  # round 2 fails; the chain is away: it keeps trying (and waiting) ...
        assert job.next_round == 2 and job.trained == [0, 1]
        job.tc.fail = False
        job.published[3] = "r3"
        job.tc.round = 4
        await job._advance()  # ... back: round 2 and 3 closed without it; it trains the open round 4

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert job.trained == [0, 1, 4] and attempts.count(1) == 3


def test_a_finished_task_ends_the_retries():
    job = make_job()

    async def _round(t):
        job.tc.phase = Phase.ABANDONED  # abandoned while this round was being computed
        raise TaskError("update 0 could not be submitted: the task is not training")

    job._round = _round
    trio.run(job._advance, clock=trio.testing.MockClock(autojump_threshold=0))  # returns: the event loop sees the end
    assert job.next_round == 0


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
