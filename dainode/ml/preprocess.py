"""Data-provider pre-processing (paper §4.1): sharding, the quality score, metadata -> schema document."""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Sequence

import numpy as np

from dainode.canonical import canonical_json as _encode
from dainode.errors import DatasetError
from dainode.ml.datasets import Dataset

SCHEMA_VERSION = "dainode.data-schema/1"
QUALITY_FUNCTION = "dainode.quality/1"
# Equal weights: no component is privileged; agreement is only averaged in when a reference is given.
QUALITY_WEIGHTS = {"completeness": 1.0, "label_balance": 1.0, "uniqueness": 1.0, "reference_agreement": 1.0}


# --- sharding -----------------------------------------------------------------------


def shard_iid(n_rows: int, n_shards: int, seed: int) -> list[np.ndarray]:
    """Random permutation (numpy PCG64, ``seed``) cut into ``n_shards`` near-equal parts, each sorted."""
    _check_shards(n_rows, n_shards)
    perm = np.random.default_rng(seed).permutation(n_rows)
    return [np.sort(p) for p in np.array_split(perm, n_shards)]


def shard_label_skew(y: np.ndarray, n_shards: int, seed: int, parts_per_shard: int = 2) -> list[np.ndarray]:
    """Label-skewed split (McMahan et al.'s pathological non-IID): sort rows by label (stable),
    cut into ``n_shards * parts_per_shard`` equal runs, and give each shard ``parts_per_shard``
    runs chosen by a seeded permutation. With 10 classes, 4 shards and 2 parts each, every shard
    sees 2-5 classes, most of them only partially."""
    y = np.asarray(y)
    _check_shards(len(y), n_shards * parts_per_shard)
    runs = np.array_split(np.argsort(y, kind="stable"), n_shards * parts_per_shard)
    order = np.random.default_rng(seed).permutation(len(runs))
    return [np.sort(np.concatenate([runs[j] for j in order[i * parts_per_shard:(i + 1) * parts_per_shard]]))
            for i in range(n_shards)]


def shard_dirichlet(y: np.ndarray, n_shards: int, seed: int, alpha: float = 0.5) -> list[np.ndarray]:
    """Per class, split its rows among shards with proportions ~ Dirichlet(alpha) (smaller alpha: more skew)."""
    y = np.asarray(y)
    _check_shards(len(y), n_shards)
    if not alpha > 0:
        raise DatasetError(f"dirichlet alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_shards)]
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        cuts = (np.cumsum(rng.dirichlet([alpha] * n_shards)) * len(idx)).astype(int)[:-1]
        for i, part in enumerate(np.split(idx, cuts)):
            parts[i].append(part)
    return [np.sort(np.concatenate(p)) for p in parts]


def _check_shards(n_rows: int, n_parts: int) -> None:
    if n_parts < 1:
        raise DatasetError(f"number of shards must be >= 1, got {n_parts}")
    if n_rows < n_parts:
        raise DatasetError(f"cannot cut {n_rows} rows into {n_parts} non-empty parts")


# --- quality score ------------------------------------------------------------------


def quality_score(ds: Dataset, label_classes: Sequence[int] | None = None,
                  reference: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
    """The agreed quality function ``dainode.quality/1``; every component is in [0, 1]:

    - completeness = 1 - (NaN feature cells / all feature cells)
    - label_balance = H(p) / ln(K): Shannon entropy of the label frequencies normalised by its
      maximum, K = number of declared classes (observed classes if none declared); 1.0 if K = 1
    - uniqueness = 1 - duplicate_rate, duplicate_rate = rows whose (features, label) equal an
      earlier row's / rows (NaN compares equal to NaN here)
    - reference_agreement = share of rows where ``reference(x)`` (a model the task names)
      predicts the row's label; only when a reference is given
    - score = mean of the present components with QUALITY_WEIGHTS (all 1.0)
    """
    n = len(ds)
    if n == 0:
        raise DatasetError("quality score of an empty dataset is undefined")
    flat = np.asarray(ds.x, np.float64).reshape(n, -1)
    completeness = 1.0 - float(np.isnan(flat).sum()) / max(flat.size, 1)
    classes = sorted(set(int(c) for c in (label_classes if label_classes is not None else np.unique(ds.y))))
    counts = np.array([int(np.sum(ds.y == c)) for c in classes], np.float64)
    p = counts[counts > 0] / n
    k = len(classes)
    balance = 1.0 if k <= 1 else float(-(p * np.log(p)).sum() / math.log(k))
    keyed = np.concatenate([np.nan_to_num(flat, nan=np.inf), ds.y.reshape(n, 1).astype(np.float64)], axis=1)
    n_unique = len(np.unique(keyed, axis=0))
    dup_rate = 1.0 - n_unique / n
    comps = {"completeness": completeness, "label_balance": balance, "uniqueness": 1.0 - dup_rate}
    if reference is not None:
        pred = np.asarray(reference(np.nan_to_num(ds.x)))
        comps["reference_agreement"] = float(np.mean(pred == ds.y))
    wsum = sum(QUALITY_WEIGHTS[name] for name in comps)
    score = sum(QUALITY_WEIGHTS[name] * v for name, v in comps.items()) / wsum
    return {"function": QUALITY_FUNCTION, "score": round(score, 6),
            **{k: round(v, 6) for k, v in comps.items()}, "duplicate_rate": round(dup_rate, 6),
            "rows": n, "label_counts": {str(c): int(v) for c, v in zip(classes, counts)}}


# --- schema document ----------------------------------------------------------------


def shard_digest(ds: Dataset) -> str:
    """sha256 over the shard's canonical bytes: features as little-endian float32, then labels as int64."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ds.x, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(ds.y, dtype="<i8").tobytes())
    return "sha256:" + h.hexdigest()


def schema_document(ds: Dataset, shards: Sequence[np.ndarray], *, label_classes: Sequence[int] | None = None,
                    reference: Callable[[np.ndarray], np.ndarray] | None = None,
                    metadata: dict[str, Any] | None = None, split: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data schema a provider publishes: fields, shapes, shards (rows, labels, digest, quality), overall quality."""
    classes = sorted(int(c) for c in (label_classes if label_classes is not None else np.unique(ds.y)))
    shard_docs = []
    for i, idx in enumerate(shards):
        sub = ds.subset(np.asarray(idx))
        q = quality_score(sub, classes, reference)
        shard_docs.append({"index": i, "rows": len(sub), "digest": shard_digest(sub), "quality": q})
    doc = {
        "schema": SCHEMA_VERSION,
        "dataset": {"name": ds.name, "rows": len(ds), "features": list(ds.x.shape[1:]),
                    "feature_names": list(ds.feature_names), "dtype": str(ds.x.dtype), "label_classes": classes},
        "split": split or {},
        "shards": shard_docs,
        "quality": quality_score(ds, classes, reference),
        "metadata": metadata or {},
    }
    canonical_json(doc)  # fail here, not at publication, if metadata is not JSON-able
    return doc


def canonical_json(doc: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    try:
        return _encode(doc)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"schema document is not canonical-JSON serialisable: {exc}") from exc
