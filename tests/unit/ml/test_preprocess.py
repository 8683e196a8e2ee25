"""Sharding, quality score and the schema document."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dainode.errors import DatasetError
from dainode.ml.datasets import Dataset
from dainode.ml.preprocess import (SCHEMA_VERSION, canonical_json, quality_score, schema_document,
                                   shard_dirichlet, shard_iid, shard_label_skew)


def _is_partition(shards, n):
    allidx = np.concatenate(shards)
    return len(allidx) == n and len(np.unique(allidx)) == n


def test_sharding_is_seeded_and_partitions(digits):
    y = digits[0].y
    for fn in (lambda s: shard_iid(len(y), 4, s), lambda s: shard_label_skew(y, 4, s),
               lambda s: shard_dirichlet(y, 4, s, alpha=0.3)):
        a, b, c = fn(0), fn(0), fn(1)
        assert all(np.array_equal(p, q) for p, q in zip(a, b))
        assert not all(np.array_equal(p, q) for p, q in zip(a, c))
        assert _is_partition(a, len(y))


def test_label_skew_is_skewed_and_iid_is_not(digits):
    y = digits[0].y
    iid = [len(np.unique(y[s])) for s in shard_iid(len(y), 4, 0)]
    skew = [len(np.unique(y[s])) for s in shard_label_skew(y, 4, 0)]
    assert iid == [10] * 4
    assert max(skew) <= 5


def test_shard_errors():
    with pytest.raises(DatasetError, match="cannot cut 3 rows into 4"):
        shard_iid(3, 4, 0)
    with pytest.raises(DatasetError, match="alpha must be > 0"):
        shard_dirichlet(np.zeros(10, int), 2, 0, alpha=0)


def _ds(x, y):
    return Dataset(np.asarray(x, np.float32), np.asarray(y, np.int64), name="t")


def test_quality_components():
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    clean = quality_score(_ds(x, [0, 1] * 5), [0, 1])
    assert clean["completeness"] == 1 and clean["label_balance"] == 1 and clean["uniqueness"] == 1
    assert clean["score"] == 1

    imbalanced = quality_score(_ds(x, [0] * 9 + [1]), [0, 1])
    p = np.array([0.9, 0.1])
    assert imbalanced["label_balance"] == pytest.approx(-(p * np.log(p)).sum() / np.log(2), abs=1e-6)
    # a declared class with no rows lowers balance too
    assert quality_score(_ds(x, [0, 1] * 5), [0, 1, 2])["label_balance"] == pytest.approx(np.log(2) / np.log(3), abs=1e-6)

    dup = x.copy()
    dup[5:] = dup[:5]
    d = quality_score(_ds(dup, [0, 1, 0, 1, 0] * 2), [0, 1])
    assert d["duplicate_rate"] == 0.5 and d["uniqueness"] == 0.5
    # same features, different label: not a duplicate
    assert quality_score(_ds(dup, [0] * 5 + [1] * 5), [0, 1])["duplicate_rate"] == 0

    holes = x.copy()
    holes[0, :2] = np.nan
    assert quality_score(_ds(holes, [0, 1] * 5), [0, 1])["completeness"] == pytest.approx(1 - 2 / 40)

    ref = quality_score(_ds(x, [0, 1] * 5), [0, 1], reference=lambda a: np.zeros(len(a), int))
    assert ref["reference_agreement"] == 0.5
    assert ref["score"] == pytest.approx((1 + 1 + 1 + 0.5) / 4, abs=1e-6)


def test_schema_document_is_canonical_json(digits):
    train = digits[0].subset(np.arange(200))
    shards = shard_iid(len(train), 3, seed=7)
    doc = schema_document(train, shards, label_classes=range(10), metadata={"location": "eu", "device": "x1"},
                          split={"method": "iid", "seed": 7})
    assert doc["schema"] == SCHEMA_VERSION
    assert [s["rows"] for s in doc["shards"]] == [67, 67, 66]
    assert doc["dataset"]["features"] == [64] and doc["dataset"]["label_classes"] == list(range(10))
    raw = canonical_json(doc)
    assert json.loads(raw) == json.loads(json.dumps(doc))
    assert raw == canonical_json(json.loads(raw))  # stable under a round trip
    assert schema_document(train, shards, label_classes=range(10))["shards"][0]["digest"] == doc["shards"][0]["digest"]
    with pytest.raises(DatasetError, match="not canonical-JSON"):
        schema_document(train, shards, metadata={"when": object()})


def test_reference_agreement_flags_wrong_labels(digits, clean_iid):
    """With the trained reference model, a shard with shuffled labels scores visibly lower."""
    from dainode.ml.evaluate import predictor
    from dainode.ml.reference import REFERENCE_MODEL

    test = digits[1]
    ref = predictor(REFERENCE_MODEL, clean_iid.params)
    honest = quality_score(test, range(10), reference=ref)
    assert honest["reference_agreement"] == pytest.approx(clean_iid.accuracy)
    shuffled = Dataset(test.x, np.random.default_rng(0).permutation(test.y), name="shuffled")
    bad = quality_score(shuffled, range(10), reference=ref)
    assert bad["label_balance"] == honest["label_balance"]  # same label counts...
    assert bad["reference_agreement"] < 0.3 and bad["score"] < honest["score"] - 0.15  # ...but wrong labels
