"""Datasets: scikit-learn's bundled sets by name, CSV/NPZ files, validated against a declared schema.

A declared schema (what a task manifest requires, or what a provider promises) is a dict:

    {"features": 64 | [8, 8],          # per-row feature count or shape
     "dtype": "float32",               # numeric dtype the features are cast to
     "label_classes": [0, 1, ...],     # allowed integer labels
     "rows": {"min": 1, "max": 100000},
     "label_column": "target",         # CSV only: the label column's header
     "allow_missing": false}           # empty/NaN feature cells allowed?

Every key is optional. Errors name the column, row (1-based data row for CSV, 0-based
index for arrays) and value that does not fit.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dainode.errors import DatasetError

BUILTIN = ("digits", "breast_cancer", "iris", "wine")
_NUMERIC_DTYPES = ("float32", "float64", "int32", "int64", "uint8")


@dataclass
class Dataset:
    x: np.ndarray  # (rows, *feature_shape), schema dtype
    y: np.ndarray  # (rows,), int64 labels
    feature_names: list[str] = field(default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return int(len(self.y))

    def subset(self, idx) -> "Dataset":
        return Dataset(self.x[idx], self.y[idx], self.feature_names, self.name)


def load_builtin(name: str, schema: dict | None = None) -> Dataset:
    """One of scikit-learn's bundled sets, unscaled (digits are 0..16: divide by 16 for the reference job)."""
    from sklearn import datasets as skd

    loaders = {"digits": skd.load_digits, "breast_cancer": skd.load_breast_cancer,
               "iris": skd.load_iris, "wine": skd.load_wine}
    if name not in loaders:
        raise DatasetError(f"unknown built-in dataset {name!r}; use one of {', '.join(BUILTIN)}")
    b = loaders[name]()
    names = [str(n) for n in getattr(b, "feature_names", [])] or [f"f{i}" for i in range(b.data.shape[1])]
    return validate(Dataset(np.asarray(b.data), np.asarray(b.target, np.int64), names, name), schema or {})


def load_file(path: str | Path, schema: dict | None = None) -> Dataset:
    """Load a user file by extension: ``.csv`` (needs ``label_column``), ``.npz`` (``x``, ``y``)."""
    path = Path(path)
    schema = schema or {}
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist or is not a regular file")
    if suffix == ".csv":
        return load_csv(path, schema)
    if suffix == ".npz":
        return load_npz(path, schema)
    if suffix == ".parquet":
        return load_parquet(path, schema)
    raise DatasetError(f"{path}: unsupported dataset format {suffix!r}; use .csv, .npz or .parquet")


def load_parquet(path: str | Path, schema: dict) -> Dataset:
    """Parquet table; ``schema["label_column"]`` names the integer label column, every other column is a numeric feature."""
    import pyarrow.parquet as pq  # only when a Parquet file is loaded

    label_col = schema.get("label_column")
    if not label_col:
        raise DatasetError(f"{path}: a Parquet dataset needs schema['label_column'] naming the label column")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from None
    names = list(table.column_names)
    if label_col not in names:
        raise DatasetError(f"{path}: label column {label_col!r} not in columns {names}")
    feat_names = [n for n in names if n != label_col]
    cols = []
    for n in feat_names:
        col = table.column(n).to_numpy(zero_copy_only=False)
        if col.dtype.kind not in "fiub":
            raise DatasetError(f"{path}: column {n!r} has type {table.schema.field(n).type}, not a number")
        cols.append(col.astype(np.float64))
    y = table.column(label_col).to_numpy(zero_copy_only=False)
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y)))):
        raise DatasetError(f"{path}: label column {label_col!r} does not hold integer labels")
    x = np.stack(cols, axis=1) if cols else np.zeros((len(y), 0))
    return validate(Dataset(x, y.astype(np.int64), feat_names, Path(path).name), schema)


def load_csv(path: str | Path, schema: dict) -> Dataset:
    """CSV with a header row; ``schema["label_column"]`` names the label, every other column is a feature."""
    label_col = schema.get("label_column")
    if not label_col:
        raise DatasetError(f"{path}: a CSV dataset needs schema['label_column'] naming the label column")
    allow_missing = bool(schema.get("allow_missing", False))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read as UTF-8 text: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{path}: file is empty; expected a header row") from None
    if label_col not in header:
        raise DatasetError(f"{path}: label column {label_col!r} not in header {header}")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DatasetError(f"{path}: duplicate column name(s) {dup} in header")
    li = header.index(label_col)
    feat_names = [h for i, h in enumerate(header) if i != li]
    xs, ys = [], []
    for rown, row in enumerate(reader, start=1):
        if not row or all(not c.strip() for c in row):
            continue  # blank line
        if len(row) != len(header):
            raise DatasetError(f"{path}: data row {rown} has {len(row)} fields, header has {len(header)}")
        lab = row[li].strip()
        try:
            lv = float(lab)
            if not lv.is_integer():
                raise ValueError
        except ValueError:
            raise DatasetError(f"{path}: data row {rown}, column {label_col!r}: label {lab!r} is not an integer") from None
        vals = []
        for i, cell in enumerate(row):
            if i == li:
                continue
            cell = cell.strip()
            if cell == "" or cell.lower() == "nan":
                if not allow_missing:
                    raise DatasetError(f"{path}: data row {rown}, column {header[i]!r}: missing value "
                                       "(set allow_missing in the schema to accept gaps)")
                vals.append(math.nan)
                continue
            try:
                v = float(cell)
            except ValueError:
                raise DatasetError(f"{path}: data row {rown}, column {header[i]!r}: {cell!r} is not a number") from None
            if not math.isfinite(v):
                raise DatasetError(f"{path}: data row {rown}, column {header[i]!r}: {cell!r} is not finite")
            vals.append(v)
        xs.append(vals)
        ys.append(int(lv))
    x = np.asarray(xs, np.float64).reshape(len(xs), len(feat_names))
    return validate(Dataset(x, np.asarray(ys, np.int64), feat_names, Path(path).name), schema)


def load_npz(path: str | Path, schema: dict) -> Dataset:
    """NPZ with arrays ``x`` (rows, *features) and ``y`` (rows,) integer labels; pickles are refused."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise DatasetError(f"{path}: NPZ lacks array(s) {missing}; it has {sorted(z.files)}")
            x, y = z["x"], z["y"]
    except DatasetError:
        raise
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable NPZ file (object arrays are refused): {exc}") from exc
    if x.ndim < 2:
        raise DatasetError(f"{path}: x has shape {x.shape}; expected (rows, features...)")
    if y.ndim != 1:
        raise DatasetError(f"{path}: y has shape {y.shape}; expected (rows,)")
    if x.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: x has dtype {x.dtype}; expected a numeric dtype")
    if y.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: y has dtype {y.dtype}; expected integer labels")
    if y.dtype.kind == "f":
        bad = np.nonzero(~np.isfinite(y) | (y != np.round(y)))[0]
        if bad.size:
            raise DatasetError(f"{path}: y[{bad[0]}] = {y[bad[0]].item()!r} is not an integer label")
    names = [f"f{i}" for i in range(int(np.prod(x.shape[1:])))]
    return validate(Dataset(x, y.astype(np.int64), names, Path(path).name), schema)


def validate(ds: Dataset, schema: dict[str, Any]) -> Dataset:
    """Check ``ds`` against a declared schema; cast features to its dtype. Raises DatasetError."""
    known = {"features", "dtype", "label_classes", "rows", "label_column", "allow_missing"}
    extra = set(schema) - known
    if extra:
        raise DatasetError(f"dataset schema has unknown key(s) {sorted(extra)}; allowed: {sorted(known)}")
    x, y = ds.x, ds.y
    if len(x) != len(y):
        raise DatasetError(f"{ds.name}: {len(x)} feature rows but {len(y)} labels")
    rows = schema.get("rows") or {}
    lo, hi = rows.get("min", 1), rows.get("max")
    if len(y) < lo:
        raise DatasetError(f"{ds.name}: {len(y)} rows, schema requires at least {lo}")
    if hi is not None and len(y) > hi:
        raise DatasetError(f"{ds.name}: {len(y)} rows, schema allows at most {hi}")
    if "features" in schema:
        want = schema["features"]
        want = (want,) if isinstance(want, int) else tuple(want)
        have = tuple(x.shape[1:])
        if have != want:
            if int(np.prod(have)) == int(np.prod(want)):
                x = x.reshape((len(x),) + want)  # e.g. flat 64 columns declared as an 8x8 image
            else:
                raise DatasetError(f"{ds.name}: rows have {int(np.prod(have))} features (shape {list(have)}), "
                                   f"schema declares shape {list(want)}")
    dtype = schema.get("dtype", "float32")
    if dtype not in _NUMERIC_DTYPES:
        raise DatasetError(f"dataset schema dtype {dtype!r} is not one of {', '.join(_NUMERIC_DTYPES)}")
    flat = x.reshape(len(x), -1)
    if flat.dtype.kind == "f":
        nan_rows, nan_cols = np.nonzero(np.isnan(flat))
        if nan_rows.size and not schema.get("allow_missing", False):
            r, c = int(nan_rows[0]), int(nan_cols[0])
            col = ds.feature_names[c] if c < len(ds.feature_names) else f"#{c}"
            raise DatasetError(f"{ds.name}: row {r}, column {col!r}: missing value (NaN); "
                               "set allow_missing in the schema to accept gaps")
        inf = np.nonzero(np.isinf(flat))
        if inf[0].size:
            raise DatasetError(f"{ds.name}: row {int(inf[0][0])}, feature #{int(inf[1][0])}: infinite value")
    if np.dtype(dtype).kind in "iu":
        if flat.dtype.kind == "f" and not np.all(flat == np.round(flat)):
            r, c = (int(v[0]) for v in np.nonzero(flat != np.round(flat)))
            raise DatasetError(f"{ds.name}: row {r}, feature #{c}: {flat[r, c].item()!r} is not an integer "
                               f"but schema dtype is {dtype}")
        info = np.iinfo(dtype)
        if flat.size and (flat.min() < info.min or flat.max() > info.max):
            raise DatasetError(f"{ds.name}: feature values [{flat.min()}, {flat.max()}] do not fit {dtype}")
    x = x.astype(dtype)
    classes = schema.get("label_classes")
    if classes is not None:
        allowed = np.asarray(sorted(int(c) for c in classes), np.int64)
        bad = np.nonzero(~np.isin(y, allowed))[0]
        if bad.size:
            r = int(bad[0])
            raise DatasetError(f"{ds.name}: row {r}: label {int(y[r])} is not a declared class "
                               f"{allowed.tolist()} ({bad.size} row(s) affected)")
    return Dataset(x, y.astype(np.int64), ds.feature_names, ds.name)


def stratified_split(ds: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Stratified train/test split; identical to sklearn ``train_test_split(stratify=y, random_state=seed)``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(ds))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=ds.y, random_state=seed)
    return ds.subset(tr), ds.subset(te)
