"""A data provider's offer document from a dataset spec: load, refuse bad data, shard, score, describe (paper §4.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dainode.errors import DatasetError
from dainode.ml.datasets import BUILTIN, Dataset, load_builtin, load_file
from dainode.ml.preprocess import schema_document, shard_iid

SHARD_SEED = 0  # sharding is reproducible: the same file gives the same shards and digests


def load_spec(spec: str, label: str | None = None) -> Dataset:
    """`digits`/`breast_cancer`/`iris`/`wine`, or a .csv / .parquet (with `label`) or .npz (arrays x, y) file."""
    if spec in BUILTIN:
        return load_builtin(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(
            f"dataset {spec!r}: no such file, and not a built-in set; fix: give the path of a .csv, .npz or .parquet file "
            f"on the node's machine, or one of {', '.join(BUILTIN)}"
        )
    if path.suffix.lower() in (".csv", ".parquet") and not label:
        raise DatasetError(f"{path}: a {path.suffix.lower()[1:].upper()} dataset needs its label column; fix: pass --label COLUMN")
    try:
        return load_file(path, {"label_column": label} if label else {})
    except DatasetError as exc:
        raise DatasetError(f"{exc}; fix the file (numeric, finite feature values; integer labels) or choose another dataset") from None


def check_trainable(ds: Dataset, shards: int, where: str) -> None:
    classes = np.unique(ds.y)
    if len(classes) < 2:
        raise DatasetError(
            f"{where}: every row has label {int(classes[0]) if len(classes) else '?'}; a classifier needs at least two classes; "
            "fix: add rows of other classes or pick the right --label column"
        )
    if shards < 1:
        raise DatasetError(f"{where}: --shards must be at least 1, got {shards}")
    if len(ds) < shards:
        raise DatasetError(f"{where}: {len(ds)} rows cannot make {shards} non-empty shards; fix: use --shards {len(ds)} or fewer")


def data_offer_document(spec: str, *, label: str | None = None, shards: int = 1) -> dict[str, Any]:
    """Everything of the offer document that depends on the data (no raw values leave: only metadata).

    fields: dataset (rows, features shape, feature names, dtype, label classes), shards (rows, digest, quality
    per shard), quality (`dainode.quality/1`, see dainode.ml.preprocess.quality_score), metadata (feature
    ranges, label column, source format).
    """
    ds = load_spec(spec, label)
    where = spec
    check_trainable(ds, shards, where)
    parts = shard_iid(len(ds), shards, SHARD_SEED)
    flat = np.asarray(ds.x, np.float64).reshape(len(ds), -1)
    names = ds.feature_names if len(ds.feature_names) == flat.shape[1] else [f"f{i}" for i in range(flat.shape[1])]
    ranges = {n: [float(lo), float(hi)] for n, lo, hi in zip(names, flat.min(axis=0), flat.max(axis=0))}
    source = "builtin" if spec in BUILTIN else Path(spec).suffix.lower().lstrip(".")
    metadata = {"feature_ranges": ranges, "label_column": label, "source": source, "shard_seed": SHARD_SEED, "sharding": "iid"}
    doc = schema_document(ds, parts, metadata=metadata)
    doc["data_schema"] = doc.pop("schema")
    return doc
