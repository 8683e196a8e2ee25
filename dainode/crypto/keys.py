"""Password-sealed key files for the node's envelope (RSA/X25519) and CKKS keys, and public-key export/ids."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dainode.errors import CryptoError, IdentityError, WrongPasswordError
from dainode.fsutil import check_private_file, create_exclusive, ensure_private_dir, fsync_dir, pid_alive

PublicKey = Union[rsa.RSAPublicKey, x25519.X25519PublicKey]
PrivateKey = Union[rsa.RSAPrivateKey, x25519.X25519PrivateKey]

KEYS_DIR = "keys"
RSA_KEY_FILE = "keys/envelope-rsa.key"
X25519_KEY_FILE = "keys/envelope-x25519.key"
CKKS_KEY_FILE = "keys/ckks-{name}.key"
# present while init_envelope_keys writes its two files (see dainode/identity.py INIT_MARKER)
ENVELOPE_INIT_MARKER = "keys/ENVELOPE-INIT-INCOMPLETE"

RSA_BITS = 3072  # the paper's asymmetric layer; 3072 bits ~ 128-bit security (NIST SP 800-57)
# scrypt cost: the same as the node's keystores in dainode/identity.py (N=2^18, r=8, p=1:
# 256 MiB, ~0.5 s per unlock); "light" (N=2^12) mirrors --light-kdf for tests.
KDF_LOG2N_STANDARD = 18
KDF_LOG2N_LIGHT = 12
_SCRYPT_R = 8
_SCRYPT_P = 1

# Sealed file: magic(4) version(1) kind_len(1) kind log2N(1) r(1) p(1) salt(16) nonce(12) check(16) | AES-GCM(ct+tag)
_SEAL_MAGIC = b"DAIK"
_SEAL_VERSION = 1
_SEAL_TAIL = struct.Struct(">BBB16s12s16s")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


# --- public keys ----------------------------------------------------------------------


def public_key_bytes(pub: PublicKey) -> bytes:
    """Canonical public-key bytes: DER SubjectPublicKeyInfo for RSA, the raw 32 bytes for X25519."""
    if isinstance(pub, rsa.RSAPublicKey):
        return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if isinstance(pub, x25519.X25519PublicKey):
        return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raise CryptoError(f"unsupported public key type {type(pub).__name__}; use RSA or X25519")


def key_id(key: PublicKey | PrivateKey) -> bytes:
    """sha256 of the canonical public-key bytes (32 bytes); a private key gives its public key's id."""
    if isinstance(key, (rsa.RSAPrivateKey, x25519.X25519PrivateKey)):
        key = key.public_key()
    return hashlib.sha256(public_key_bytes(key)).digest()


def export_public_pem(pub: PublicKey) -> bytes:
    """PEM (SubjectPublicKeyInfo) for publishing to IPFS."""
    if not isinstance(pub, (rsa.RSAPublicKey, x25519.X25519PublicKey)):
        raise CryptoError(f"unsupported public key type {type(pub).__name__}; use RSA or X25519")
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(data: bytes) -> PublicKey:
    """Parse a public key from PEM, DER (SubjectPublicKeyInfo) or 32 raw X25519 bytes (untrusted input)."""
    data = bytes(data)
    try:
        if len(data) == 32:
            return x25519.X25519PublicKey.from_public_bytes(data)
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm, TypeError) as exc:
        raise CryptoError(f"not a valid public key (expected PEM, DER or 32 raw X25519 bytes): {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_BITS:
            raise CryptoError(f"RSA public key has {key.key_size} bits; at least {RSA_BITS} are required")
        return key
    if isinstance(key, x25519.X25519PublicKey):
        return key
    raise CryptoError(f"unsupported public key type {type(key).__name__}; use RSA or X25519")


# --- sealing with the node password -----------------------------------------------------


def _derive(password: str, salt: bytes, log2n: int, r: int, p: int) -> tuple[bytes, bytes]:
    if not (10 <= log2n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise IdentityError(f"sealed key file has out-of-range scrypt parameters (log2N={log2n}, r={r}, p={p})")
    n = 1 << log2n
    raw = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=64, maxmem=128 * r * n * p + 64 * 1024 * 1024
    )
    # first half encrypts, second half only checks the password (so a wrong password and a
    # damaged file give different errors)
    return raw[:32], hmac.new(raw[32:], b"dainode key check", hashlib.sha256).digest()[:16]


def seal(secret: bytes, password: str, kind: str, *, light_kdf: bool = False) -> bytes:
    """Encrypt `secret` with a key derived from `password` (scrypt); `kind` is authenticated."""
    if not password:
        raise IdentityError("the password is empty; choose a non-empty password")
    kind_b = kind.encode("ascii")
    log2n = KDF_LOG2N_LIGHT if light_kdf else KDF_LOG2N_STANDARD
    salt, nonce = os.urandom(16), os.urandom(12)
    key, check = _derive(password, salt, log2n, _SCRYPT_R, _SCRYPT_P)
    header = (
        _SEAL_MAGIC
        + bytes([_SEAL_VERSION, len(kind_b)])
        + kind_b
        + _SEAL_TAIL.pack(log2n, _SCRYPT_R, _SCRYPT_P, salt, nonce, check)
    )
    return header + AESGCM(key).encrypt(nonce, bytes(secret), header)


def unseal(blob: bytes, password: str, kind: str, *, where: str = "sealed key") -> bytes:
    """Inverse of `seal`; WrongPasswordError on a wrong password, IdentityError if damaged."""
    blob = bytes(blob)
    if len(blob) < 6 or blob[:4] != _SEAL_MAGIC:
        raise IdentityError(f"{where} is not a dainode sealed key file (bad magic)")
    if blob[4] != _SEAL_VERSION:
        raise IdentityError(f"{where} has unsupported format version {blob[4]} (this node reads {_SEAL_VERSION})")
    klen = blob[5]
    tail_at = 6 + klen
    if len(blob) < tail_at + _SEAL_TAIL.size + 16:
        raise IdentityError(f"{where} is truncated")
    found_kind = blob[6:tail_at].decode("ascii", "replace")
    if found_kind != kind:
        raise IdentityError(f"{where} holds a {found_kind!r} key, expected {kind!r}")
    log2n, r, p, salt, nonce, check = _SEAL_TAIL.unpack_from(blob, tail_at)
    header_end = tail_at + _SEAL_TAIL.size
    key, want_check = _derive(password, salt, log2n, r, p)
    if not hmac.compare_digest(check, want_check):
        raise WrongPasswordError(f"wrong password for {where}")
    try:
        return AESGCM(key).decrypt(nonce, blob[header_end:], blob[:header_end])
    except InvalidTag:
        raise IdentityError(f"{where} is damaged (authentication failed although the password is right); restore it from a backup") from None


def write_sealed(path: Path, secret: bytes, password: str, kind: str, *, light_kdf: bool = False) -> None:
    """Create a sealed key file (mode 0600); IdentityError if `path` exists: a key is never replaced."""
    path = Path(path)
    ensure_private_dir(path.parent)
    try:
        create_exclusive(path, seal(secret, password, kind, light_kdf=light_kdf), mode=0o600)
    except FileExistsError:
        raise IdentityError(f"{path} already exists; refusing to overwrite a key (move it away first if it is no longer needed)") from None


def read_sealed(path: Path, password: str, kind: str) -> bytes:
    path = Path(path)
    check_private_file(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"missing key file {path}") from None
    except OSError as exc:
        raise IdentityError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    return unseal(blob, password, kind, where=str(path))


# --- the node's envelope keys -----------------------------------------------------------


@dataclass
class EnvelopeKeys:
    """The node's unlocked envelope key pairs. Holds secrets: never serialise or log it."""

    rsa: rsa.RSAPrivateKey = field(repr=False)
    x25519: x25519.X25519PrivateKey = field(repr=False)

    @property
    def rsa_public(self) -> rsa.RSAPublicKey:
        return self.rsa.public_key()

    @property
    def x25519_public(self) -> x25519.X25519PublicKey:
        return self.x25519.public_key()

    def private_for(self, kid: bytes) -> PrivateKey | None:
        for k in (self.rsa, self.x25519):
            if key_id(k) == kid:
                return k
        return None


def _pkcs8(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _load_private(der: bytes, where: str) -> PrivateKey:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, UnsupportedAlgorithm, TypeError) as exc:
        raise IdentityError(f"{where} does not hold a valid private key: {exc}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, x25519.X25519PrivateKey)):
        raise IdentityError(f"{where} holds an unsupported key type {type(key).__name__}")
    return key


def init_envelope_keys(data_dir: Path, password: str, *, light_kdf: bool = False) -> EnvelopeKeys:
    """Generate and store both key pairs; refuses to overwrite existing key files (call with the data-dir lock)."""
    data_dir = Path(data_dir).expanduser()
    for rel in (RSA_KEY_FILE, X25519_KEY_FILE):
        if (data_dir / rel).exists():
            raise IdentityError(f"{data_dir / rel} already exists; refusing to overwrite a key")
    ensure_private_dir(data_dir)
    ensure_private_dir(data_dir / KEYS_DIR)
    try:
        create_exclusive(data_dir / ENVELOPE_INIT_MARKER, f"{os.getpid()}\n".encode(), mode=0o600)
    except FileExistsError:
        raise IdentityError(f"{data_dir / ENVELOPE_INIT_MARKER} exists: another process is creating the envelope keys") from None
    keys = EnvelopeKeys(rsa=rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS), x25519=x25519.X25519PrivateKey.generate())
    write_sealed(data_dir / X25519_KEY_FILE, _pkcs8(keys.x25519), password, "x25519", light_kdf=light_kdf)
    write_sealed(data_dir / RSA_KEY_FILE, _pkcs8(keys.rsa), password, "rsa", light_kdf=light_kdf)
    (data_dir / ENVELOPE_INIT_MARKER).unlink()
    fsync_dir(data_dir / KEYS_DIR)
    return keys


def load_envelope_keys(data_dir: Path, password: str) -> EnvelopeKeys:
    data_dir = Path(data_dir).expanduser()
    r = _load_private(read_sealed(data_dir / RSA_KEY_FILE, password, "rsa"), str(data_dir / RSA_KEY_FILE))
    x = _load_private(read_sealed(data_dir / X25519_KEY_FILE, password, "x25519"), str(data_dir / X25519_KEY_FILE))
    if not isinstance(r, rsa.RSAPrivateKey) or not isinstance(x, x25519.X25519PrivateKey):
        raise IdentityError(f"envelope key files in {data_dir / KEYS_DIR} hold the wrong key types")
    return EnvelopeKeys(rsa=r, x25519=x)


def _backup_interrupted_init(data_dir: Path) -> Path:
    """Move what an interrupted init left (marker, a lone key file) to keys/backup-*-envelope-init/; never deletes."""
    marker = data_dir / ENVELOPE_INIT_MARKER
    try:
        owner = int(marker.read_text().strip() or 0)
    except (OSError, ValueError):
        owner = 0
    if owner != os.getpid() and pid_alive(owner):
        raise IdentityError(f"process {owner} is creating the envelope keys in {data_dir} right now; wait for it")
    backup = data_dir / KEYS_DIR / f"backup-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}-envelope-init"
    backup.mkdir(mode=0o700)
    for rel in (RSA_KEY_FILE, X25519_KEY_FILE, ENVELOPE_INIT_MARKER):
        if (data_dir / rel).exists():
            os.rename(data_dir / rel, backup / Path(rel).name)
    fsync_dir(data_dir / KEYS_DIR)
    return backup


def load_or_init_envelope_keys(data_dir: Path, password: str, *, light_kdf: bool = False) -> tuple[EnvelopeKeys, bool]:
    """Load the envelope keys, creating them first if neither file exists. Returns (keys, created).

    Never deletes a key file: an interrupted init (its marker is still there) is moved to
    keys/backup-*/ and redone; one file without the marker is a lost key, an IdentityError.
    """
    data_dir = Path(data_dir).expanduser()
    if (data_dir / ENVELOPE_INIT_MARKER).exists():
        _backup_interrupted_init(data_dir)
    have = [(data_dir / rel).exists() for rel in (RSA_KEY_FILE, X25519_KEY_FILE)]
    if all(have):
        return load_envelope_keys(data_dir, password), False
    if any(have):
        missing, present = (X25519_KEY_FILE, RSA_KEY_FILE) if have[0] else (RSA_KEY_FILE, X25519_KEY_FILE)
        raise IdentityError(
            f"{data_dir / missing} is missing but {data_dir / present} exists; restore it from a backup "
            f"(data sealed to the lost key cannot be opened without it)"
        )
    return init_envelope_keys(data_dir, password, light_kdf=light_kdf), True


# --- CKKS secret contexts ------------------------------------------------------------------


def _ckks_path(data_dir: Path, name: str) -> Path:
    if not _NAME_RE.match(name):
        raise CryptoError(f"invalid CKKS key name {name!r}: use 1-64 characters a-z, 0-9, '-' or '_'")
    return Path(data_dir).expanduser() / CKKS_KEY_FILE.format(name=name)


def save_ckks_context(data_dir: Path, name: str, ctx, password: str, *, light_kdf: bool = False) -> Path:
    """Store a CKKS context holding a secret key (e.g. one per task this node is key holder of)."""
    if not ctx.has_secret_key:
        raise CryptoError("refusing to seal a public CKKS context: it holds no secret; publish it instead")
    path = _ckks_path(data_dir, name)
    write_sealed(path, ctx.to_bytes(), password, "ckks", light_kdf=light_kdf)
    return path


def load_ckks_context(data_dir: Path, name: str, password: str):
    from dainode.crypto.ckks import CkksContext  # TenSEAL is only loaded when needed

    path = _ckks_path(data_dir, name)
    return CkksContext.from_bytes(read_sealed(path, password, "ckks"))
