"""The split: integer bonuses that always sum to the bonus, deterministic ties, and the contribution report."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dainode.errors import TaskError
from dainode.tasks.split import SHARE_SCALE, SplitReport, contributions, integer_split, make_split, share_weights
from tests.unit.tasks.helpers import BONUS_WEI, MATCH_IDS, TASK, small_manifest


def test_largest_remainder_known_cases():
    assert integer_split(10, {1: 1, 2: 1, 3: 1}) == {1: 4, 2: 3, 3: 3}  # tie: lowest match id first
    assert integer_split(2, {5: 1, 3: 1, 9: 1}) == {3: 1, 5: 1, 9: 0}
    assert integer_split(100, {0: 1, 1: 3}) == {0: 25, 1: 75}
    assert integer_split(7, {0: 0, 1: 0}) == {0: 4, 1: 3}  # nothing positive: equal weights
    assert integer_split(0, {0: 5, 1: 1}) == {0: 0, 1: 0}
    assert integer_split(10, {0: 2, 1: 1, 2: 0}) == {0: 7, 1: 3, 2: 0}  # 6.67, 3.33: remainder to the largest


def test_integer_split_always_sums_exactly():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 12)
        weights = {rng.randint(0, 10**6): rng.randint(0, SHARE_SCALE) for _ in range(n)}
        bonus = rng.choice([0, 1, 7, rng.randint(0, 10**6), rng.randint(0, 2**128 - 1)])
        out = integer_split(bonus, weights)
        assert sum(out.values()) == bonus and set(out) == set(weights)
        total = sum(weights.values()) or len(weights)
        for m, w in weights.items():
            exact = bonus * (w if sum(weights.values()) else 1) / total
            assert abs(out[m] - exact) < 1 + 1e-9 * bonus


def test_integer_split_refuses_bad_input():
    with pytest.raises(TaskError, match="non-negative integer amount of wei"):
        integer_split(-1, {0: 1})
    with pytest.raises(TaskError, match="non-negative integers"):
        integer_split(1, {0: 0.5})
    with pytest.raises(TaskError, match="one per match"):
        integer_split(1, {})


def test_share_weights():
    assert share_weights({0: 0.25, 1: 0.75}) == {0: 250_000_000, 1: 750_000_000}


def test_split_of_the_small_task(clean_run):
    rep = clean_run.report
    assert rep.method == "shapley-roundwise/1" and rep.rounds == 3
    assert rep.params == {"utility": "loss", "seed": 0, "permutations": 64, "tol": 1e-3, "exact_max": 8}
    assert [d["match_id"] for d in rep.matches] == MATCH_IDS
    assert sum(rep.bonuses.values()) == BONUS_WEI and sum(rep.bonuses_list()) == BONUS_WEI
    assert abs(sum(d["share"] for d in rep.matches) - 1) < 1e-9
    # negative Shapley values are clipped to share 0, positive ones share the bonus in proportion
    pos = sum(max(d["value"], 0) for d in rep.matches)
    for d in rep.matches:
        assert d["share"] == pytest.approx(max(d["value"], 0) / pos, abs=1e-12)
        assert d["weight"] == round(d["share"] * SHARE_SCALE)
    assert sum(1 for d in rep.matches if d["share"] > 0) >= 2
    again = SplitReport.from_bytes(rep.to_bytes())
    assert again == rep and rep.to_document()["bonus_wei"] == str(BONUS_WEI)


def test_a_provider_without_accepted_updates_gets_nothing(garbage_run):
    """Shares over rounds where some updates were rejected; a match id no round includes gets share 0."""
    m = small_manifest()
    ev = garbage_run.evidence
    test = _test(ev)
    c = contributions(m, garbage_run.outcomes, MATCH_IDS + [9], test)
    assert c["shares"][9] == 0 and c["values"][9] == 0
    assert abs(sum(c["shares"].values()) - 1) < 1e-9
    rep = make_split(m, TASK, 1000, garbage_run.outcomes, MATCH_IDS + [9], test)
    assert rep.bonuses[9] == 0 and sum(rep.bonuses.values()) == 1000
    with pytest.raises(TaskError, match=r"match id\(s\) \[3\] that are not among"):
        contributions(m, garbage_run.outcomes, [0, 1, 2], test)


def test_leave_one_out_method(clean_run):
    m = small_manifest(contribution="loo")
    rep = make_split(m, TASK, 10**18, clean_run.outcomes, MATCH_IDS, _test(clean_run.evidence))
    assert rep.method == "loo-roundwise/1" and rep.params == {"utility": "loss"}
    assert sum(rep.bonuses.values()) == 10**18


def test_split_is_deterministic(clean_run):
    rep = make_split(small_manifest(), TASK, BONUS_WEI, clean_run.outcomes, MATCH_IDS, _test(clean_run.evidence))
    assert rep == clean_run.report


def _test(ev):
    from dainode.tasks.testset import decode_test_set

    return decode_test_set(ev.test_set)
