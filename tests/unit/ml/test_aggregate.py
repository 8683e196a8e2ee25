"""Aggregation rules, clipping, and the CKKS path that only linear rules may take (real TenSEAL)."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.crypto.ckks import CkksContext
from dainode.errors import AggregationError
from dainode.ml.aggregate import (CoordinateMedian, FedAvg, MultiKrum, TrimmedMean, aggregate,
                                  aggregate_encrypted, clip_update, make_rule)

U = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, -500.0]], np.float32)


@pytest.fixture(scope="module")
def ckks():
    secret = CkksContext.create()
    return secret, CkksContext.from_bytes(secret.public().to_bytes())


def test_fedavg_is_example_weighted():
    out = aggregate("fedavg", U[:3], [1, 1, 2])
    assert np.allclose(out, (U[0] + U[1] + 2 * U[2]) / 4)
    assert make_rule("fedprox").linear and isinstance(make_rule("fedprox"), FedAvg)


def test_robust_rules_ignore_the_outlier():
    assert np.allclose(aggregate("median", U, [1, 1, 1, 1]), [2.5, 15.0])
    assert np.allclose(aggregate({"name": "trimmed_mean", "beta": 0.25}, U, None), [2.5, 15.0])
    krum = MultiKrum(f=1)
    assert sorted(krum.select(U).tolist()) == [0, 1, 2]
    assert np.allclose(krum.aggregate(U, [1, 1, 2, 1]), (U[0] + U[1] + 2 * U[2]) / 4)
    # k=4, f=1: each score is the squared distance to the nearest other update; 0, 1, 2 tie at
    # 101 and ties go to the lower index
    assert np.allclose(aggregate({"name": "multikrum", "f": 1, "m": 1}, U, None), U[0])


def test_linearity_declared():
    assert [r.linear for r in (FedAvg(), CoordinateMedian(), TrimmedMean(), MultiKrum())] == [True, False, False, False]
    with pytest.raises(AggregationError, match="not linear"):
        CoordinateMedian().coefficients([1, 1])


def test_clipping():
    u = np.array([3.0, 4.0], np.float32)
    assert np.allclose(clip_update(u, 1.0), [0.6, 0.8])
    assert np.array_equal(clip_update(u, 10.0), u)
    out = aggregate("fedavg", np.stack([u, -u * 100]), [1, 1], clip_norm=5.0)
    assert np.allclose(out, 0.0, atol=1e-6)  # the boosted update was clipped to the same length


@pytest.mark.parametrize("call, msg", [
    (lambda: make_rule("mean-ish"), "unknown aggregation rule"),
    (lambda: make_rule({"name": "median", "beta": 1}), "bad parameters"),
    (lambda: TrimmedMean(beta=0.5), "beta must be"),
    (lambda: aggregate("fedavg", U, [1, 1]), "4 updates but 2 weights"),
    (lambda: aggregate("fedavg", U, [0, 0, 0, 0]), "not all zero"),
    (lambda: aggregate("fedavg", np.array([[np.nan, 1.0]]), [1]), "client #0 contains NaN"),
    (lambda: MultiKrum(f=2).aggregate(U, None), "needs at least 5 updates"),
    (lambda: clip_update(U[0], 0), "clip norm must be > 0"),
])
def test_bad_aggregation_input(call, msg):
    with pytest.raises(AggregationError, match=msg):
        call()


def test_encrypted_fedavg_equals_plaintext(ckks):
    secret, public = ckks
    rng = np.random.default_rng(0)
    updates = rng.normal(0, 0.1, size=(3, 9000)).astype(np.float32)  # spans 3 ciphertexts
    weights = [359, 359, 360]
    enc = [public.encrypt(u) for u in updates]
    out = secret.decrypt(aggregate_encrypted("fedavg", enc, weights))
    assert np.max(np.abs(out - aggregate("fedavg", updates, weights))) < 1e-6


@pytest.mark.parametrize("rule", ["median", "trimmed_mean", {"name": "multikrum", "f": 1}])
def test_nonlinear_rules_refused_under_ckks(ckks, rule):
    _, public = ckks
    enc = [public.encrypt(np.ones(8)) for _ in range(4)]
    with pytest.raises(AggregationError, match="not linear and cannot run on CKKS"):
        aggregate_encrypted(rule, enc, [1, 1, 1, 1])


def test_encrypted_length_and_count_checks(ckks):
    _, public = ckks
    with pytest.raises(AggregationError, match="different lengths"):
        aggregate_encrypted("fedavg", [public.encrypt(np.ones(4)), public.encrypt(np.ones(5))], [1, 1])
    with pytest.raises(AggregationError, match="2 encrypted updates but 3 weights"):
        aggregate_encrypted("fedavg", [public.encrypt(np.ones(4))] * 2, [1, 1, 1])
    with pytest.raises(AggregationError, match="no encrypted updates"):
        aggregate_encrypted("fedavg", [], [])
