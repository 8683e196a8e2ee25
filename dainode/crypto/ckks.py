"""CKKS homomorphic encryption (TenSEAL) for model/update vectors: contexts, chunked vectors, linear aggregation."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Sequence

import numpy as np
import tenseal as ts

from dainode.errors import CryptoError

# Default parameters (see docs/crypto.md): N=8192 gives 4096 slots and 128-bit security for a
# total coefficient modulus up to 218 bits; (60, 40, 40, 60) = 200 bits leaves two
# multiplicative levels at scale 2^40 (one for the aggregation weights, one spare) and a
# precision of ~1e-8 on values of order 1.
DEFAULT_POLY_MODULUS_DEGREE = 8192
DEFAULT_COEFF_MOD_BIT_SIZES = (60, 40, 40, 60)
DEFAULT_SCALE_BITS = 40

_CTX_MAGIC = b"DCKC"
_VEC_MAGIC = b"DCKV"
_FORMAT_VERSION = 1
_FINGERPRINT_LEN = 16
# magic(4) version(1) fingerprint(16) length(u64) slot_count(u32) n_chunks(u32)
_VEC_HEADER = struct.Struct(">4sB16sQII")
_CHUNK_LEN = struct.Struct(">I")
# A serialised N=8192 ciphertext at full level is ~180 KB compressed; N=32768 about 4x that.
_MAX_CHUNK_BYTES = 64 * 1024 * 1024


def _tenseal_error(what: str, exc: BaseException) -> CryptoError:
    return CryptoError(f"{what}: {type(exc).__name__}: {exc}")


def detached(c):
    """A new ciphertext equal to `c` (TenSEAL CKKSVector), for use as the right operand.

    TenSEAL's binary operations mod-switch the *right* operand in place when it sits at a
    higher level than the left one, silently using up its depth (a fresh vector added to a
    scaled one can no longer be scaled twice). `c + 0.0` copies just the ciphertext (~0.1 ms);
    CKKSVector.copy() would deep-copy the whole context with its keys (0.2-2 s).
    """
    return c + 0.0


class CkksContext:
    """A TenSEAL CKKS context; with the secret key it can decrypt, the public form only encrypt and compute."""

    def __init__(self, ts_context: ts.Context):
        self._ctx = ts_context
        seal_ctx = ts_context.data.seal_context()
        # SEAL refuses parameters above the HE-standard bound for 128-bit security, but on
        # load it only records that; check, so a peer cannot hand us a weak context.
        if not seal_ctx.parameters_set():
            raise CryptoError(f"CKKS context parameters are invalid or insecure: {seal_ctx.parameters_error_message()}")
        parms = seal_ctx.key_context_data().parms()
        if getattr(parms.scheme(), "name", str(parms.scheme())).rsplit(".", 1)[-1] != "CKKS":
            raise CryptoError(f"the TenSEAL context uses scheme {parms.scheme()}, not CKKS")
        self._poly_modulus_degree = int(parms.poly_modulus_degree())
        self._fingerprint: bytes | None = None

    # --- construction and serialisation ------------------------------------------

    @classmethod
    def create(
        cls,
        poly_modulus_degree: int = DEFAULT_POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes: Sequence[int] = DEFAULT_COEFF_MOD_BIT_SIZES,
        scale_bits: int = DEFAULT_SCALE_BITS,
        *,
        galois_keys: bool = False,
    ) -> "CkksContext":
        """A fresh key pair (the returned context holds the secret key).

        Galois keys (rotations, ~30 MB) are only generated when asked for: aggregation needs
        additions and plaintext-scalar products only.
        """
        try:
            ctx = ts.context(
                ts.SCHEME_TYPE.CKKS,
                poly_modulus_degree=int(poly_modulus_degree),
                coeff_mod_bit_sizes=[int(b) for b in coeff_mod_bit_sizes],
            )
            ctx.global_scale = float(2 ** int(scale_bits))
            if galois_keys:
                ctx.generate_galois_keys()
        except (ValueError, RuntimeError, TypeError) as exc:
            raise CryptoError(
                f"invalid CKKS parameters (N={poly_modulus_degree}, moduli={tuple(coeff_mod_bit_sizes)}): {exc}"
            ) from None
        return cls(ctx)

    @classmethod
    def from_bytes(cls, data: bytes) -> "CkksContext":
        """Parse `to_bytes` output (possibly from an untrusted peer)."""
        data = bytes(data)
        if len(data) < 5 or data[:4] != _CTX_MAGIC:
            raise CryptoError("not a dainode CKKS context (bad magic); expected bytes from CkksContext.to_bytes()")
        if data[4] != _FORMAT_VERSION:
            raise CryptoError(f"unsupported CKKS context format version {data[4]} (this node reads {_FORMAT_VERSION})")
        try:
            ctx = ts.context_from(data[5:])
        except Exception as exc:  # TenSEAL raises ValueError/RuntimeError from C++
            raise _tenseal_error("malformed CKKS context", exc) from None
        return cls(ctx)

    def to_bytes(self) -> bytes:
        """Everything this context holds (including the secret key if it has one)."""
        return _CTX_MAGIC + bytes([_FORMAT_VERSION]) + self._ctx.serialize(
            save_public_key=True,
            save_secret_key=self.has_secret_key,
            save_galois_keys=self._ctx.has_galois_keys(),
            save_relin_keys=self._ctx.has_relin_keys(),
        )

    def public(self) -> "CkksContext":
        """The shareable form: public key only (no secret, Galois or relinearisation keys), ~0.5 MB for N=8192."""
        return CkksContext(ts.context_from(self._public_tenseal_bytes()))

    def public_with_eval_keys(self) -> "CkksContext":
        """Public key plus relinearisation and Galois keys: what a party computing ciphertext*ciphertext needs."""
        return CkksContext(
            ts.context_from(
                self._ctx.serialize(
                    save_public_key=True,
                    save_secret_key=False,
                    save_galois_keys=self._ctx.has_galois_keys(),
                    save_relin_keys=self._ctx.has_relin_keys(),
                )
            )
        )

    def _public_tenseal_bytes(self) -> bytes:
        return self._ctx.serialize(
            save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
        )

    # --- properties ---------------------------------------------------------------

    @property
    def has_secret_key(self) -> bool:
        return bool(self._ctx.has_secret_key())

    @property
    def slot_count(self) -> int:
        return self._poly_modulus_degree // 2

    @property
    def poly_modulus_degree(self) -> int:
        return self._poly_modulus_degree

    @property
    def fingerprint(self) -> bytes:
        """16 bytes identifying the key pair (sha256 of the public form); equal for a context and its public()."""
        if self._fingerprint is None:
            self._fingerprint = hashlib.sha256(self._public_tenseal_bytes()).digest()[:_FINGERPRINT_LEN]
        return self._fingerprint

    @property
    def tenseal(self) -> ts.Context:
        """The wrapped TenSEAL context (for code in dainode.crypto that needs raw TenSEAL calls)."""
        return self._ctx

    def same_keys(self, other: "CkksContext") -> bool:
        return self is other or self.fingerprint == other.fingerprint

    # --- encryption ---------------------------------------------------------------

    def encrypt(self, vec: np.ndarray) -> "EncryptedVector":
        """Encrypt a 1-D vector of any length, split into ciphertexts of `slot_count` values."""
        arr = np.asarray(vec, dtype=np.float64)
        if arr.ndim != 1:
            raise CryptoError(f"can only encrypt a 1-D vector, got shape {arr.shape}; flatten it first")
        if not np.all(np.isfinite(arr)):
            raise CryptoError("cannot encrypt NaN or infinite values")
        n = self.slot_count
        try:
            chunks = [ts._ts_cpp.CKKSVector(self._ctx.data, arr[i : i + n].tolist()) for i in range(0, arr.size, n)]
        except Exception as exc:
            raise _tenseal_error("CKKS encryption failed", exc) from None
        return EncryptedVector(self, chunks, int(arr.size))

    def decrypt(self, ev: "EncryptedVector") -> np.ndarray:
        """The float64 plaintext of `ev` (original length); CryptoError without the secret key."""
        if not self.has_secret_key:
            raise CryptoError("this CKKS context has no secret key (it is a public context); only the key holder can decrypt")
        if not isinstance(ev, EncryptedVector):
            raise CryptoError(f"expected an EncryptedVector, got {type(ev).__name__}")
        if not self.same_keys(ev.context):
            raise CryptoError("the vector was encrypted under a different CKKS key pair; it cannot be decrypted with this key")
        sk = self._ctx.data.secret_key()
        try:
            parts = [np.asarray(c.decrypt(sk), dtype=np.float64) for c in ev.chunks]
        except Exception as exc:
            raise _tenseal_error("CKKS decryption failed", exc) from None
        out = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
        if out.size != ev.length:
            raise CryptoError(f"decrypted {out.size} values but the vector declares {ev.length}")
        return out


class EncryptedVector:
    """A CKKS-encrypted float vector of `length` values, as ceil(length / slot_count) ciphertexts."""

    __slots__ = ("_ctx", "_chunks", "length")

    def __init__(self, ctx: CkksContext, chunks: list, length: int):
        self._ctx = ctx
        self._chunks = chunks
        self.length = length

    @property
    def context(self) -> CkksContext:
        return self._ctx

    @property
    def chunks(self) -> list:
        """The raw TenSEAL CKKSVector objects (internal)."""
        return self._chunks

    # --- serialisation ------------------------------------------------------------

    def to_bytes(self) -> bytes:
        parts = [
            _VEC_HEADER.pack(
                _VEC_MAGIC, _FORMAT_VERSION, self._ctx.fingerprint, self.length, self._ctx.slot_count, len(self._chunks)
            )
        ]
        for c in self._chunks:
            blob = c.serialize()
            parts.append(_CHUNK_LEN.pack(len(blob)))
            parts.append(blob)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, ctx: CkksContext, data: bytes) -> "EncryptedVector":
        """Parse untrusted bytes, linking the ciphertexts to `ctx` (which must be of the same key pair)."""
        data = memoryview(bytes(data))
        if len(data) < _VEC_HEADER.size:
            raise CryptoError(f"encrypted vector is truncated ({len(data)} bytes, header needs {_VEC_HEADER.size})")
        magic, version, fp, length, slots, n_chunks = _VEC_HEADER.unpack_from(data)
        if magic != _VEC_MAGIC:
            raise CryptoError("not a dainode encrypted vector (bad magic)")
        if version != _FORMAT_VERSION:
            raise CryptoError(f"unsupported encrypted vector format version {version} (this node reads {_FORMAT_VERSION})")
        if fp != ctx.fingerprint:
            raise CryptoError(
                "encrypted vector was made under a different CKKS key pair than the given context "
                f"(vector key {fp.hex()}, context key {ctx.fingerprint.hex()})"
            )
        if slots != ctx.slot_count:
            raise CryptoError(f"encrypted vector uses {slots} slots per ciphertext, the context has {ctx.slot_count}")
        expected_chunks = math.ceil(length / slots)
        if n_chunks != expected_chunks:
            raise CryptoError(f"encrypted vector of length {length} must have {expected_chunks} ciphertexts, header says {n_chunks}")
        pos = _VEC_HEADER.size
        chunks = []
        for i in range(n_chunks):
            if pos + _CHUNK_LEN.size > len(data):
                raise CryptoError(f"encrypted vector is truncated in ciphertext {i} of {n_chunks}")
            (size,) = _CHUNK_LEN.unpack_from(data, pos)
            pos += _CHUNK_LEN.size
            if size == 0 or size > _MAX_CHUNK_BYTES or pos + size > len(data):
                raise CryptoError(f"encrypted vector ciphertext {i} has an invalid size {size} (truncated or corrupt)")
            try:
                c = ts._ts_cpp.CKKSVector(ctx.tenseal.data, bytes(data[pos : pos + size]))
            except Exception as exc:
                raise _tenseal_error(f"malformed ciphertext {i} in encrypted vector", exc) from None
            want = slots if i < n_chunks - 1 else length - slots * (n_chunks - 1)
            if c.size() != want:
                raise CryptoError(f"ciphertext {i} holds {c.size()} values, expected {want}")
            pos += size
            chunks.append(c)
        if pos != len(data):
            raise CryptoError(f"{len(data) - pos} unexpected trailing bytes after the encrypted vector")
        return cls(ctx, chunks, int(length))

    # --- homomorphic operations ---------------------------------------------------

    def _check_compatible(self, other: "EncryptedVector") -> None:
        if not isinstance(other, EncryptedVector):
            raise CryptoError(f"can only add EncryptedVector to EncryptedVector, not {type(other).__name__}")
        if other.length != self.length:
            raise CryptoError(f"cannot add encrypted vectors of lengths {self.length} and {other.length}")
        if not self._ctx.same_keys(other._ctx):
            raise CryptoError("cannot add vectors encrypted under different CKKS key pairs")

    def __add__(self, other: "EncryptedVector") -> "EncryptedVector":
        self._check_compatible(other)
        try:
            # `a + b` on the C++ objects builds a new ciphertext; CKKSVector.copy() is avoided
            # on purpose: it deep-copies the whole context (~0.2 s).
            chunks = [a + detached(b) for a, b in zip(self._chunks, other._chunks)]
        except Exception as exc:
            raise _tenseal_error("homomorphic addition failed", exc) from None
        return EncryptedVector(self._ctx, chunks, self.length)

    def add_(self, other: "EncryptedVector") -> "EncryptedVector":
        """In-place addition (no new ciphertexts allocated)."""
        self._check_compatible(other)
        try:
            for a, b in zip(self._chunks, other._chunks):
                a.add_(detached(b))
        except Exception as exc:
            raise _tenseal_error("homomorphic addition failed", exc) from None
        return self

    def scale(self, factor: float) -> "EncryptedVector":
        """Multiply by a plaintext scalar; consumes one multiplicative level."""
        factor = float(factor)
        if not math.isfinite(factor):
            raise CryptoError(f"scale factor must be finite, got {factor}")
        try:
            chunks = [c * factor for c in self._chunks]
        except ValueError as exc:
            if "scale out of bounds" in str(exc):
                raise CryptoError(
                    "no multiplicative level left for another scaling (decrypt and re-encrypt, or use more coefficient moduli)"
                ) from None
            raise _tenseal_error("homomorphic scaling failed", exc) from None
        except Exception as exc:
            raise _tenseal_error("homomorphic scaling failed", exc) from None
        return EncryptedVector(self._ctx, chunks, self.length)

    def __repr__(self) -> str:
        return f"EncryptedVector(length={self.length}, ciphertexts={len(self._chunks)})"


def encrypted_weighted_sum(vectors: Sequence[EncryptedVector], weights: Sequence[float]) -> EncryptedVector:
    """sum_i weights[i] * vectors[i], homomorphically (one multiplicative level)."""
    vectors = list(vectors)
    weights = [float(w) for w in weights]
    if not vectors:
        raise CryptoError("encrypted_weighted_sum needs at least one vector")
    if len(vectors) != len(weights):
        raise CryptoError(f"{len(vectors)} vectors but {len(weights)} weights")
    acc = vectors[0].scale(weights[0])
    for v, w in zip(vectors[1:], weights[1:]):
        acc.add_(v.scale(w))
    return acc
