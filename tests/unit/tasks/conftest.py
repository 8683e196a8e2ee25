"""Shared fixtures of the task tests: one small manifest, provider shards, and one clean and one garbage-laden run."""

from __future__ import annotations

import pytest

from tests.unit.tasks.helpers import provider_shards, run_task, small_manifest


@pytest.fixture(scope="session")
def manifest():
    return small_manifest()


@pytest.fixture(scope="session")
def shards():
    return provider_shards()


@pytest.fixture(scope="session")
def clean_run(manifest, shards):
    return run_task(manifest, shards)


@pytest.fixture(scope="session")
def garbage_run(manifest, shards):
    """Round 1: match 2 submits match 0's envelope (copied); round 2: match 3 replays its round-1 envelope."""
    return run_task(manifest, shards, garbage={(1, 2): "copy", (2, 3): "replay"})
