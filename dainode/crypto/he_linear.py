"""Rotation-free CKKS gradients of binary linear models (logistic, least squares): the he task mode's crypto, relinearisation key only.

Layout (no Galois keys at all): the data provider encrypts each feature column (and a column of
ones for the bias, and the labels) as one vector over the samples, zero-padded to whole
ciphertexts; the model provider encrypts each weight replicated over every slot. One epoch is
slot-wise only: z = Σ_j W_j ⊙ X_j, err = σ̃(z) − Y (or z − Y), E_j = err ⊙ X_j. Summing E_j over
the samples would need rotations; instead the computation provider adds an encryption of a
random vector R_j whose slots sum to zero (|R| ≤ MASK_BOUND) and the key holder sums the
decrypted slots: Σ(E_j + R_j) = Σ E_j, while each slot it sees is a per-sample value hidden
under a mask 2^20 times larger (statistical hiding; see docs/tasks.md).

Depth: W⊙X (1), the cubic (2), err⊙X (1) = 4 rescales: moduli (50, 26×4, 60), 188 bits ≤ 218
(N=8192, 128-bit security). The 50-bit last level leaves 2^23 of headroom for the masks.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np

from dainode.crypto.ckks import _CTX_MAGIC, _FORMAT_VERSION, CkksContext, EncryptedVector, detached
from dainode.errors import CryptoError

HE_POLY_MODULUS_DEGREE = 8192
HE_COEFF_MOD_BIT_SIZES = (50, 26, 26, 26, 26, 60)
HE_SCALE_BITS = 26
KINDS = ("logistic", "linear")
# sigmoid(z) ≈ 0.5 + 0.197 z − 0.004 z³ (least squares on [−5, 5], as dainode.crypto.encrypted_lr)
SIGMOID_COEFFS = (0.5, 0.197, 0.0, -0.004)
MAX_ABS_FEATURE = 8.0
MAX_ABS_LABEL = 64.0
MASK_BOUND = float(2**20)
MAX_VECTORS = 4096

_DATA = struct.Struct(">4sBIII")  # magic, version, n_samples, n_features, n_chunks
_VECS = struct.Struct(">4sBI")  # magic, version, count
_LEN = struct.Struct(">I")
_DATA_MAGIC, _MODEL_MAGIC, _GRAD_MAGIC = b"DEHD", b"DEHM", b"DEHG"
_VERSION = 1


def create_he_context() -> CkksContext:
    """The key holder's context (secret, public and relinearisation keys; no Galois keys)."""
    return CkksContext.create(HE_POLY_MODULUS_DEGREE, HE_COEFF_MOD_BIT_SIZES, HE_SCALE_BITS, galois_keys=False)


def eval_context_bytes(ctx: CkksContext) -> bytes:
    """What the data and computation providers get: public key + relinearisation key, no secret (~3 MB)."""
    if not ctx.tenseal.has_relin_keys():
        raise CryptoError("the key holder's CKKS context has no relinearisation key to publish")
    ctx = ctx.public_with_eval_keys()
    if ctx.tenseal.has_galois_keys():
        raise CryptoError("the he context must not carry Galois keys (the layout needs no rotation)")
    return ctx.to_bytes()


def secret_context_bytes(ctx: CkksContext) -> bytes:
    """The key holder's secret form without evaluation keys (~0.8 MB): stored sealed, revealed after the task."""
    if not ctx.has_secret_key:
        raise CryptoError("this CKKS context has no secret key to export")
    return _CTX_MAGIC + bytes([_FORMAT_VERSION]) + ctx.tenseal.serialize(
        save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=False)


def check_he_context(ctx: CkksContext) -> CkksContext:
    """Refuse a context from a peer whose ring is not the he mode's (a tiny ring would be insecure or useless)."""
    seal_ctx = ctx.tenseal.data.seal_context()
    key, first = seal_ctx.key_context_data(), seal_ctx.first_context_data()
    got = (ctx.poly_modulus_degree, int(key.total_coeff_modulus_bit_count()), int(first.chain_index()))
    want = (HE_POLY_MODULUS_DEGREE, sum(HE_COEFF_MOD_BIT_SIZES), len(HE_COEFF_MOD_BIT_SIZES) - 2)
    if got != want:
        raise CryptoError(f"the task's CKKS context has N={got[0]}, {got[1]} modulus bits and {got[2]} levels; the he "
                          f"mode uses N={want[0]}, {want[1]} bits, {want[2]} levels ({HE_COEFF_MOD_BIT_SIZES})")
    return ctx


# --- containers ---------------------------------------------------------------------------------


def _pack_vectors(magic: bytes, vectors: list[EncryptedVector], head: bytes | None = None) -> bytes:
    parts = [head if head is not None else _VECS.pack(magic, _VERSION, len(vectors))]
    for v in vectors:
        blob = v.to_bytes()
        parts += [_LEN.pack(len(blob)), blob]
    return b"".join(parts)


def _read_vectors(ctx: CkksContext, data: memoryview, pos: int, count: int, length: int, what: str) -> list[EncryptedVector]:
    out = []
    for i in range(count):
        if pos + 4 > len(data):
            raise CryptoError(f"{what} is truncated after {i} of {count} vectors")
        (size,) = _LEN.unpack_from(data, pos)
        if pos + 4 + size > len(data):
            raise CryptoError(f"{what} is truncated in vector {i} of {count}")
        v = EncryptedVector.from_bytes(ctx, data[pos + 4: pos + 4 + size])
        if v.length != length:
            raise CryptoError(f"{what}: vector {i} holds {v.length} values, expected {length}")
        out.append(v)
        pos += 4 + size
    if pos != len(data):
        raise CryptoError(f"{what}: {len(data) - pos} unexpected trailing bytes")
    return out


def _vectors_from_bytes(ctx: CkksContext, data: bytes, magic: bytes, count: int, what: str) -> list[EncryptedVector]:
    data = memoryview(bytes(data))
    if len(data) < _VECS.size:
        raise CryptoError(f"{what} is truncated")
    got_magic, version, n = _VECS.unpack_from(data)
    if got_magic != magic or version != _VERSION:
        raise CryptoError(f"not an {what} (magic {bytes(got_magic)!r}, version {version})")
    if n != count:
        raise CryptoError(f"{what} has {n} vectors, the task's model needs {count}")
    return _read_vectors(ctx, data, _VECS.size, n, ctx.slot_count, what)


class HeData:
    """A data provider's encrypted columns: features (n_features + 1 with the ones column last) and labels."""

    def __init__(self, columns: list[EncryptedVector], labels: EncryptedVector, n_samples: int):
        self.columns, self.labels, self.n_samples = columns, labels, int(n_samples)

    @property
    def n_features(self) -> int:
        return len(self.columns) - 1

    @property
    def n_chunks(self) -> int:
        return len(self.labels.chunks)

    def to_bytes(self) -> bytes:
        head = _DATA.pack(_DATA_MAGIC, _VERSION, self.n_samples, self.n_features, self.n_chunks)
        return _pack_vectors(_DATA_MAGIC, [*self.columns, self.labels], head)

    @classmethod
    def from_bytes(cls, ctx: CkksContext, data: bytes) -> "HeData":
        """Parse a data provider's encrypted data (untrusted): every shape is checked."""
        data = memoryview(bytes(data))
        if len(data) < _DATA.size:
            raise CryptoError("encrypted training data is truncated")
        magic, version, n, d, chunks = _DATA.unpack_from(data)
        if magic != _DATA_MAGIC or version != _VERSION:
            raise CryptoError("not he training data (bad magic or version)")
        if n == 0 or d == 0 or d + 1 > MAX_VECTORS or chunks != math.ceil(n / ctx.slot_count):
            raise CryptoError(f"he training data declares {n} samples, {d} features in {chunks} ciphertexts per column")
        vecs = _read_vectors(ctx, data, _DATA.size, d + 2, chunks * ctx.slot_count, "he training data")
        return cls(vecs[:-1], vecs[-1], n)


def _padded(col: np.ndarray, total: int) -> np.ndarray:
    out = np.zeros(total, np.float64)
    out[: col.size] = col
    return out


def encrypt_data(ctx: CkksContext, x: np.ndarray, y: np.ndarray, kind: str) -> HeData:
    """Encrypt normalised features (n, d) and labels (n,) column by column; a public context suffices."""
    x = np.asarray(x, np.float64).reshape(len(x), -1) if np.ndim(x) >= 1 and len(x) else np.zeros((0, 0))
    y = np.asarray(y, np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or x.shape[0] != y.shape[0]:
        raise CryptoError(f"features must be (n, d) and labels (n,) with n, d > 0; got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)) or np.max(np.abs(x)) > MAX_ABS_FEATURE:
        raise CryptoError(f"features must be finite and within ±{MAX_ABS_FEATURE:g} (max |x| is "
                          f"{np.max(np.abs(x)):.3g}): standardise them before offering data to he tasks; the "
                          "cubic sigmoid and the CKKS headroom only hold for small values")
    if kind == "logistic" and not np.all(np.isin(y, (0.0, 1.0))):
        raise CryptoError("labels must be 0 or 1 for binary logistic regression")
    if kind not in KINDS:
        raise CryptoError(f"unknown he model kind {kind!r}; use one of {', '.join(KINDS)}")
    if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > MAX_ABS_LABEL:
        raise CryptoError(f"labels must be finite and within ±{MAX_ABS_LABEL:g}")
    n, d = x.shape
    total = math.ceil(n / ctx.slot_count) * ctx.slot_count
    cols = [ctx.encrypt(_padded(x[:, j], total)) for j in range(d)] + [ctx.encrypt(_padded(np.ones(n), total))]
    return HeData(cols, ctx.encrypt(_padded(y, total)), n)


# --- model and gradients ---------------------------------------------------------------------------


def encrypt_model(ctx: CkksContext, wb: np.ndarray) -> list[EncryptedVector]:
    """Weights then bias (d + 1 values), each replicated over every slot (the layout needs no broadcast)."""
    wb = np.asarray(wb, np.float64).reshape(-1)
    if wb.size == 0 or not np.all(np.isfinite(wb)):
        raise CryptoError("a linear model needs finite weights")
    return [ctx.encrypt(np.full(ctx.slot_count, float(v))) for v in wb]


def model_to_bytes(model: list[EncryptedVector]) -> bytes:
    return _pack_vectors(_MODEL_MAGIC, model)


def model_from_bytes(ctx: CkksContext, data: bytes, n_params: int) -> list[EncryptedVector]:
    return _vectors_from_bytes(ctx, data, _MODEL_MAGIC, n_params, "encrypted he model")


def grads_to_bytes(grads: list[EncryptedVector]) -> bytes:
    return _pack_vectors(_GRAD_MAGIC, grads)


def grads_from_bytes(ctx: CkksContext, data: bytes, n_params: int) -> list[EncryptedVector]:
    return _vectors_from_bytes(ctx, data, _GRAD_MAGIC, n_params, "encrypted he gradient")


def _sigmoid(z):
    c0, c1, _, c3 = SIGMOID_COEFFS
    z2 = z * detached(z)
    cubic = z2 * (detached(z) * c3)
    return cubic + (detached(z) * c1) + c0


def masked_gradient(model: list[EncryptedVector], data: HeData, kind: str, *, seed: bytes | None = None) -> list[EncryptedVector]:
    """One epoch's per-slot gradient terms E_j = err ⊙ X_j summed over the data's ciphertexts, each plus a zero-sum mask.

    Runs without the secret key; `model` must be under a context with the relinearisation key.
    """
    if kind not in KINDS:
        raise CryptoError(f"unknown he model kind {kind!r}; use one of {', '.join(KINDS)}")
    if len(model) != len(data.columns):
        raise CryptoError(f"the model has {len(model)} parameters, the data {len(data.columns)} columns (with the bias)")
    ctx = model[0].context
    if not ctx.tenseal.has_relin_keys():
        raise CryptoError("he training needs the task's evaluation context (with the relinearisation key)")
    for v in (data.labels, data.columns[0]):
        if not ctx.same_keys(v.context):
            raise CryptoError("the data and the model are encrypted under different CKKS key pairs")
    acc = [None] * len(model)
    try:
        for blk in range(data.n_chunks):
            z = None
            for w, col in zip(model, data.columns):
                term = detached(w.chunks[0]) * detached(col.chunks[blk])
                z = term if z is None else z + term
            err = (_sigmoid(z) if kind == "logistic" else z) - detached(data.labels.chunks[blk])
            for j, col in enumerate(data.columns):
                e = err * detached(col.chunks[blk])
                acc[j] = e if acc[j] is None else acc[j] + e
    except ValueError as exc:
        raise CryptoError(f"he training step failed (out of depth or scale: {exc})") from None
    rng = np.random.default_rng(np.frombuffer(seed if seed is not None else os.urandom(32), np.uint8))
    out = []
    for a in acc:
        r = rng.uniform(-MASK_BOUND, MASK_BOUND, ctx.slot_count)
        r -= r.mean()
        mask = ctx.encrypt(r)
        out.append(EncryptedVector(ctx, [a + mask.chunks[0]], ctx.slot_count))
    return out


def decrypt_gradient(key_ctx: CkksContext, grads: list[EncryptedVector]) -> np.ndarray:
    """The key holder's Σ over the slots of each masked term: the gradient sums Σ_i err_i x_ij (float64, deterministic)."""
    out = np.array([math.fsum(key_ctx.decrypt(g).tolist()) for g in grads], np.float64)
    if not np.all(np.isfinite(out)):
        raise CryptoError("the decrypted he gradient is not finite")
    return out
