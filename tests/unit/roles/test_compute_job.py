"""Job.run: a compute job that fails (e.g. an he model it cannot train on) ends that job, never the compute role or the node."""

from __future__ import annotations

from dainode.errors import TaskError
from dainode.roles.compute_task import Job


async def test_a_task_error_inside_the_job_fails_the_job_not_the_role():
    job = Job.__new__(Job)  # only what run() touches
    job.task_id, job.match_id, job.saved = 3, 1, []

    async def _run():
        raise TaskError("task 3 round 0: encrypted training failed: out of depth")

    job._run = _run
    job._save = lambda status, **extra: job.saved.append((status, extra))
    await job.run()  # before the fix the error escaped inside an ExceptionGroup and crashed the compute role
    assert job.saved == [("failed", {"error": "task 3 round 0: encrypted training failed: out of depth"})]
