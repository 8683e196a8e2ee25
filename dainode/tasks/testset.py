"""The model provider's test set: loading it from the manifest, its canonical bytes, and the on-chain commitment.

Commitment (what ``openTask`` stores and ``revealTestSet(cid, salt)`` checks):

    commitment = keccak256(cid_digest || salt)          -- Solidity: keccak256(abi.encodePacked(cid, salt))

where ``cid_digest`` is the 32-byte sha2-256 multihash digest of the test set's CID (the
``bytes32`` the chain carries for every CID) and ``salt`` is 32 random bytes kept secret until
the reveal. The CID is that of ``encode_test_set(x, y)`` as put on IPFS.
"""

from __future__ import annotations

import hmac
import json
import os
import struct
from pathlib import Path

import numpy as np
from eth_utils import keccak

from dainode.errors import DatasetError, InvalidBlock, TaskError
from dainode.ml.datasets import BUILTIN, Dataset, load_builtin, load_file, stratified_split
from dainode.ml.preprocess import canonical_json
from dainode.store.cid import CID, RAW, SHA2_256, cid_of, verify_block
from dainode.tasks.manifest import Manifest

SCHEMA = "dainode.test-set/1"
MAGIC = b"DAITEST1"
SALT_LEN = 32
_LEN = struct.Struct(">I")


def load_test_set(manifest: Manifest, *, base_dir: str | Path | None = None) -> Dataset:
    """The [test] dataset: loaded (SPEC: built-in name or .csv/.npz path), validated against [data], scaled, split."""
    t = manifest.test
    schema = dict(manifest.data_schema)
    schema["rows"] = {"min": 1}  # [data].min_rows is for offers, not for the test set
    if t.label_column:
        schema["label_column"] = t.label_column
    try:
        if t.dataset in BUILTIN:
            ds = load_builtin(t.dataset, schema)
        else:
            path = Path(t.dataset).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            ds = load_file(path, schema)
        ds.x = (np.asarray(ds.x, np.float32) * np.float32(t.feature_scale)).astype(np.float32)
        if t.split_fraction is not None:
            train, test = stratified_split(ds, t.split_fraction, t.split_seed)
            ds = test if t.split_part == "test" else train
    except DatasetError as exc:
        raise TaskError(f"test set {t.dataset!r} of the manifest cannot be used: {exc}") from exc
    return ds


def encode_test_set(x: np.ndarray, y: np.ndarray) -> bytes:
    """Canonical bytes: magic, u32 header length, canonical JSON header, x as <f4, y as <i8."""
    x = np.ascontiguousarray(x, dtype="<f4")
    y = np.ascontiguousarray(y, dtype="<i8")
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise TaskError(f"a test set needs x of shape (rows, features...) and y of shape (rows,), got {x.shape}, {y.shape}")
    header = canonical_json({"schema": SCHEMA, "rows": int(len(y)), "features": list(x.shape[1:]),
                             "x": "<f4", "y": "<i8"})
    return MAGIC + _LEN.pack(len(header)) + header + x.tobytes() + y.tobytes()


def decode_test_set(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``encode_test_set`` for untrusted bytes; TaskError says what does not fit."""
    data = bytes(data)
    if len(data) < len(MAGIC) + 4 or data[:len(MAGIC)] != MAGIC:
        raise TaskError("not a dainode test set (bad magic); expected the bytes of encode_test_set")
    (hlen,) = _LEN.unpack_from(data, len(MAGIC))
    at = len(MAGIC) + 4
    try:
        head = json.loads(data[at:at + hlen].decode("utf-8"))
        rows, feats = int(head["rows"]), [int(f) for f in head["features"]]
        ok = head.get("schema") == SCHEMA and head.get("x") == "<f4" and head.get("y") == "<i8"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise TaskError(f"test set header is not valid: {exc}") from None
    if not ok or rows < 1 or not feats or min(feats) < 1:
        raise TaskError(f"test set header {head!r} is not a {SCHEMA} header")
    nx = rows * int(np.prod(feats)) * 4
    body = data[at + hlen:]
    if len(body) != nx + rows * 8:
        raise TaskError(f"test set body has {len(body)} bytes; its header ({rows} rows of {feats}) needs {nx + rows * 8}")
    x = np.frombuffer(body[:nx], "<f4").reshape([rows] + feats).astype(np.float32)
    y = np.frombuffer(body[nx:], "<i8").astype(np.int64)
    if not np.all(np.isfinite(x)):
        raise TaskError("test set features contain NaN or infinite values")
    return x, y


def new_salt() -> bytes:
    return os.urandom(SALT_LEN)


def test_set_cid(data: bytes) -> CID:
    """The CID under which a test set small enough for one block (<= 2 MiB) is put: raw codec, sha2-256."""
    return cid_of(bytes(data), RAW)


def test_set_commitment(cid_digest: bytes | CID, salt: bytes) -> bytes:
    """keccak256(cid_digest || salt), 32 bytes; the contract computes keccak256(abi.encodePacked(cid, salt))."""
    digest = cid_digest.digest if isinstance(cid_digest, CID) else bytes(cid_digest)
    if isinstance(cid_digest, CID) and cid_digest.hash_code != SHA2_256:
        raise TaskError(f"test set CID {cid_digest} is not sha2-256; the chain carries sha2-256 digests only")
    if len(digest) != 32 or len(salt) != SALT_LEN:
        raise TaskError(f"commitment needs a 32-byte CID digest and a {SALT_LEN}-byte salt, got {len(digest)} and {len(salt)}")
    return keccak(digest + bytes(salt))


def check_test_set(data: bytes, cid: CID | str, salt: bytes, commitment: bytes) -> None:
    """Raise TaskError unless ``data`` is the content of ``cid`` (checked here for raw CIDs; a UnixFS CID
    was checked block by block by the store that fetched it) and (cid, salt) open ``commitment``."""
    cid = CID.parse(cid)
    if cid.codec == RAW:
        try:
            verify_block(cid, bytes(data))
        except InvalidBlock as exc:
            raise TaskError(f"revealed test set bytes do not hash to its CID {cid}: {exc}") from None
    want = test_set_commitment(cid, salt)
    if not hmac.compare_digest(want, bytes(commitment)):
        raise TaskError(f"test set commitment mismatch: keccak256(cid digest || salt) = 0x{want.hex()}, "
                        f"committed at open 0x{bytes(commitment).hex()}")


# these are API names, not tests: keep pytest from collecting them where they are imported
test_set_cid.__test__ = False  # type: ignore[attr-defined]
test_set_commitment.__test__ = False  # type: ignore[attr-defined]
