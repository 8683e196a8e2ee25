"""Logistic regression trained on CKKS-encrypted data with an encrypted model (one epoch per key-holder refresh)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from dainode.crypto.ckks import CkksContext, EncryptedVector, detached
from dainode.errors import CryptoError

# Parameters (see docs/crypto.md). One epoch needs 5 multiplicative levels. Row packing:
# x·w (1), the cubic sigmoid (2: TenSEAL evaluates c3·x³ as x²·(c3·x)), err·(x·lr/n) (2,
# the data side's plaintext scaling runs in parallel). Column packing: replicating each
# weight across the slots (1), w_j·X_j (1), the cubic (2), err·(X_j·lr/n) (1). 33+5·26+50 = 213 ≤ 218 bits, the most N=8192
# allows at 128-bit security. The last (special) prime is what key switching divides by:
# with the often-quoted [31, 26×6, 31] every rotation in a dot product adds a systematic
# bias (~0.01 per rotation, 0.05–0.1 per 30-feature dot product, measured here) because
# the 31-bit first prime is as large as the special prime; a 50-bit special prime cuts it
# to ~2e-4. The TenSEAL tutorial's scale 2^21 ([40, 21×6, 40]) is worse still (~0.2).
TRAINING_POLY_MODULUS_DEGREE = 8192
TRAINING_COEFF_MOD_BIT_SIZES = (33, 26, 26, 26, 26, 26, 50)
TRAINING_SCALE_BITS = 26
# sigmoid(z) ≈ 0.5 + 0.197 z − 0.004 z³: least-squares fit on [−5, 5] (TenSEAL tutorial 1).
SIGMOID_COEFFS = (0.5, 0.197, 0.0, -0.004)
# Outside |z| ≲ 5 the cubic is no sigmoid at all, and values must stay far below the
# 2^(33−26) = 128 range (±64) of the last level; standardised features keep z small.
MAX_ABS_FEATURE = 8.0

# Beyond this the values leave the range CKKS can represent at the last level (±64) within
# a few multiplications, and decryptions turn to noise: refuse rather than continue.
MAX_ABS_WEIGHT = 16.0

_MODEL_MAGIC = b"DELR"
_DATA_MAGIC = b"DELD"
# magic(4) version(1) packing(1) n_samples(u32) n_features(u32), then u32-length-prefixed vectors
_DATA_HEADER = struct.Struct(">4sBBII")
_MODEL_VERSION = 1
_LEN = struct.Struct(">I")


def create_training_context() -> CkksContext:
    """A key holder's context for encrypted training (secret, relinearisation and Galois keys)."""
    return CkksContext.create(
        TRAINING_POLY_MODULUS_DEGREE, TRAINING_COEFF_MOD_BIT_SIZES, TRAINING_SCALE_BITS, galois_keys=True
    )


def sigmoid_poly(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    c0, c1, c2, c3 = SIGMOID_COEFFS
    return c0 + c1 * z + c2 * z**2 + c3 * z**3


# --- data and model ---------------------------------------------------------------------

ROWS = "rows"  # one ciphertext per sample (TenSEAL tutorial / the paper's data sharing)
COLUMNS = "columns"  # one ciphertext per feature across samples: ~20x faster, ~30x smaller
_PACKING_IDS = {ROWS: 1, COLUMNS: 2}


@dataclass
class EncryptedDataset:
    """Encrypted features and labels in one of two packings.

    rows:    `features` = n vectors of length d, `labels` = n vectors of length 1.
    columns: `features` = d vectors of length n (each ⌈n/slots⌉ ciphertexts), `labels` = [one vector of length n].
    """

    packing: str
    features: list[EncryptedVector]
    labels: list[EncryptedVector]
    n_samples: int
    n_features: int

    def __len__(self) -> int:
        return self.n_samples

    def to_bytes(self) -> bytes:
        vectors = [*self.features, *self.labels]
        parts = [
            _DATA_HEADER.pack(_DATA_MAGIC, _MODEL_VERSION, _PACKING_IDS[self.packing], self.n_samples, self.n_features)
        ]
        for v in vectors:
            blob = v.to_bytes()
            parts += [_LEN.pack(len(blob)), blob]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, ctx: CkksContext, data: bytes) -> "EncryptedDataset":
        """Parse a data provider's encrypted dataset (untrusted): every shape is checked."""
        data = memoryview(bytes(data))
        if len(data) < _DATA_HEADER.size or bytes(data[:4]) != _DATA_MAGIC:
            raise CryptoError("not an encrypted dataset (bad magic)")
        _, version, packing_id, n, d = _DATA_HEADER.unpack_from(data)
        if version != _MODEL_VERSION:
            raise CryptoError(f"unsupported encrypted dataset version {version}")
        packing = {v: k for k, v in _PACKING_IDS.items()}.get(packing_id)
        if packing is None:
            raise CryptoError(f"unknown packing id {packing_id} in encrypted dataset")
        if n == 0 or d == 0:
            raise CryptoError("encrypted dataset declares no samples or no features")
        n_feat_vectors, n_label_vectors = (n, n) if packing == ROWS else (d, 1)
        vectors, pos = [], _DATA_HEADER.size
        for _ in range(n_feat_vectors + n_label_vectors):
            if pos + 4 > len(data):
                raise CryptoError(f"encrypted dataset is truncated after {len(vectors)} vectors")
            (size,) = _LEN.unpack_from(data, pos)
            if pos + 4 + size > len(data):
                raise CryptoError(f"encrypted dataset is truncated after {len(vectors)} vectors")
            vectors.append(EncryptedVector.from_bytes(ctx, data[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos != len(data):
            raise CryptoError("unexpected trailing bytes after the encrypted dataset")
        feats, labels = vectors[:n_feat_vectors], vectors[n_feat_vectors:]
        want_feat, want_label = (d, 1) if packing == ROWS else (n, n)
        if any(v.length != want_feat for v in feats) or any(v.length != want_label for v in labels):
            raise CryptoError(f"encrypted dataset vectors do not match its declared shape ({n} samples x {d} features, {packing})")
        return cls(packing, feats, labels, n, d)


def encrypt_dataset(ctx: CkksContext, x: np.ndarray, y: np.ndarray, *, packing: str = COLUMNS) -> EncryptedDataset:
    """Encrypt features (n, d) and 0/1 labels (n,) (the data provider; a public context suffices)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0 or x.shape[1] == 0:
        raise CryptoError(f"features must be (n, d) and labels (n,) with n, d > 0; got {x.shape} and {y.shape}")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise CryptoError("labels must be 0 or 1 for logistic regression")
    if not np.all(np.isfinite(x)) or np.max(np.abs(x)) > MAX_ABS_FEATURE:
        raise CryptoError(
            f"features must be finite and within ±{MAX_ABS_FEATURE} (standardise them first): "
            "the polynomial sigmoid and the CKKS headroom only hold for small values"
        )
    n, d = x.shape
    if packing == ROWS:
        if d > ctx.slot_count:
            raise CryptoError(f"{d} features exceed the {ctx.slot_count} slots of one ciphertext")
        feats = [ctx.encrypt(row) for row in x]
        labels = [ctx.encrypt(label[None]) for label in y]
    elif packing == COLUMNS:
        feats = [ctx.encrypt(x[:, j]) for j in range(d)]
        labels = [ctx.encrypt(y)]
    else:
        raise CryptoError(f"unknown packing {packing!r}; use {ROWS!r} or {COLUMNS!r}")
    return EncryptedDataset(packing, feats, labels, n, d)


@dataclass
class EncryptedLinearModel:
    """Encrypted weights and bias (length-1 vector).

    `weights` is [one vector of length d] for row-packed data, or d vectors of length 1 for
    column-packed data (each weight is broadcast across the samples' slots on its own).
    """

    weights: list[EncryptedVector]
    bias: EncryptedVector

    @property
    def packing(self) -> str:
        return COLUMNS if all(w.length == 1 for w in self.weights) and len(self.weights) > 1 else ROWS

    @property
    def n_features(self) -> int:
        return self.weights[0].length if len(self.weights) == 1 else len(self.weights)

    def to_bytes(self) -> bytes:
        parts = [_MODEL_MAGIC, bytes([_MODEL_VERSION]), _LEN.pack(len(self.weights))]
        for v in (*self.weights, self.bias):
            blob = v.to_bytes()
            parts += [_LEN.pack(len(blob)), blob]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, ctx: CkksContext, data: bytes) -> "EncryptedLinearModel":
        data = memoryview(bytes(data))
        if len(data) < 9 or bytes(data[:4]) != _MODEL_MAGIC:
            raise CryptoError("not an encrypted linear model (bad magic)")
        if data[4] != _MODEL_VERSION:
            raise CryptoError(f"unsupported encrypted model version {data[4]}")
        (count,) = _LEN.unpack_from(data, 5)
        if count == 0 or count > ctx.slot_count:
            raise CryptoError(f"encrypted linear model declares {count} weight vectors")
        pos, vectors = 9, []
        for i in range(count + 1):
            if pos + 4 > len(data):
                raise CryptoError("encrypted linear model is truncated")
            (size,) = _LEN.unpack_from(data, pos)
            if pos + 4 + size > len(data):
                raise CryptoError("encrypted linear model is truncated")
            vectors.append(EncryptedVector.from_bytes(ctx, data[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos != len(data):
            raise CryptoError("unexpected trailing bytes after the encrypted linear model")
        model = cls(vectors[:-1], vectors[-1])
        if model.bias.length != 1 or (count > 1 and any(w.length != 1 for w in model.weights)):
            raise CryptoError("encrypted linear model has inconsistent vector lengths")
        return model


def encrypt_model(ctx: CkksContext, weight: np.ndarray, bias: float, *, packing: str = COLUMNS) -> EncryptedLinearModel:
    """Encrypt weights for training on data of the given packing."""
    weight = np.asarray(weight, dtype=np.float64).reshape(-1)
    if weight.size == 0:
        raise CryptoError("a linear model needs at least one weight")
    b = ctx.encrypt(np.array([float(bias)]))
    if packing == ROWS or weight.size == 1:
        return EncryptedLinearModel([ctx.encrypt(weight)], b)
    if packing == COLUMNS:
        return EncryptedLinearModel([ctx.encrypt(weight[j : j + 1]) for j in range(weight.size)], b)
    raise CryptoError(f"unknown packing {packing!r}; use {ROWS!r} or {COLUMNS!r}")


def decrypt_model(key_ctx: CkksContext, model: EncryptedLinearModel) -> tuple[np.ndarray, float]:
    w = np.concatenate([key_ctx.decrypt(v) for v in model.weights])
    return w, float(key_ctx.decrypt(model.bias)[0])


def refresh_model(key_ctx: CkksContext, model: EncryptedLinearModel) -> EncryptedLinearModel:
    """Protocol step run by the key holder after every epoch: decrypt and re-encrypt at full depth.

    CKKS here has no bootstrapping, so this is what lets training continue. The key holder sees
    the weights (not the data) at each refresh.
    """
    w, b = decrypt_model(key_ctx, model)
    if not (np.all(np.isfinite(w)) and np.isfinite(b)) or max(np.max(np.abs(w), initial=0.0), abs(b)) > MAX_ABS_WEIGHT:
        raise CryptoError(
            f"the encrypted training diverged (max |weight| {np.max(np.abs(w), initial=0.0):.3g}, bias {b:.3g}); "
            "lower the learning rate: the cubic sigmoid only holds for small |x·w|"
        )
    return encrypt_model(key_ctx, w, b, packing=model.packing)


# --- training -----------------------------------------------------------------------------


def _depth_error(exc: Exception) -> CryptoError:
    if "scale out of bounds" in str(exc):
        return CryptoError(
            "the encrypted model has no multiplicative depth left: the key holder must refresh it "
            "(refresh_model) before the next epoch"
        )
    return CryptoError(f"encrypted training step failed: {type(exc).__name__}: {exc}")


def encrypted_epoch(
    model: EncryptedLinearModel, data: EncryptedDataset, *, lr: float = 0.1, l2: float = 0.05
) -> EncryptedLinearModel:
    """One full-batch gradient step on encrypted data, computed without the secret key.

    w ← w·(1 − lr·l2) − lr·mean_i x_i (σ̃(x_i·w + b) − y_i);  b ← b − lr·mean_i (σ̃(·) − y_i)
    where σ̃ is the cubic sigmoid. The model's context must hold relinearisation and Galois keys.
    """
    if len(data) == 0:
        raise CryptoError("cannot train on an empty dataset")
    if model.n_features != data.n_features:
        raise CryptoError(f"model has {model.n_features} weights but the data has {data.n_features} features")
    if data.n_features > 1 and model.packing != data.packing:
        raise CryptoError(f"model is laid out for {model.packing!r} data but the data is {data.packing!r}-packed")
    ctx = model.bias.context
    if not ctx.tenseal.has_galois_keys() or not ctx.tenseal.has_relin_keys():
        raise CryptoError("encrypted training needs a context with Galois and relinearisation keys (public_with_eval_keys)")
    for v in (data.features[0], data.labels[0], *model.weights):
        if not ctx.same_keys(v.context):
            raise CryptoError("data and model are encrypted under different CKKS key pairs")
    step = lr / len(data)
    try:
        if data.packing == ROWS:
            new_w, new_b = _epoch_rows(model, data, step, 1.0 - lr * l2)
        else:
            new_w, new_b = _epoch_columns(model, data, step, 1.0 - lr * l2)
    except ValueError as exc:
        raise _depth_error(exc) from None
    except Exception as exc:
        raise CryptoError(f"encrypted training step failed: {type(exc).__name__}: {exc}") from None
    weights = [EncryptedVector(ctx, [c], v.length) for c, v in zip(new_w, model.weights)]
    return EncryptedLinearModel(weights, EncryptedVector(ctx, [new_b], 1))


# In both variants the model's ciphertext is the left operand: the result uses the left
# operand's context, and only the model's has the Galois/relinearisation keys (data may have
# been encrypted with a bare public context). Operands are `detached`: TenSEAL would
# otherwise mod-switch them in place to the other operand's lower level, silently eating the
# data's and the caller's model's depth
# (test_training_leaves_data_and_model_ciphertexts_untouched).


def _epoch_rows(model: EncryptedLinearModel, data: EncryptedDataset, step: float, decay: float):
    w, b = model.weights[0].chunks[0], model.bias.chunks[0]
    coeffs = list(SIGMOID_COEFFS)
    dw = db = None
    for row, label in zip(data.features, data.labels):
        x, y = row.chunks[0], label.chunks[0]
        err = (w.dot(detached(x)) + detached(b)).polyval(coeffs) - detached(y)
        # lr/n is applied to x (fresh) rather than to the sum, which would cost a sixth level
        g = err * (x * step)
        err_scaled = err * step
        if dw is None:
            dw, db = g, err_scaled
        else:
            dw.add_(g)
            db.add_(err_scaled)
    return [w * decay - dw], b - db


def _epoch_columns(model: EncryptedLinearModel, data: EncryptedDataset, step: float, decay: float):
    coeffs = list(SIGMOID_COEFFS)
    grads = [None] * data.n_features
    grad_b = None
    # one pass per block of `slot_count` samples (the chunks of the column vectors)
    for blk in range(len(data.labels[0].chunks)):
        # TenSEAL broadcasts a length-1 operand (the weight, the bias) to the column's length
        # with a mask and rotations: one level, and no plaintext ever leaves the ciphertext.
        z = None
        for wv, col in zip(model.weights, data.features):
            term = detached(wv.chunks[0]) * detached(col.chunks[blk])
            if z is None:
                z = term
            else:
                z.add_(term)
        err = (detached(model.bias.chunks[0]) + z).polyval(coeffs) - detached(data.labels[0].chunks[blk])
        for j, col in enumerate(data.features):
            g = (err * (col.chunks[blk] * step)).sum()
            if grads[j] is None:
                grads[j] = g
            else:
                grads[j].add_(g)
        gb = (err * step).sum()
        if grad_b is None:
            grad_b = gb
        else:
            grad_b.add_(gb)
    new_w = [wv.chunks[0] * decay - g for wv, g in zip(model.weights, grads)]
    return new_w, model.bias.chunks[0] - grad_b


def plaintext_epoch(
    weight: np.ndarray, bias: float, x: np.ndarray, y: np.ndarray, *, lr: float = 0.1, l2: float = 0.05
) -> tuple[np.ndarray, float]:
    """The same step in float64 (same cubic sigmoid): the reference the encrypted run is compared with."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    err = sigmoid_poly(x @ weight + bias) - y
    n = x.shape[0]
    return weight * (1.0 - lr * l2) - lr * (x.T @ err) / n, bias - lr * float(err.sum()) / n


def train_encrypted(
    key_ctx: CkksContext,
    trainer_ctx: CkksContext,
    data: EncryptedDataset,
    weight: np.ndarray,
    bias: float,
    *,
    epochs: int,
    lr: float = 0.1,
    l2: float = 0.05,
) -> EncryptedLinearModel:
    """The whole protocol in one process: trainer epoch, key-holder refresh, repeated `epochs` times.

    `trainer_ctx` (public + evaluation keys) computes; `key_ctx` (secret) only refreshes. In the
    node these run on different peers and the model travels as EncryptedLinearModel.to_bytes().
    """
    model = encrypt_model(trainer_ctx, weight, bias, packing=data.packing)
    for _ in range(epochs):
        model = encrypted_epoch(model, data, lr=lr, l2=l2)
        model = EncryptedLinearModel.from_bytes(trainer_ctx, refresh_model(key_ctx, model).to_bytes())
    return model
