"""A sign-flipped x10 update from one of four providers (400 digits rows each), every one of 10 rounds: under median, trimmed mean and Multi-Krum the
final accuracy stays within 2 points of the honest run; under FedAvg it does not (so the check can fail)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dainode.tasks.documents import OpenedUpdate, UpdateBinding
from dainode.tasks.rounds import aggregate_round, compute_update, initial_params
from dainode.tasks.testset import load_test_set
from tests.unit.tasks.helpers import COMPUTE, MATCH_IDS, TASK, provider_shards, small_manifest

ROUNDS = 10
POISONER = 3


def run(manifest, shards, test, *, poison: bool) -> list[float]:
    w = initial_params(manifest)
    acc = []
    for t in range(ROUNDS):
        ups = []
        for m in MATCH_IDS:
            res = compute_update(manifest, w, *shards[m], round=t, match_id=m)
            u = np.asarray(res.update, np.float32)
            if poison and m == POISONER:
                u = -10.0 * u
            ups.append(OpenedUpdate(UpdateBinding(TASK, m, t, COMPUTE[m]), u, res.n_examples))
        out = aggregate_round(manifest, t, w, ups, test)
        w = out.params
        acc.append(out.accuracy)
    return acc


@pytest.fixture(scope="module")
def data():
    m = small_manifest()
    t = load_test_set(m)
    return provider_shards(rows_each=400), (t.x, t.y)


@pytest.mark.parametrize("rule,params", [("median", {}), ("trimmed_mean", {"beta": 0.25}), ("multikrum", {"f": 1}),
                                         ("fedavg", {})])
def test_one_poisoner_moves_robust_rules_by_at_most_2_points(data, rule, params):
    shards, test = data
    m = small_manifest(aggregation=rule, aggregation_params=params, rounds=ROUNDS)
    honest = run(m, shards, test, poison=False)
    poisoned = run(m, shards, test, poison=True)
    moved = abs(poisoned[-1] - honest[-1])
    print(f"\n{rule}: honest {honest[-1]:.4f} poisoned {poisoned[-1]:.4f} moved {100 * moved:.2f} points")
    if rule == "fedavg":
        assert moved > 0.02, (honest, poisoned)  # the attack is real: a plain mean follows it
    else:
        assert honest[-1] > 0.5, honest  # the honest run learned something worth protecting
        assert moved <= 0.02, (honest, poisoned)
