"""The one self-describing envelope format (multi-recipient, streamed AES-256-GCM) for everything encrypted on IPFS."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dainode.crypto.keys import RSA_BITS, PrivateKey, PublicKey, key_id, public_key_bytes
from dainode.errors import DecryptionError, EnvelopeError
from dainode.fsutil import fsync_dir

# Layout (all integers big-endian), see docs/crypto.md:
#   magic "DAIE" | version u8 | aead u8 | segment log2 u8 | reserved u8 | nonce prefix 8 |
#   sha256(associated data) 32 | recipient count u16 | recipients... | segments...
#   recipient: wrap alg u8 | key id 32 | body length u16 | body
#   segment i: AES-256-GCM(cek, nonce = prefix || u32(i), pt, ad = sha256(header) || u8(last))
MAGIC = b"DAIE"
VERSION = 1
AEAD_AES256GCM_STREAM = 1
WRAP_RSA_OAEP_SHA256 = 1
WRAP_X25519_HKDF_SHA256 = 2
ALG_NAMES = {AEAD_AES256GCM_STREAM: "AES-256-GCM-STREAM"}
WRAP_NAMES = {WRAP_RSA_OAEP_SHA256: "RSA-OAEP-SHA256", WRAP_X25519_HKDF_SHA256: "X25519-HKDF-SHA256-AES256GCM"}

DEFAULT_SEGMENT_LOG2 = 18  # 256 KiB: ~2 segments in memory at a time, negligible per-segment overhead
MIN_SEGMENT_LOG2 = 12
MAX_SEGMENT_LOG2 = 24  # 16 MiB bounds what a hostile envelope can make a reader allocate
MAX_RECIPIENTS = 1024
TAG_LEN = 16
_FIXED = struct.Struct(">4sBBBB8s32sH")
_RECIPIENT = struct.Struct(">B32sH")
_MAX_WRAP_BODY = 1024  # an 8192-bit RSA ciphertext
_RSA_LABEL = b"dainode-envelope-v1"
_X25519_INFO = b"dainode-envelope-v1 x25519 key wrap"
_MAX_SEGMENTS = 2**32  # the counter is 32 bits wide


def associated_data(purpose: str, **fields: object) -> bytes:
    """Canonical associated data binding an envelope to e.g. purpose='update', task=..., round=...

    Both sides must build it from the same values; JSON with sorted keys makes it canonical.
    """
    if not purpose:
        raise EnvelopeError("associated data needs a purpose (e.g. 'dataset', 'update', 'model')")
    return json.dumps({"purpose": purpose, **fields}, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class Recipient:
    alg: int
    key_id: bytes
    body: bytes

    @property
    def alg_name(self) -> str:
        return WRAP_NAMES.get(self.alg, f"unknown({self.alg})")


@dataclass(frozen=True)
class EnvelopeInfo:
    """What `inspect` can tell without a key."""

    version: int
    aead: str
    segment_size: int
    nonce_prefix: bytes
    ad_digest: bytes
    recipients: tuple[Recipient, ...]
    header_len: int
    header: bytes

    def describe(self) -> dict:
        return {
            "version": self.version,
            "aead": self.aead,
            "segment_size": self.segment_size,
            "header_len": self.header_len,
            "recipients": [{"alg": r.alg_name, "key_id": r.key_id.hex()} for r in self.recipients],
        }


# --- key wrapping ---------------------------------------------------------------------


def _wrap(cek: bytes, pub: PublicKey) -> Recipient:
    kid = key_id(pub)
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < RSA_BITS:
            raise EnvelopeError(f"RSA recipient key has {pub.key_size} bits; at least {RSA_BITS} are required")
        body = pub.encrypt(cek, _oaep())
        return Recipient(WRAP_RSA_OAEP_SHA256, kid, body)
    if isinstance(pub, x25519.X25519PublicKey):
        eph = x25519.X25519PrivateKey.generate()
        eph_pub = public_key_bytes(eph.public_key())
        wrap_key = _x25519_wrap_key(eph.exchange(pub), eph_pub, public_key_bytes(pub))
        # the wrap key is fresh per envelope and recipient, so a fixed nonce is safe (as in age)
        return Recipient(WRAP_X25519_HKDF_SHA256, kid, eph_pub + AESGCM(wrap_key).encrypt(bytes(12), cek, kid))
    raise EnvelopeError(f"unsupported recipient key type {type(pub).__name__}; use RSA or X25519")


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=_RSA_LABEL)


def _x25519_wrap_key(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=eph_pub + recipient_pub, info=_X25519_INFO).derive(shared)


def _unwrap(rec: Recipient, priv: PrivateKey) -> bytes:
    what = f"the wrapped key for recipient {rec.key_id.hex()[:16]}"
    try:
        if rec.alg == WRAP_RSA_OAEP_SHA256 and isinstance(priv, rsa.RSAPrivateKey):
            cek = priv.decrypt(rec.body, _oaep())
        elif rec.alg == WRAP_X25519_HKDF_SHA256 and isinstance(priv, x25519.X25519PrivateKey):
            if len(rec.body) != 32 + 32 + TAG_LEN:
                raise DecryptionError(f"{what} has a wrong length ({len(rec.body)} bytes); the envelope is damaged")
            eph_pub = rec.body[:32]
            shared = priv.exchange(x25519.X25519PublicKey.from_public_bytes(eph_pub))
            wrap_key = _x25519_wrap_key(shared, eph_pub, public_key_bytes(priv.public_key()))
            cek = AESGCM(wrap_key).decrypt(bytes(12), rec.body[32:], rec.key_id)
        else:
            raise DecryptionError(f"{what} uses {rec.alg_name}, which does not match a {type(priv).__name__}")
    except (ValueError, InvalidTag):
        raise DecryptionError(f"{what} does not decrypt with this key: the wrapped key was tampered with") from None
    if len(cek) != 32:
        raise DecryptionError(f"{what} yields a {len(cek)}-byte key instead of 32; the envelope is damaged")
    return cek


# --- header ----------------------------------------------------------------------------


def _build_header(recipients: Sequence[Recipient], prefix: bytes, ad: bytes, seg_log2: int) -> bytes:
    parts = [
        _FIXED.pack(MAGIC, VERSION, AEAD_AES256GCM_STREAM, seg_log2, 0, prefix, hashlib.sha256(ad).digest(), len(recipients))
    ]
    for r in recipients:
        parts.append(_RECIPIENT.pack(r.alg, r.key_id, len(r.body)) + r.body)
    return b"".join(parts)


def _read_exact(src: BinaryIO, n: int) -> bytes:
    """Read n bytes (fewer only at end of stream); loops because pipes and sockets return short reads."""
    first = src.read(n)
    if not first or len(first) == n:
        return bytes(first or b"")
    buf = bytearray(first)
    while len(buf) < n:
        chunk = src.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _parse_header(src: BinaryIO) -> EnvelopeInfo:
    fixed = _read_exact(src, _FIXED.size)
    if len(fixed) < 5 or fixed[:4] != MAGIC:
        raise EnvelopeError("not a dainode envelope (bad magic)")
    if fixed[4] != VERSION:
        raise EnvelopeError(f"unknown envelope version {fixed[4]} (this node reads version {VERSION}); upgrade dainode")
    if len(fixed) < _FIXED.size:
        raise EnvelopeError("envelope header is truncated")
    _, version, aead, seg_log2, reserved, prefix, ad_digest, count = _FIXED.unpack(fixed)
    if aead != AEAD_AES256GCM_STREAM:
        raise EnvelopeError(f"unknown envelope payload algorithm id {aead}")
    if not MIN_SEGMENT_LOG2 <= seg_log2 <= MAX_SEGMENT_LOG2 or reserved != 0:
        raise EnvelopeError(f"invalid envelope header (segment size 2^{seg_log2}, reserved byte {reserved})")
    if not 1 <= count <= MAX_RECIPIENTS:
        raise EnvelopeError(f"invalid recipient count {count} (1..{MAX_RECIPIENTS})")
    header = bytearray(fixed)
    recipients = []
    for i in range(count):
        head = _read_exact(src, _RECIPIENT.size)
        if len(head) < _RECIPIENT.size:
            raise EnvelopeError(f"envelope header is truncated in recipient {i}")
        alg, kid, blen = _RECIPIENT.unpack(head)
        if blen == 0 or blen > _MAX_WRAP_BODY:
            raise EnvelopeError(f"recipient {i} has an invalid wrapped-key length {blen}")
        body = _read_exact(src, blen)
        if len(body) < blen:
            raise EnvelopeError(f"envelope header is truncated in recipient {i}")
        header += head + body
        recipients.append(Recipient(alg, kid, body))
    return EnvelopeInfo(
        version=version,
        aead=ALG_NAMES[aead],
        segment_size=1 << seg_log2,
        nonce_prefix=prefix,
        ad_digest=ad_digest,
        recipients=tuple(recipients),
        header_len=len(header),
        header=bytes(header),
    )


def inspect(data: bytes | BinaryIO) -> EnvelopeInfo:
    """Parse the header (from bytes starting with it, or a stream positioned at it) without any key."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = io.BytesIO(bytes(data))
    return _parse_header(data)


# --- streaming -------------------------------------------------------------------------


def _nonce(prefix: bytes, counter: int) -> bytes:
    if counter >= _MAX_SEGMENTS:
        raise EnvelopeError("payload too large for this segment size (more than 2^32 segments); use larger segments")
    return prefix + counter.to_bytes(4, "big")


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Iterable[PublicKey],
    ad: bytes,
    *,
    segment_log2: int = DEFAULT_SEGMENT_LOG2,
) -> int:
    """Encrypt everything `src` yields into an envelope on `dst` for `recipients`; returns bytes written.

    Holds at most two plaintext segments in memory (one of read-ahead, to know which is last).
    """
    pubs = list(recipients)
    if not pubs:
        raise EnvelopeError("an envelope needs at least one recipient")
    if len(pubs) > MAX_RECIPIENTS:
        raise EnvelopeError(f"too many recipients ({len(pubs)} > {MAX_RECIPIENTS})")
    if not MIN_SEGMENT_LOG2 <= segment_log2 <= MAX_SEGMENT_LOG2:
        raise EnvelopeError(f"segment size must be 2^{MIN_SEGMENT_LOG2}..2^{MAX_SEGMENT_LOG2} bytes")
    cek, prefix = os.urandom(32), os.urandom(8)
    header = _build_header([_wrap(cek, p) for p in pubs], prefix, bytes(ad), segment_log2)
    hh = hashlib.sha256(header).digest()
    aead = AESGCM(cek)
    seg = 1 << segment_log2
    written = dst.write(header) or len(header)
    counter = 0
    cur = _read_exact(src, seg)
    while True:
        nxt = _read_exact(src, seg) if len(cur) == seg else b""
        last = not nxt
        out = aead.encrypt(_nonce(prefix, counter), cur, hh + (b"\x01" if last else b"\x00"))
        dst.write(out)
        written += len(out)
        if last:
            return written
        counter += 1
        cur = nxt


def decrypt_stream(src: BinaryIO, dst: BinaryIO, key: PrivateKey, ad: bytes) -> int:
    """Decrypt an envelope from `src` to `dst`; returns plaintext bytes written.

    Only authenticated segments are written, but on an error (e.g. truncation detected at the
    end) `dst` already holds a verified prefix: the caller must discard it. `decrypt_file`
    does that for files (temp file, renamed only on full success).
    """
    info = _parse_header(src)
    return _decrypt_payload(info, src, dst, key, ad)


def _decrypt_payload(info: EnvelopeInfo, src: BinaryIO, dst: BinaryIO, key: PrivateKey, ad: bytes) -> int:
    if hashlib.sha256(bytes(ad)).digest() != info.ad_digest:
        raise DecryptionError(
            "associated data mismatch: this envelope is bound to a different task/round/purpose than expected"
        )
    kid = key_id(key)
    matches = [r for r in info.recipients if r.key_id == kid]
    if not matches:
        ids = ", ".join(r.key_id.hex()[:16] for r in info.recipients)
        raise DecryptionError(f"this envelope is not addressed to key {kid.hex()[:16]} (recipients: {ids}); wrong key")
    cek = _unwrap(matches[0], key)
    hh = hashlib.sha256(info.header).digest()
    aead = AESGCM(cek)
    seg_ct = info.segment_size + TAG_LEN
    counter = 0
    written = 0
    cur = _read_exact(src, seg_ct)
    while True:
        if len(cur) < TAG_LEN:
            raise DecryptionError(
                f"envelope is truncated: segment {counter} is {len(cur)} bytes, shorter than its tag"
            )
        nxt = _read_exact(src, seg_ct) if len(cur) == seg_ct else b""
        last = not nxt
        try:
            pt = aead.decrypt(_nonce(info.nonce_prefix, counter), cur, hh + (b"\x01" if last else b"\x00"))
        except InvalidTag:
            raise DecryptionError(
                f"segment {counter} failed authentication: the envelope was tampered with, truncated, "
                "reordered or extended (or its header was changed)"
            ) from None
        if last and counter > 0 and not pt:
            raise DecryptionError("envelope ends with an empty segment, which this format never produces")
        dst.write(pt)
        written += len(pt)
        if last:
            return written
        counter += 1
        cur = nxt


# --- bytes and files -------------------------------------------------------------------


def encrypt(data: bytes, recipients: Iterable[PublicKey], ad: bytes, *, segment_log2: int = DEFAULT_SEGMENT_LOG2) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(bytes(data)), out, recipients, ad, segment_log2=segment_log2)
    return out.getvalue()


def decrypt(envelope: bytes, key: PrivateKey, ad: bytes) -> bytes:
    """All or nothing: returns the plaintext only if every segment authenticated."""
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(bytes(envelope)), out, key, ad)
    return out.getvalue()


def _atomic_stream_to(path: Path, fill, mode: int) -> int:
    path = Path(path)
    # random suffix: two writers of the same destination in one process must not collide
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            n = fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return n


def encrypt_file(src: Path, dst: Path, recipients: Iterable[PublicKey], ad: bytes, **kw) -> int:
    """Encrypt file `src` into envelope file `dst` (written atomically)."""
    pubs = list(recipients)
    with open(src, "rb") as f:
        return _atomic_stream_to(dst, lambda out: encrypt_stream(f, out, pubs, ad, **kw), 0o644)


def decrypt_file(src: Path, dst: Path, key: PrivateKey, ad: bytes) -> int:
    """Decrypt envelope file `src` to `dst` (mode 0600: it is private data).

    `dst` appears only if the whole envelope authenticated; on any error nothing is left behind.
    """
    with open(src, "rb") as f:
        return _atomic_stream_to(dst, lambda out: decrypt_stream(f, out, key, ad), 0o600)
