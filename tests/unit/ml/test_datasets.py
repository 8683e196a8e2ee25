"""Dataset loading and schema validation: built-ins, CSV, NPZ, precise errors."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.errors import DatasetError
from dainode.ml.datasets import load_builtin, load_file, stratified_split

CSV_SCHEMA = {"label_column": "label", "features": 3, "label_classes": [0, 1], "rows": {"min": 2, "max": 10}}


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name, rows, feats, classes", [
    ("digits", 1797, 64, 10), ("breast_cancer", 569, 30, 2), ("iris", 150, 4, 3), ("wine", 178, 13, 3)])
def test_builtin_sets(name, rows, feats, classes):
    ds = load_builtin(name, {"features": feats, "label_classes": list(range(classes))})
    assert ds.x.shape == (rows, feats) and ds.x.dtype == np.float32 and len(ds.feature_names) == feats
    assert sorted(np.unique(ds.y).tolist()) == list(range(classes))


def test_builtin_reshaped_to_declared_image_shape():
    assert load_builtin("digits", {"features": [8, 8]}).x.shape == (1797, 8, 8)


def test_unknown_builtin():
    with pytest.raises(DatasetError, match="unknown built-in dataset 'mnist'"):
        load_builtin("mnist")


def test_reference_split_is_stratified_80_20(digits):
    train, test = digits
    assert (len(train), len(test)) == (1437, 360)
    ratio = np.bincount(test.y) / np.bincount(train.y)
    assert np.all(np.abs(ratio - 0.25) < 0.03)
    assert stratified_split(load_builtin("iris"), 0.2, 0)[1].y.tolist() == \
        stratified_split(load_builtin("iris"), 0.2, 0)[1].y.tolist()


def test_csv_good(tmp_path):
    p = write(tmp_path, "d.csv", "a,label,b,c\n1,0,2,3\n4,1,5.5,6\n\n")
    ds = load_file(p, CSV_SCHEMA)
    assert ds.feature_names == ["a", "b", "c"]
    assert ds.x.tolist() == [[1, 2, 3], [4, 5.5, 6]] and ds.y.tolist() == [0, 1]


@pytest.mark.parametrize("text, schema, msg", [
    ("a,b,c,d\n1,0,2,3\n", CSV_SCHEMA, "label column 'label' not in header"),
    ("a,label,b,c\n1,0,2,3\n4,1,x,6\n", CSV_SCHEMA, r"data row 2, column 'b': 'x' is not a number"),
    ("a,label,b,c\n1,0,2,3\n4,1,,6\n", CSV_SCHEMA, r"data row 2, column 'b': missing value"),
    ("a,label,b,c\n1,0,2,3\n4,7,5,6\n", CSV_SCHEMA, r"row 1: label 7 is not a declared class \[0, 1\]"),
    ("a,label,b,c\n1,0,2,3\n4,1.5,5,6\n", CSV_SCHEMA, r"data row 2, column 'label': label '1.5' is not an integer"),
    ("a,label,b\n1,0,2\n4,1,5\n", CSV_SCHEMA, r"rows have 2 features .* schema declares shape \[3\]"),
    ("a,label,b,c\n1,0,2,3\n4,1,5\n", CSV_SCHEMA, "data row 2 has 3 fields, header has 4"),
    ("a,label,b,c\n1,0,2,3\n", CSV_SCHEMA, "1 rows, schema requires at least 2"),
    ("a,label,b,c\n" + "1,0,2,3\n" * 11, CSV_SCHEMA, "11 rows, schema allows at most 10"),
    ("a,label,a,c\n1,0,2,3\n", CSV_SCHEMA, r"duplicate column name\(s\) \['a'\]"),
    ("a,label,b,c\n1,0,2,3\n4,1,inf,6\n", CSV_SCHEMA, "not finite"),
    ("", CSV_SCHEMA, "file is empty"),
    ("a,label,b,c\n1,0,2,3\n", {"features": 3}, "needs schema\\['label_column'\\]"),
])
def test_csv_errors_say_what_does_not_fit(tmp_path, text, schema, msg):
    with pytest.raises(DatasetError, match=msg):
        load_file(write(tmp_path, "d.csv", text), schema)


def test_csv_missing_values_when_allowed(tmp_path):
    p = write(tmp_path, "d.csv", "a,label,b,c\n1,0,,3\n4,1,5,6\n")
    ds = load_file(p, {**CSV_SCHEMA, "allow_missing": True})
    assert np.isnan(ds.x[0, 1]) and ds.x[1, 1] == 5


def test_npz_good_and_errors(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(6, 4)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "ok.npz", x=x, y=y)
    ds = load_file(tmp_path / "ok.npz", {"features": [2, 2], "dtype": "float32", "label_classes": [0, 1, 2]})
    assert ds.x.shape == (6, 2, 2) and ds.x.dtype == np.float32

    np.savez(tmp_path / "nolabel.npz", x=x)
    with pytest.raises(DatasetError, match=r"lacks array\(s\) \['y'\]"):
        load_file(tmp_path / "nolabel.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 6, dtype=object), y=y)
    with pytest.raises(DatasetError, match="object arrays are refused"):
        load_file(tmp_path / "obj.npz")
    np.savez(tmp_path / "rows.npz", x=x, y=y[:5])
    with pytest.raises(DatasetError, match="6 feature rows but 5 labels"):
        load_file(tmp_path / "rows.npz")
    np.savez(tmp_path / "fy.npz", x=x, y=np.array([0, 1, 2.5, 0, 1, 2]))
    with pytest.raises(DatasetError, match=r"y\[2\] = 2.5 is not an integer label"):
        load_file(tmp_path / "fy.npz")
    xn = x.copy()
    xn[3, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=xn, y=y)
    with pytest.raises(DatasetError, match=r"row 3, column 'f2': missing value"):
        load_file(tmp_path / "nan.npz")
    np.savez(tmp_path / "frac.npz", x=x + 0.5, y=y)
    with pytest.raises(DatasetError, match=r"row 0, feature #0: 0.5 is not an integer but schema dtype is uint8"):
        load_file(tmp_path / "frac.npz", {"dtype": "uint8"})
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable NPZ"):
        load_file(tmp_path / "junk.npz")


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "y": [0, 1, 0]}), tmp_path / "d.parquet")
    ds = load_file(tmp_path / "d.parquet", {"label_column": "y"})
    assert ds.x.shape == (3, 2) and ds.y.tolist() == [0, 1, 0] and ds.feature_names == ["a", "b"]
    with pytest.raises(DatasetError, match="label column 'target' not in columns"):
        load_file(tmp_path / "d.parquet", {"label_column": "target"})
    with pytest.raises(DatasetError, match="needs schema\\['label_column'\\]"):
        load_file(tmp_path / "d.parquet")
    pq.write_table(pa.table({"a": ["x", "y"], "y": [0, 1]}), tmp_path / "s.parquet")
    with pytest.raises(DatasetError, match="column 'a' has type string, not a number"):
        load_file(tmp_path / "s.parquet", {"label_column": "y"})
    pq.write_table(pa.table({"a": [1.0, float("nan")], "y": [0, 1]}), tmp_path / "n.parquet")
    with pytest.raises(DatasetError, match="missing value"):
        load_file(tmp_path / "n.parquet", {"label_column": "y"})
    with pytest.raises(DatasetError, match="not a readable Parquet"):
        load_file(write(tmp_path, "junk.parquet", "x"), {"label_column": "y"})


def test_other_formats(tmp_path):
    with pytest.raises(DatasetError, match="unsupported dataset format '.xlsx'"):
        load_file(write(tmp_path, "d.xlsx", "x"))
    with pytest.raises(DatasetError, match="does not exist"):
        load_file(tmp_path / "nope.csv", CSV_SCHEMA)
    with pytest.raises(DatasetError, match="unknown key"):
        load_builtin("iris", {"feature": 4})
