"""Round steps: seeded compute updates, and aggregation that is deterministic, order-free and follows the manifest."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dainode.errors import TaskError
from dainode.ml.spec import init_params
from dainode.tasks.documents import OpenedUpdate, UpdateBinding, params_digest
from dainode.tasks.rounds import aggregate_round, compute_update, initial_params, round_rule, train_seed
from tests.unit.tasks.helpers import COMPUTE, TASK, small_manifest


def _updates(manifest, round=0, ids=(0, 1, 2, 3), seed=0):
    rng = np.random.default_rng(seed)
    n = manifest.model_spec.n_params
    return [OpenedUpdate(UpdateBinding(TASK, m, round, COMPUTE.get(m, COMPUTE[0])),
                         rng.normal(0, 0.01, n).astype(np.float32), n_examples=10 * (m + 1)) for m in ids]


def test_initial_model_is_the_seeded_init(manifest):
    assert np.array_equal(initial_params(manifest), init_params(manifest.model_spec))
    assert train_seed(manifest, 2, 3) == [0, 2, 3]


def test_compute_update_is_seeded_per_round_and_match(manifest, shards):
    w = initial_params(manifest)
    x, y = shards[0]
    a = compute_update(manifest, w, x, y, round=0, match_id=0)
    b = compute_update(manifest, w, x, y, round=0, match_id=0)
    c = compute_update(manifest, w, x, y, round=1, match_id=0)
    assert a.n_examples == len(y)
    assert np.array_equal(a.update, b.update) and not np.array_equal(a.update, c.update)
    assert np.allclose(a.params, w + a.update)


def test_compute_update_clips_when_the_manifest_says_so(shards):
    m = small_manifest(clip_norm=0.01)
    w = initial_params(m)
    res = compute_update(m, w, *shards[1], round=0, match_id=1)
    assert np.linalg.norm(res.update) <= 0.01 + 1e-6


def test_fedavg_is_the_example_weighted_mean_and_order_free(manifest):
    w = initial_params(manifest)
    ups = _updates(manifest)
    out = aggregate_round(manifest, 0, w, ups)
    weights = np.array([u.n_examples for u in ups], np.float64)
    want = (w + (weights / weights.sum()) @ np.stack([u.update for u in ups]).astype(np.float64)).astype(np.float32)
    assert np.allclose(out.params, want, atol=1e-7)
    assert out.rule == {"name": "fedavg"} and out.match_ids == [0, 1, 2, 3]
    shuffled = ups[:]
    random.Random(4).shuffle(shuffled)
    again = aggregate_round(manifest, 0, w.copy(), shuffled)
    assert params_digest(again.params) == params_digest(out.params)  # bit for bit
    rec = out.record({0: 0, 1: 1, 2: 2, 3: 3})
    assert rec.provider_ids() == [0, 1, 2, 3] and np.array_equal(rec.weights, weights)


def test_evaluation_when_a_test_set_is_given(manifest, shards):
    w = initial_params(manifest)
    x, y = shards[2]
    out = aggregate_round(manifest, 0, w, _updates(manifest), (x, y))
    assert out.n_test == len(y) and 0 <= out.accuracy <= 1 and out.loss > 0


def test_rule_fallbacks_and_empty_round():
    m = small_manifest(aggregation="multikrum", aggregation_params={"f": 1})
    assert round_rule(m, 4)[1] == {"name": "multikrum", "f": 1, "m": None}
    assert round_rule(m, 3)[1] == {"name": "median", "fallback_from": {"name": "multikrum", "f": 1, "m": None}}
    w = initial_params(m)
    ups = _updates(m, ids=(0, 1))
    out = aggregate_round(m, 0, w, ups)
    assert np.allclose(out.params, w + np.median(np.stack([u.update for u in ups]), axis=0), atol=1e-7)
    empty = aggregate_round(m, 0, w, [])
    assert np.array_equal(empty.params, w) and empty.rule == {"name": "none"} and empty.updates.shape[0] == 0
    assert round_rule(small_manifest(aggregation="fedprox"), 2)[1] == {"name": "fedprox"}


def test_aggregator_reclips(manifest):
    m = small_manifest(clip_norm=0.001)
    w = initial_params(m)
    out = aggregate_round(m, 0, w, _updates(m))
    assert all(np.linalg.norm(u) <= 0.001 + 1e-7 for u in out.updates)
    assert np.linalg.norm(out.params - w) <= 0.001 + 1e-6


def test_bad_round_inputs(manifest):
    w = initial_params(manifest)
    ups = _updates(manifest)
    with pytest.raises(TaskError, match=r"more than one accepted update for match\(es\) \[1\]"):
        aggregate_round(manifest, 0, w, ups + [ups[1]])
    with pytest.raises(TaskError, match="bound to another round"):
        aggregate_round(manifest, 1, w, ups)
    with pytest.raises(TaskError, match="global model has shape"):
        aggregate_round(manifest, 0, w[:-1], ups)


def test_round_result_document(manifest):
    w = initial_params(manifest)
    out = aggregate_round(manifest, 0, w, _updates(manifest, ids=(0, 2)))
    res = out.result({0: "c0", 2: "c2"}, [{"match_id": 1, "cid": "c1", "reason": "undecryptable"}], model_cid="m1")
    assert res.included_ids == [0, 2] and res.excluded[0]["reason"] == "undecryptable"
    assert res.params_digest == params_digest(out.params) and res.model_cid == "m1"
    with pytest.raises(TaskError, match=r"no update CID given for match\(es\) \[2\]"):
        out.result({0: "c0"})
