"""The he privacy mode's task documents: the public HE document, encrypted data/model/update envelopes, and the key holder's step.

A task's global model stays in the manifest's parameter form (``logreg`` [d, 2]: a 2-class
softmax, whose decision depends on the class-1 minus class-0 logit only). What is encrypted is
its binary form wb = (W[:,1] − W[:,0], b1 − b0). The computation provider returns, encrypted
and masked, the gradient sums G = Σ_i x_i (σ̃(x_i·wb) − y_i) (x with a trailing 1); the key
holder turns them into the softmax update the fl mode would make with σ̃ in place of the
sigmoid: W[:,1] −= lr·G/n, W[:,0] += lr·G/n (one full-batch step per local epoch). Decryption
is deterministic, so anyone holding the revealed CKKS secret recomputes the same update.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from dainode.crypto import he_linear as hel
from dainode.crypto.ckks import CkksContext
from dainode.crypto.keys import PrivateKey, PublicKey
from dainode.errors import CryptoError, DocumentRejected, TaskError
from dainode.ml.preprocess import canonical_json
from dainode.ml.spec import ModelSpec, unflatten
from dainode.tasks import sealed
from dainode.tasks.documents import DataBinding, OpenedUpdate, UpdateBinding
from dainode.tasks.manifest import Manifest

HE_DOC_SCHEMA = "dainode.he-task/1"
HE_DATA_SCHEMA = "dainode.he-training-data/1"
HE_UPDATE_SCHEMA = "dainode.he-update/1"
HE_MODEL_SCHEMA = "dainode.he-global-model/1"
HE_REFRESH_SCHEMA = "dainode.he-refresh/1"  # a refresh request: the masked gradients so far, for the task key
_UPDATE_ORDER = [("wrong_task", ("chain_id", "task_address", "task_id")), ("wrong_round", ("round",)),
                 ("wrong_sender", ("sender",)), ("wrong_match", ("match_id",))]
_DATA_ORDER = [("wrong_task", ("chain_id", "task_address", "task_id")), ("wrong_sender", ("sender",)),
               ("wrong_match", ("match_id",))]
_LEN = struct.Struct(">I")
MAX_ABS_WB = 1e4  # a key holder's step beyond this is divergence, not training


def is_he(manifest: Manifest) -> bool:
    return manifest.task.privacy == "he"


def he_kind(manifest: Manifest) -> str:
    """The he trainer's kind for the manifest's model (the manifest parser already refused the others)."""
    return "linear" if manifest.model.kind == "linear" else "logistic"


# --- parameter forms -------------------------------------------------------------------------


def _parts(spec: ModelSpec, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    named = unflatten(spec, np.asarray(params))
    w = next(v for k, v in named.items() if k.endswith(".w"))
    b = next(v for k, v in named.items() if k.endswith(".b"))
    return w, b


def to_wb(spec: ModelSpec, params: np.ndarray) -> np.ndarray:
    """The binary form (d weights, then the bias) of the task's parameters, float64."""
    w, b = _parts(spec, np.asarray(params, np.float64))
    if w.shape[-1] == 1:  # linear: one output
        return np.concatenate([w[:, 0], b[:1]]).astype(np.float64)
    return np.concatenate([w[:, 1] - w[:, 0], [b[1] - b[0]]]).astype(np.float64)


def update_from_step(spec: ModelSpec, step_wb: np.ndarray) -> np.ndarray:
    """The parameter-form update (float32) whose binary form changes by ``step_wb``; softmax: split over the two classes."""
    out = np.zeros(spec.n_params, np.float64)
    w, b = _parts(spec, out)  # views into out
    step_wb = np.asarray(step_wb, np.float64)
    if w.shape[-1] == 1:
        w[:, 0], b[0] = step_wb[:-1], step_wb[-1]
    else:
        w[:, 1], w[:, 0] = step_wb[:-1] / 2, -step_wb[:-1] / 2
        b[1], b[0] = step_wb[-1] / 2, -step_wb[-1] / 2
    return out.astype(np.float32)


def key_holder_step(manifest: Manifest, wb: np.ndarray, grad_sums: np.ndarray, n: int) -> np.ndarray:
    """One local epoch as the key holder applies it: the binary-form step for gradient sums over ``n`` rows.

    A softmax's class logits each move by lr·G/n in opposite directions, so the binary form moves by 2·lr·G/n;
    least squares (one output) by lr·G/n.
    """
    factor = 1.0 if manifest.model.kind == "linear" else 2.0
    return -factor * manifest.model.lr * np.asarray(grad_sums, np.float64) / float(n)


# --- the public HE document (named by the task key document) -----------------------------------


@dataclass(frozen=True)
class HeTaskDoc:
    context_cid: str  # the evaluation context (public + relinearisation keys)
    model0_cid: str  # the CKKS-encrypted initial model
    fingerprint: str  # of the CKKS key pair (hex)
    context_bytes: int
    peer_id: str = ""

    def to_document(self) -> dict:
        return {"schema": HE_DOC_SCHEMA, "context_cid": self.context_cid, "model0_cid": self.model0_cid,
                "fingerprint": self.fingerprint, "context_bytes": self.context_bytes, "peer_id": self.peer_id,
                "ring": {"poly_modulus_degree": hel.HE_POLY_MODULUS_DEGREE, "coeff_mod_bits": list(hel.HE_COEFF_MOD_BIT_SIZES),
                         "scale_bits": hel.HE_SCALE_BITS, "galois_keys": 0}}

    @classmethod
    def from_document(cls, doc: Any) -> "HeTaskDoc":
        if not isinstance(doc, dict) or doc.get("schema") != HE_DOC_SCHEMA:
            raise TaskError(f"the task key document carries no {HE_DOC_SCHEMA} section; is this an he task?")
        try:
            return cls(str(doc["context_cid"]), str(doc["model0_cid"]), str(doc["fingerprint"]), int(doc["context_bytes"]),
                       str(doc.get("peer_id") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise TaskError(f"malformed {HE_DOC_SCHEMA} section: {exc!r}") from None


def he_doc_of(key_doc: dict) -> HeTaskDoc:
    return HeTaskDoc.from_document(key_doc.get("he") if isinstance(key_doc, dict) else None)


# --- encrypted global models (CKKS ciphertexts; only the key holder can read them: no envelope) -----


def pack_he_model(round_: int, ctx: CkksContext, model_bytes: bytes, *, epoch: int = 0) -> bytes:
    """``epoch`` > 0: a refreshed model inside round ``round_`` (the input of that local epoch)."""
    head = canonical_json({"schema": HE_MODEL_SCHEMA, "round": int(round_), "epoch": int(epoch),
                           "fingerprint": ctx.fingerprint.hex()})
    return _LEN.pack(len(head)) + head + model_bytes


def unpack_he_model(blob: bytes, round_: int, ctx: CkksContext, n_params: int, *, epoch: int = 0):
    """The encrypted model of ``round_`` (local epoch ``epoch``) under ``ctx``'s key pair; TaskError if it is another."""
    blob = bytes(blob)
    try:
        (hlen,) = _LEN.unpack_from(blob)
        head = json.loads(blob[4:4 + hlen].decode("utf-8"))
        assert isinstance(head, dict) and head.get("schema") == HE_MODEL_SCHEMA
    except (struct.error, UnicodeDecodeError, ValueError, AssertionError):
        raise TaskError(f"not a {HE_MODEL_SCHEMA} document") from None
    if (head.get("round"), head.get("epoch", 0), head.get("fingerprint")) != (int(round_), int(epoch), ctx.fingerprint.hex()):
        raise TaskError(f"encrypted model is for round {head.get('round')!r} epoch {head.get('epoch', 0)!r} under key "
                        f"{head.get('fingerprint')!r:.20}; expected round {round_} epoch {epoch} under the task's CKKS key")
    try:
        return hel.model_from_bytes(ctx, blob[4 + hlen:], n_params)
    except CryptoError as exc:
        raise TaskError(f"encrypted model of round {round_}: {exc}") from None


def encrypted_model_blob(manifest: Manifest, round_: int, ctx: CkksContext, params: np.ndarray) -> bytes:
    """The key holder's encrypted global model of ``round_`` (binary form, each value in every slot)."""
    return encrypted_wb_blob(round_, ctx, to_wb(manifest.model_spec, params))


def encrypted_wb_blob(round_: int, ctx: CkksContext, wb: np.ndarray, *, epoch: int = 0) -> bytes:
    return pack_he_model(round_, ctx, hel.model_to_bytes(hel.encrypt_model(ctx, wb)), epoch=epoch)


# --- data: data provider -> its computation provider ----------------------------------------------


def seal_he_data(binding: DataBinding, data: hel.HeData, recipients: Iterable[PublicKey]) -> bytes:
    return sealed.pack(HE_DATA_SCHEMA, binding.fields(), recipients, data.to_bytes())


def open_he_data(blob: bytes, key: PrivateKey, expected: DataBinding, ctx: CkksContext, spec: ModelSpec) -> hel.HeData:
    payload = sealed.unpack(blob, key, HE_DATA_SCHEMA, expected.fields(), _DATA_ORDER)
    try:
        data = hel.HeData.from_bytes(ctx, payload)
    except CryptoError as exc:
        raise DocumentRejected("malformed", str(exc)) from None
    if data.n_features != int(np.prod(spec.feature_shape)):
        raise DocumentRejected("wrong_shape", f"the data has {data.n_features} features, the model takes {spec.feature_shape}")
    return data


# --- updates: computation provider -> key holder ---------------------------------------------------


def seal_he_update(binding: UpdateBinding, grads: list[bytes], n_examples: int, recipients: Iterable[PublicKey],
                   *, schema: str = HE_UPDATE_SCHEMA) -> bytes:
    """The masked gradients of every local epoch so far (``grads[e]``: ``he_linear.grads_to_bytes``), for the task key.

    ``schema`` HE_REFRESH_SCHEMA: the same payload as a refresh request in the middle of a round.
    """
    head = canonical_json({"n_examples": int(n_examples), "epochs": len(grads)})
    parts = [_LEN.pack(len(head)), head]
    for g in grads:
        parts += [_LEN.pack(len(g)), g]
    return sealed.pack(schema, binding.fields(), recipients, b"".join(parts))


def _he_steps(blob: bytes, key: PrivateKey, expected: UpdateBinding, manifest: Manifest, key_ctx: CkksContext,
              global_params: np.ndarray, max_examples: int | None, epochs: int, schema: str) -> tuple[np.ndarray, int]:
    """Unseal, decrypt every epoch's gradient sums and chain the key holder's steps: (wb after ``epochs``, n)."""
    payload = sealed.unpack(blob, key, schema, expected.fields(), _UPDATE_ORDER)
    try:
        (hlen,) = _LEN.unpack_from(payload)
        meta = json.loads(payload[4:4 + hlen].decode("utf-8"))
        assert isinstance(meta, dict)
    except (struct.error, UnicodeDecodeError, ValueError, AssertionError):
        raise DocumentRejected("malformed", "he update metadata is not a JSON object") from None
    n = meta.get("n_examples")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or (max_examples is not None and n > max_examples):
        raise DocumentRejected("bad_examples", f"n_examples is {n!r}; expected an integer >= 1"
                                               + (f" and <= {max_examples} (the offer's rows)" if max_examples else ""))
    if meta.get("epochs") != epochs:
        raise DocumentRejected("malformed", f"he document covers {meta.get('epochs')!r} local epochs, expected {epochs}")
    spec = manifest.model_spec
    d1 = int(np.prod(spec.feature_shape)) + 1
    wb = to_wb(spec, global_params)
    pos = 4 + hlen
    for e in range(epochs):
        if pos + 4 > len(payload):
            raise DocumentRejected("wrong_shape", f"he update is truncated in epoch {e} of {epochs}")
        (size,) = _LEN.unpack_from(payload, pos)
        chunk = payload[pos + 4:pos + 4 + size]
        pos += 4 + size
        try:
            g = hel.decrypt_gradient(key_ctx, hel.grads_from_bytes(key_ctx, chunk, d1))
        except CryptoError as exc:
            raise DocumentRejected("wrong_shape" if "vectors" in str(exc) else "malformed", f"epoch {e}: {exc}") from None
        wb = wb + key_holder_step(manifest, wb, g, n)
        if not np.all(np.isfinite(wb)) or np.max(np.abs(wb)) > MAX_ABS_WB:
            raise DocumentRejected("non_finite", f"epoch {e}: the model after the decrypted step has max |value| "
                                                 f"{np.max(np.abs(wb)):.3g}")
    if pos != len(payload):
        raise DocumentRejected("malformed", f"{len(payload) - pos} unexpected trailing bytes in the he update")
    return wb, n


def open_he_update(blob: bytes, key: PrivateKey, expected: UpdateBinding, manifest: Manifest, key_ctx: CkksContext,
                   global_params: np.ndarray, *, max_examples: int | None = None) -> OpenedUpdate:
    """Check, unseal and decrypt an he update into the parameter-form update; DocumentRejected if it is not valid."""
    spec = manifest.model_spec
    wb, n = _he_steps(blob, key, expected, manifest, key_ctx, global_params, max_examples, manifest.task.local_epochs,
                      HE_UPDATE_SCHEMA)
    return OpenedUpdate(expected, update_from_step(spec, wb - to_wb(spec, global_params)), n)


def refreshed_wb(blob: bytes, key: PrivateKey, expected: UpdateBinding, manifest: Manifest, key_ctx: CkksContext,
                 global_params: np.ndarray, epoch: int) -> np.ndarray:
    """The key holder's side of a refresh after local epoch ``epoch``: the model (binary form) for epoch + 1."""
    if not 0 <= epoch < manifest.task.local_epochs - 1:
        raise DocumentRejected("malformed", f"no refresh after epoch {epoch} of {manifest.task.local_epochs}")
    return _he_steps(blob, key, expected, manifest, key_ctx, global_params, None, epoch + 1, HE_REFRESH_SCHEMA)[0]
