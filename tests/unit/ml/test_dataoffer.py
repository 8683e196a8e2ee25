"""The data offer document: formats, metadata without raw rows, and each bad dataset refused with file, problem and fix."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.errors import DatasetError
from dainode.ml.dataoffer import data_offer_document


def test_builtin_document_has_shards_quality_and_metadata():
    doc = data_offer_document("iris", shards=3)
    assert doc["data_schema"] == "dainode.data-schema/1" and doc["dataset"]["rows"] == 150
    assert [s["rows"] for s in doc["shards"]] == [50, 50, 50] and len({s["digest"] for s in doc["shards"]}) == 3
    assert doc["quality"]["function"] == "dainode.quality/1" and 0 < doc["quality"]["score"] <= 1
    assert len(doc["metadata"]["feature_ranges"]) == 4
    assert data_offer_document("iris", shards=3)["shards"] == doc["shards"]  # reproducible


def test_parquet_and_npz(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}), tmp_path / "d.parquet")
    assert data_offer_document(str(tmp_path / "d.parquet"), label="y", shards=2)["dataset"]["rows"] == 4
    np.savez(tmp_path / "d.npz", x=np.arange(8.0).reshape(4, 2), y=np.array([0, 1, 1, 0]))
    assert data_offer_document(str(tmp_path / "d.npz"))["dataset"]["features"] == [2]


@pytest.mark.parametrize("name, text, label, shards, message", [
    ("missing.csv", None, "y", 1, "no such file"),
    ("nolabel.csv", "a,y\n1,0\n2,1\n", None, 1, "needs its label column; fix: pass --label"),
    ("wrong.csv", "a,y\n1,0\n2,1\n", "target", 1, "label column 'target' not in header"),
    ("text.csv", "a,y\n1,0\nx,1\n", "y", 1, "'x' is not a number"),
    ("nan.csv", "a,y\n1,0\nnan,1\n", "y", 1, "missing value"),
    ("inf.csv", "a,y\n1,0\ninf,1\n", "y", 1, "not finite"),
    ("few.csv", "a,y\n1,0\n2,1\n", "y", 5, "2 rows cannot make 5 non-empty shards; fix: use --shards 2"),
    ("one.csv", "a,y\n1,0\n2,0\n", "y", 1, "at least two classes; fix"),
])
def test_bad_datasets(tmp_path, name, text, label, shards, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(DatasetError, match=message) as info:
        data_offer_document(str(path), label=label, shards=shards)
    assert name in str(info.value) and "fix" in str(info.value)
