"""Canonical task documents: sealed updates and global models bound to (chain, task, match, round, sender), and round results.

Rejection reasons (``DocumentRejected.reason``, used as on-chain evidence): ``malformed``,
``wrong_task``, ``wrong_round``, ``wrong_sender``, ``wrong_match``, ``undecryptable``,
``wrong_shape``, ``non_finite``, ``bad_examples``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from dainode.crypto.keys import PrivateKey, PublicKey
from dainode.errors import DocumentRejected, TaskError
from dainode.ml.preprocess import canonical_json
from dainode.ml.spec import ModelSpec, params_to_bytes
from dainode.tasks import sealed
from dainode.tasks.sealed import TaskRef, address

UPDATE_SCHEMA = "dainode.update/1"
MODEL_SCHEMA = "dainode.global-model/1"
DATA_SCHEMA = "dainode.training-data/1"
ROUND_SCHEMA = "dainode.round-result/1"
REASONS = ("malformed", "wrong_task", "wrong_round", "wrong_sender", "wrong_match", "undecryptable",
           "wrong_shape", "non_finite", "bad_examples", "late")
_TASK = ("chain_id", "task_address", "task_id")
_UPDATE_ORDER = [("wrong_task", _TASK), ("wrong_round", ("round",)), ("wrong_sender", ("sender",)),
                 ("wrong_match", ("match_id",))]
_MODEL_ORDER = [("wrong_task", _TASK), ("wrong_round", ("round",)), ("wrong_sender", ("sender",))]
_DATA_ORDER = [("wrong_task", _TASK), ("wrong_sender", ("sender",)), ("wrong_match", ("match_id",))]
_LEN = struct.Struct(">I")


def params_digest(params: np.ndarray) -> str:
    """``sha256:<hex>`` of the parameters' wire form (little-endian float32)."""
    return "sha256:" + hashlib.sha256(params_to_bytes(np.asarray(params, np.float32))).hexdigest()


def _vector_payload(meta: dict, vec: np.ndarray) -> bytes:
    head = canonical_json({**meta, "n_params": int(vec.size), "dtype": "<f4"})
    return _LEN.pack(len(head)) + head + params_to_bytes(vec)


def _read_vector(payload: bytes, spec: ModelSpec) -> tuple[dict, np.ndarray]:
    if len(payload) < 4:
        raise DocumentRejected("malformed", "payload is shorter than its length prefix")
    (hlen,) = _LEN.unpack_from(payload)
    try:
        meta = json.loads(payload[4:4 + hlen].decode("utf-8"))
        assert isinstance(meta, dict) and meta.get("dtype") == "<f4"
    except (UnicodeDecodeError, ValueError, AssertionError):
        raise DocumentRejected("malformed", "payload metadata is not a JSON object with dtype '<f4'") from None
    body = payload[4 + hlen:]
    if len(body) != 4 * spec.n_params or meta.get("n_params") != spec.n_params:
        raise DocumentRejected("wrong_shape", f"{len(body)} bytes / n_params {meta.get('n_params')!r}; the task's "
                                              f"{spec.kind} model has {spec.n_params} float32 parameters")
    vec = np.frombuffer(body, "<f4").astype(np.float32)
    bad = ~np.isfinite(vec)
    if bad.any():
        raise DocumentRejected("non_finite", f"{int(bad.sum())} NaN/infinite value(s), first at index {int(np.argmax(bad))}")
    return meta, vec


# --- updates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateBinding:
    """What an update is for; built by the sender from its match and by the receiver from the on-chain event."""

    task: TaskRef
    match_id: int
    round: int
    sender: str  # the computation provider's address (msg.sender of submitUpdate)

    def __post_init__(self):
        object.__setattr__(self, "sender", address(self.sender, "sender"))

    def fields(self) -> dict:
        return {**self.task.fields(), "match_id": int(self.match_id), "round": int(self.round), "sender": self.sender}


@dataclass(frozen=True)
class OpenedUpdate:
    binding: UpdateBinding
    update: np.ndarray = field(repr=False)  # params - global params of the round, float32
    n_examples: int
    train_loss: float | None = None

    @property
    def match_id(self) -> int:
        return self.binding.match_id


def seal_update(binding: UpdateBinding, update: np.ndarray, n_examples: int, recipients: Iterable[PublicKey], *,
                train_loss: float | None = None) -> bytes:
    """The compute provider's update envelope, for the task key (``recipients``)."""
    vec = np.asarray(update, np.float32).ravel()
    if not np.all(np.isfinite(vec)):
        raise TaskError("refusing to seal an update with NaN or infinite values")
    if isinstance(n_examples, bool) or int(n_examples) < 1:
        raise TaskError(f"an update needs n_examples >= 1, got {n_examples!r}")
    meta = {"n_examples": int(n_examples)}
    if train_loss is not None and math.isfinite(train_loss):
        meta["train_loss"] = float(train_loss)
    return sealed.pack(UPDATE_SCHEMA, binding.fields(), recipients, _vector_payload(meta, vec))


def open_update(blob: bytes, key: PrivateKey, expected: UpdateBinding, spec: ModelSpec, *,
                max_examples: int | None = None) -> OpenedUpdate:
    """Check and decrypt an update; DocumentRejected(reason, detail) if it is not a valid update for ``expected``."""
    payload = sealed.unpack(blob, key, UPDATE_SCHEMA, expected.fields(), _UPDATE_ORDER)
    meta, vec = _read_vector(payload, spec)
    n = meta.get("n_examples")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or (max_examples is not None and n > max_examples):
        limit = f" and <= {max_examples} (the offer's rows)" if max_examples is not None else ""
        raise DocumentRejected("bad_examples", f"n_examples is {n!r}; expected an integer >= 1{limit}")
    loss = meta.get("train_loss")
    return OpenedUpdate(expected, vec, n, float(loss) if isinstance(loss, (int, float)) else None)


# --- global models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelBinding:
    """A global model: the input of ``round`` (round 0: the initial model; round R: the final one)."""

    task: TaskRef
    round: int
    sender: str  # the model provider's address

    def __post_init__(self):
        object.__setattr__(self, "sender", address(self.sender, "sender"))

    def fields(self) -> dict:
        return {**self.task.fields(), "round": int(self.round), "sender": self.sender}


def seal_global_model(binding: ModelBinding, params: np.ndarray, recipients: Iterable[PublicKey]) -> bytes:
    """The global model for the matched compute providers' keys and the task key (``recipients``)."""
    vec = np.asarray(params, np.float32).ravel()
    if not np.all(np.isfinite(vec)):
        raise TaskError("refusing to seal a global model with NaN or infinite values")
    return sealed.pack(MODEL_SCHEMA, binding.fields(), recipients, _vector_payload({}, vec))


def open_global_model(blob: bytes, key: PrivateKey, expected: ModelBinding, spec: ModelSpec) -> np.ndarray:
    payload = sealed.unpack(blob, key, MODEL_SCHEMA, expected.fields(), _MODEL_ORDER)
    return _read_vector(payload, spec)[1]


# --- training data (data provider -> its computation provider, once per task) ------------------


@dataclass(frozen=True)
class DataBinding:
    """A data provider's training rows for one match, for ``provideData``."""

    task: TaskRef
    match_id: int
    sender: str  # the data provider's address

    def __post_init__(self):
        object.__setattr__(self, "sender", address(self.sender, "sender"))

    def fields(self) -> dict:
        return {**self.task.fields(), "match_id": int(self.match_id), "sender": self.sender}


def seal_training_data(binding: DataBinding, x: np.ndarray, y: np.ndarray, recipients: Iterable[PublicKey]) -> bytes:
    """The rows (encoded as a test set is: ``testset.encode_test_set``) for the computation provider's key only."""
    from dainode.tasks.testset import encode_test_set

    return sealed.pack(DATA_SCHEMA, binding.fields(), recipients, encode_test_set(x, y))


def open_training_data(blob: bytes, key: PrivateKey, expected: DataBinding, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    from dainode.tasks.testset import decode_test_set

    payload = sealed.unpack(blob, key, DATA_SCHEMA, expected.fields(), _DATA_ORDER)
    try:
        x, y = decode_test_set(payload)
    except TaskError as exc:
        raise DocumentRejected("malformed", str(exc)) from None
    if int(np.prod(x.shape[1:])) != int(np.prod(spec.feature_shape)):
        raise DocumentRejected("wrong_shape", f"rows have {x.shape[1:]} features, the model takes {spec.feature_shape}")
    if y.min() < 0 or y.max() >= spec.n_classes:
        raise DocumentRejected("wrong_shape", f"labels span [{y.min()}, {y.max()}], the model has {spec.n_classes} classes")
    return x, y


# --- round results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    """What the model provider publishes after aggregating round ``round`` into global model ``round + 1``."""

    round: int
    included: tuple[dict, ...]  # {"match_id", "cid", "n_examples"}, sorted by match_id
    excluded: tuple[dict, ...]  # {"match_id", "cid", "reason", "detail"}, sorted by match_id
    rule: dict  # the rule applied (the manifest's, or the documented fallback)
    params_digest: str  # of the new global model
    accuracy: float
    loss: float
    n_test: int
    model_cid: str | None = None
    he_model_cid: str | None = None  # he tasks: the CKKS-encrypted global model the computation providers train on

    @property
    def included_ids(self) -> list[int]:
        return [int(d["match_id"]) for d in self.included]

    def to_document(self) -> dict[str, Any]:
        doc = {"schema": ROUND_SCHEMA, "round": self.round, "included": [dict(d) for d in self.included],
               "excluded": [dict(d) for d in self.excluded], "rule": dict(self.rule),
               "params_digest": self.params_digest, "accuracy": self.accuracy, "loss": self.loss, "n_test": self.n_test}
        if self.model_cid is not None:
            doc["model_cid"] = self.model_cid
        if self.he_model_cid is not None:
            doc["he_model_cid"] = self.he_model_cid
        return doc

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_document())

    @classmethod
    def from_document(cls, doc: Any) -> "RoundResult":
        try:
            assert isinstance(doc, dict) and doc.get("schema") == ROUND_SCHEMA
            inc = tuple({"match_id": int(d["match_id"]), "cid": str(d["cid"]), "n_examples": int(d["n_examples"])}
                        for d in doc["included"])
            exc = tuple({"match_id": int(d["match_id"]), "cid": str(d["cid"]), "reason": str(d["reason"]),
                         "detail": str(d.get("detail", ""))} for d in doc["excluded"])
            res = cls(round=int(doc["round"]), included=inc, excluded=exc, rule=dict(doc["rule"]),
                      params_digest=str(doc["params_digest"]), accuracy=float(doc["accuracy"]),
                      loss=float(doc["loss"]), n_test=int(doc["n_test"]),
                      model_cid=None if doc.get("model_cid") is None else str(doc["model_cid"]),
                      he_model_cid=None if doc.get("he_model_cid") is None else str(doc["he_model_cid"]))
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise DocumentRejected("malformed", f"not a {ROUND_SCHEMA} document: {exc!r}") from None
        if any(d["reason"] not in REASONS for d in res.excluded):
            raise DocumentRejected("malformed", f"round result names an unknown exclusion reason; known: {REASONS}")
        return res

    @classmethod
    def from_bytes(cls, data: bytes) -> "RoundResult":
        try:
            return cls.from_document(json.loads(bytes(data).decode("utf-8")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DocumentRejected("malformed", f"round result is not JSON: {exc}") from None
