"""Test-wide guards: no test may leave a child process behind."""

from __future__ import annotations

import os

import psutil
import pytest

# Every node the tests start finalizes a task without waiting out the 60 s challenge window in wall time: on the dev
# chain the model provider moves the chain's clock past it (chain.dev_time_travel; the contract still checks it).
# A test that needs the window open (a challenge) turns it off for its nodes.
os.environ.setdefault("DAINODE_CHAIN_DEV_TIME_TRAVEL", "true")


@pytest.fixture(autouse=True)
def _no_leftover_children():
    """Fail the test that leaves a child process (daemon, anvil, Helia) running."""
    me = psutil.Process(os.getpid())
    before = {p.pid for p in me.children(recursive=True)}
    yield
    leftovers = []
    for p in me.children(recursive=True):
        if p.pid in before:
            continue
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                leftovers.append(p)
        except psutil.NoSuchProcess:
            continue
    if leftovers:
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        if alive:
            desc = ", ".join(f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in alive)
            for p in alive:  # clean up by PID so one failure does not cascade
                p.kill()
            pytest.fail(f"test left child processes running: {desc}")
