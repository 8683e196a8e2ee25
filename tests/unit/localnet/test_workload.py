"""dainode.localnet.workload: the shards cover the train part of the manifest's split disjointly; manifests validate."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from dainode.errors import ConfigError
from dainode.localnet.workload import shard_files, task_manifest
from dainode.tasks.manifest import parse_manifest


def test_shards_are_disjoint_equal_and_cover_the_train_part(tmp_path):
    files = shard_files(tmp_path, 3)
    parts = [np.load(f) for f in files]
    sizes = [len(p["y"]) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 1437  # digits: 1797 rows, 20 % held out for the test set
    rows = {p["x"][i].tobytes() for p in parts for i in range(len(p["y"]))}
    assert len(rows) > 1400  # (digits has a few duplicate images)
    assert all(p["x"].shape[1] == 64 and 0.0 <= p["x"].min() and p["x"].max() <= 1.0 for p in parts)


@pytest.mark.parametrize("providers", [1, 2, 4, 7])
def test_generated_manifests_validate(providers):
    m = parse_manifest(tomllib.loads(task_manifest(providers=providers, rounds=3)))
    assert m.task.providers == providers and m.task.quorum == providers and m.task.rounds == 3
    assert m.task.reward_pool_wei >= providers * (m.task.max_data_price_wei + m.task.max_compute_price_wei)


def test_a_bad_manifest_names_its_key():
    with pytest.raises(ConfigError, match="task.quorum"):
        parse_manifest(tomllib.loads(task_manifest(providers=4, quorum=9)))
