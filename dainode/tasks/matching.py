"""Does an offer fit a task? Schema, quality and price checks of a data or compute offer against the manifest."""

from __future__ import annotations

import math
from typing import Any

from dainode.tasks.manifest import Manifest


def _get(doc: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(doc, dict) or p not in doc:
            return None
        doc = doc[p]
    return doc


def data_offer_misfits(manifest: Manifest, schema_doc: dict, price_wei: int) -> list[str]:
    """Why a data offer does not fit the manifest's [data] and price (empty list: it fits).

    ``schema_doc`` is the provider's data-schema document (``dainode.ml.preprocess.schema_document``:
    ``dataset.features``, ``dataset.label_classes``, ``dataset.rows``, ``quality.score``).
    """
    d, out = manifest.data, []
    feats = _get(schema_doc, "dataset", "features")
    if not isinstance(feats, list) or not all(isinstance(f, int) for f in feats):
        out.append(f"schema has no feature shape (dataset.features is {feats!r})")
    elif math.prod(feats) != math.prod(d.features):
        out.append(f"offer rows have {feats} features, the task needs {list(d.features)}")
    classes = _get(schema_doc, "dataset", "label_classes")
    if not isinstance(classes, list):
        out.append(f"schema has no label classes (dataset.label_classes is {classes!r})")
    else:
        extra = sorted(set(classes) - set(d.label_classes))
        if extra:
            out.append(f"offer has label classes {extra} that the task does not accept ({list(d.label_classes)})")
    rows = _get(schema_doc, "dataset", "rows")
    if not isinstance(rows, int) or rows < d.min_rows:
        out.append(f"offer has {rows!r} rows, the task needs at least {d.min_rows}")
    score = _get(schema_doc, "quality", "score")
    if not isinstance(score, (int, float)) or not score >= d.min_quality:
        out.append(f"offer quality is {score!r}, the task needs at least {d.min_quality}")
    if int(price_wei) > manifest.task.max_data_price_wei:
        out.append(f"offer price {int(price_wei)} wei is above the task's max_data_price_wei "
                   f"{manifest.task.max_data_price_wei}")
    return out


def compute_offer_misfits(manifest: Manifest, price_wei: int, spec_doc: dict | None = None) -> list[str]:
    """Why a compute offer does not fit: its price, and (if its spec lists them) the privacy modes it supports."""
    out = []
    if int(price_wei) > manifest.task.max_compute_price_wei:
        out.append(f"offer price {int(price_wei)} wei is above the task's max_compute_price_wei "
                   f"{manifest.task.max_compute_price_wei}")
    modes = _get(spec_doc, "privacy_modes") if spec_doc is not None else None
    if isinstance(modes, list) and manifest.task.privacy not in modes:
        out.append(f"offer supports privacy modes {modes}, the task needs {manifest.task.privacy!r}")
    return out
