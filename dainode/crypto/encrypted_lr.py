"""Logistic regression trained on CKKS-encrypted data with an encrypted model (one epoch per key-holder refresh)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from dainode.crypto.ckks import CkksContext, EncryptedVector, detached
from dainode.errors import CryptoError

# Parameters (see docs/crypto.md). One epoch needs 5 multiplicative levels: x·w (1), the
# cubic sigmoid (2: TenSEAL evaluates c3·x³ as x²·(c3·x)), and err·(x·lr/n) (2, the data
# side's plaintext scaling runs in parallel). 33+5·26+50 = 213 ≤ 218 bits, the most N=8192
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


@dataclass
class EncryptedDataset:
    """One ciphertext per sample (its features) and one per label, as in the paper's data sharing."""

    rows: list[EncryptedVector]
    labels: list[EncryptedVector]
    n_features: int

    def __len__(self) -> int:
        return len(self.rows)


def encrypt_dataset(ctx: CkksContext, x: np.ndarray, y: np.ndarray) -> EncryptedDataset:
    """Encrypt features (n, d) and 0/1 labels (n,) sample by sample (a public context suffices)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise CryptoError(f"features must be (n, d) and labels (n,) with n > 0; got {x.shape} and {y.shape}")
    if x.shape[1] > ctx.slot_count:
        raise CryptoError(f"{x.shape[1]} features exceed the {ctx.slot_count} slots of one ciphertext")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise CryptoError("labels must be 0 or 1 for logistic regression")
    if not np.all(np.isfinite(x)) or np.max(np.abs(x)) > MAX_ABS_FEATURE:
        raise CryptoError(
            f"features must be finite and within ±{MAX_ABS_FEATURE} (standardise them first): "
            "the polynomial sigmoid and the CKKS headroom only hold for small values"
        )
    return EncryptedDataset(
        rows=[ctx.encrypt(row) for row in x], labels=[ctx.encrypt(label[None]) for label in y], n_features=x.shape[1]
    )


@dataclass
class EncryptedLinearModel:
    """Encrypted weight vector (d) and bias (1)."""

    weight: EncryptedVector
    bias: EncryptedVector

    def to_bytes(self) -> bytes:
        w, b = self.weight.to_bytes(), self.bias.to_bytes()
        return _MODEL_MAGIC + bytes([_MODEL_VERSION]) + _LEN.pack(len(w)) + w + b

    @classmethod
    def from_bytes(cls, ctx: CkksContext, data: bytes) -> "EncryptedLinearModel":
        data = bytes(data)
        if len(data) < 9 or data[:4] != _MODEL_MAGIC:
            raise CryptoError("not an encrypted linear model (bad magic)")
        if data[4] != _MODEL_VERSION:
            raise CryptoError(f"unsupported encrypted model version {data[4]}")
        (wlen,) = _LEN.unpack_from(data, 5)
        if 9 + wlen > len(data):
            raise CryptoError("encrypted linear model is truncated")
        model = cls(EncryptedVector.from_bytes(ctx, data[9 : 9 + wlen]), EncryptedVector.from_bytes(ctx, data[9 + wlen :]))
        if model.bias.length != 1:
            raise CryptoError(f"encrypted bias must hold 1 value, holds {model.bias.length}")
        return model


def encrypt_model(ctx: CkksContext, weight: np.ndarray, bias: float) -> EncryptedLinearModel:
    weight = np.asarray(weight, dtype=np.float64).reshape(-1)
    return EncryptedLinearModel(ctx.encrypt(weight), ctx.encrypt(np.array([float(bias)])))


def decrypt_model(key_ctx: CkksContext, model: EncryptedLinearModel) -> tuple[np.ndarray, float]:
    return key_ctx.decrypt(model.weight), float(key_ctx.decrypt(model.bias)[0])


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
    return encrypt_model(key_ctx, w, b)


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
    where σ̃ is the cubic sigmoid. The context must hold relinearisation and Galois keys.
    """
    if len(data) == 0:
        raise CryptoError("cannot train on an empty dataset")
    if model.weight.length != data.n_features:
        raise CryptoError(f"model has {model.weight.length} weights but the data has {data.n_features} features")
    ctx = model.weight.context
    if not ctx.tenseal.has_galois_keys() or not ctx.tenseal.has_relin_keys():
        raise CryptoError("encrypted training needs a context with Galois and relinearisation keys (public_with_eval_keys)")
    for v in (*data.rows[:1], *data.labels[:1], model.bias):
        if not ctx.same_keys(v.context):
            raise CryptoError("data and model are encrypted under different CKKS key pairs")
    w, b = model.weight.chunks[0], model.bias.chunks[0]
    coeffs = list(SIGMOID_COEFFS)
    step = lr / len(data)
    dw = db = None
    try:
        for row, label in zip(data.rows, data.labels):
            x, y = row.chunks[0], label.chunks[0]
            # The model's ciphertext is always the left operand: the result uses the left
            # operand's context, and only the model's has the Galois/relinearisation keys
            # (data may have been encrypted with a bare public context). Data operands are
            # detached: TenSEAL would otherwise mod-switch them in place to the lower level of
            # the left operand, leaving too little depth for the next epoch.
            err = (w.dot(detached(x)) + detached(b)).polyval(coeffs) - detached(y)
            # lr/n is applied to x (fresh, level 0 -> 1) rather than to the sum, which would
            # cost a sixth level after err·x.
            g = err * (x * step)
            err_scaled = err * step
            if dw is None:
                dw, db = g, err_scaled
            else:
                dw.add_(g)
                db.add_(err_scaled)
        new_w = w * (1.0 - lr * l2) - dw
        new_b = b - db
    except ValueError as exc:
        raise _depth_error(exc) from None
    except Exception as exc:
        raise CryptoError(f"encrypted training step failed: {type(exc).__name__}: {exc}") from None
    return EncryptedLinearModel(
        EncryptedVector(ctx, [new_w], model.weight.length), EncryptedVector(model.bias.context, [new_b], 1)
    )


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
    model = encrypt_model(trainer_ctx, weight, bias)
    for _ in range(epochs):
        model = encrypted_epoch(model, data, lr=lr, l2=l2)
        model = EncryptedLinearModel.from_bytes(trainer_ctx, refresh_model(key_ctx, model).to_bytes())
    return model
