"""Test set: loading from the manifest, canonical bytes, and the keccak256(cid digest || salt) commitment."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.errors import TaskError
from dainode.ml.reference import reference_data
from dainode.store.cid import CID, DAG_PB, multihash
from dainode.tasks.manifest import parse_manifest
from dainode.tasks.testset import (check_test_set, decode_test_set, encode_test_set, load_test_set, new_salt,
                                   test_set_cid, test_set_commitment)
from tests.unit.tasks.helpers import manifest_doc


def test_loads_the_reference_test_split(manifest):
    ds = load_test_set(manifest)
    _, ref = reference_data()  # digits / 16, stratified 80/20, seed 0
    assert ds.x.dtype == np.float32 and ds.x.shape == (360, 64)
    assert np.array_equal(ds.x, ref.x) and np.array_equal(ds.y, ref.y)


def test_whole_dataset_and_csv(tmp_path):
    d = manifest_doc()
    del d["test"]["split"]
    assert len(load_test_set(parse_manifest(d))) == 1797
    rows = ["label," + ",".join(f"f{i}" for i in range(64))]
    rows += [f"{i % 10}," + ",".join(str((i + j) % 17) for j in range(64)) for i in range(30)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    d["test"] = {"dataset": "t.csv", "label_column": "label", "feature_scale": 0.5}
    ds = load_test_set(parse_manifest(d), base_dir=tmp_path)
    assert ds.x.shape == (30, 64) and ds.x[1, 0] == 0.5
    d["test"]["dataset"] = "missing.csv"
    with pytest.raises(TaskError, match="missing.csv.*does not exist"):
        load_test_set(parse_manifest(d), base_dir=tmp_path)


def test_label_outside_the_manifest_classes_is_refused():
    d = manifest_doc()
    d["data"]["label_classes"] = list(range(5))
    d["model"]["layers"] = [64, 16, 5]
    with pytest.raises(TaskError, match="is not a declared class"):
        load_test_set(parse_manifest(d))


def test_encoding_round_trip_and_refusals():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.array([0, 1, 2])
    data = encode_test_set(x, y)
    x2, y2 = decode_test_set(data)
    assert np.array_equal(x2, x) and np.array_equal(y2, y) and x2.dtype == np.float32
    assert encode_test_set(x2, y2) == data  # canonical
    with pytest.raises(TaskError, match="bad magic"):
        decode_test_set(b"PK\x03\x04" + data)
    with pytest.raises(TaskError, match="body has"):
        decode_test_set(data[:-1])
    bad = data.replace(np.float32(5).tobytes(), np.float32(np.nan).tobytes())
    with pytest.raises(TaskError, match="NaN"):
        decode_test_set(bad)


def test_commitment_is_keccak256_of_digest_and_salt():
    # keccak256(abi.encodePacked(bytes32(0), bytes32(0))), a well-known constant (the first zero
    # hash of Ethereum's deposit-contract Merkle tree)
    zero = test_set_commitment(b"\x00" * 32, b"\x00" * 32)
    assert zero.hex() == "ad3228b676f7d3cd4284a5443f17f1962b36e491b30a40b2405849e597ba5fb5"
    cid = test_set_cid(b"test set")
    salt = bytes(range(32))
    assert test_set_commitment(cid, salt) == test_set_commitment(cid.digest, salt)
    with pytest.raises(TaskError, match="32-byte CID digest and a 32-byte salt"):
        test_set_commitment(cid, b"short")


def test_check_test_set():
    data = encode_test_set(np.ones((2, 3), np.float32), np.array([0, 1]))
    cid, salt = test_set_cid(data), new_salt()
    commitment = test_set_commitment(cid, salt)
    check_test_set(data, str(cid), salt, commitment)
    with pytest.raises(TaskError, match="commitment mismatch"):
        check_test_set(data, cid, new_salt(), commitment)
    with pytest.raises(TaskError, match="do not hash to its CID"):
        check_test_set(data + b"x", cid, salt, commitment)
    # a UnixFS (dag-pb) CID: its blocks were verified by the store; the commitment is still checked
    pb = CID(1, DAG_PB, multihash(b"some dag root"))
    check_test_set(data, pb, salt, test_set_commitment(pb, salt))
    with pytest.raises(TaskError, match="commitment mismatch"):
        check_test_set(data, pb, salt, commitment)
