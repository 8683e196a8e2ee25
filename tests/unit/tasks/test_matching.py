"""Offer fit: a data schema document from the ml pre-processing, and compute offers, checked against the manifest."""

from __future__ import annotations

import numpy as np

from dainode.ml.datasets import load_builtin
from dainode.ml.preprocess import schema_document, shard_iid
from dainode.tasks.matching import compute_offer_misfits, data_offer_misfits


def _doc(n=200, classes=None):
    ds = load_builtin("digits").subset(np.arange(n))
    return schema_document(ds, shard_iid(n, 2, seed=0), label_classes=classes)


def test_digits_offer_fits(manifest):
    assert data_offer_misfits(manifest, _doc(), manifest.task.max_data_price_wei) == []


def test_each_misfit_is_named(manifest):
    doc = _doc(n=40)
    doc["dataset"]["features"] = [30]
    doc["dataset"]["label_classes"] = list(range(12))
    doc["quality"]["score"] = 0.1
    out = data_offer_misfits(manifest, doc, manifest.task.max_data_price_wei + 1)
    assert len(out) == 5, out
    for needle in ("[30] features", "label classes [10, 11]", "40 rows", "quality is 0.1", "above the task's max_data_price_wei"):
        assert any(needle in o for o in out), (needle, out)
    assert "no feature shape" in data_offer_misfits(manifest, {}, 0)[0]


def test_compute_offer(manifest):
    assert compute_offer_misfits(manifest, manifest.task.max_compute_price_wei) == []
    assert "above" in compute_offer_misfits(manifest, manifest.task.max_compute_price_wei + 1)[0]
    assert "needs 'fl'" in compute_offer_misfits(manifest, 0, {"privacy_modes": ["he"]})[0]
