"""Content identifiers (CIDv0/CIDv1), multihash and the few multibases IPFS uses; no library errors leak."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from dainode.errors import InvalidBlock, InvalidCid

# multicodec codes (https://github.com/multiformats/multicodec/blob/master/table.csv)
RAW = 0x55
DAG_PB = 0x70
DAG_CBOR = 0x71
IDENTITY = 0x00
SHA2_256 = 0x12
SHA2_512 = 0x13
SHA3_256 = 0x16
BLAKE2B_256 = 0xB220

# hash functions verify_block can check; digest length each must have
_HASHERS = {
    SHA2_256: (lambda b: hashlib.sha256(b).digest(), 32),
    SHA2_512: (lambda b: hashlib.sha512(b).digest(), 64),
    SHA3_256: (lambda b: hashlib.sha3_256(b).digest(), 32),
    BLAKE2B_256: (lambda b: hashlib.blake2b(b, digest_size=32).digest(), 32),
}
# kubo refuses identity CIDs longer than this (they would inline whole blocks into CIDs)
MAX_IDENTITY_DIGEST = 128
MAX_DIGEST = 128

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


# --- varint and bases --------------------------------------------------------------


def encode_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Return (value, new position); ValueError on truncation or non-minimal/oversized varints."""
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            # unsigned-varint spec: minimal encoding only, at most 9 bytes
            if byte == 0 and pos - start > 1:
                raise ValueError("non-minimal varint")
            return result, pos
        shift += 7
        if pos - start >= 9:
            raise ValueError("varint longer than 9 bytes")


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise ValueError(f"invalid base58btc character {c!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def _b32decode(text: str) -> bytes:
    # RFC 4648 without padding, as multibase uses it
    text = text.upper()
    if len(text) % 8 in (1, 3, 6):
        raise ValueError(f"invalid base32 length {len(text)}")
    return base64.b32decode(text + "=" * (-len(text) % 8))


def _b64decode(text: str, urlsafe: bool) -> bytes:
    text = text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4)
    return base64.urlsafe_b64decode(text) if urlsafe else base64.b64decode(text, validate=True)


def multibase_decode(text: str) -> bytes:
    """Decode a multibase string (base32, base58btc, base16, base64 variants)."""
    if not text:
        raise ValueError("empty string")
    prefix, body = text[0], text[1:]
    if prefix in "bB":
        if (prefix == "b" and body != body.lower()) or (prefix == "B" and body != body.upper()):
            raise ValueError("mixed case in base32")
        return _b32decode(body)
    if prefix == "z":
        return b58decode(body)
    if prefix in "fF":
        return bytes.fromhex(body)
    if prefix == "m":
        return _b64decode(body, urlsafe=False)
    if prefix == "u":
        return _b64decode(body, urlsafe=True)
    raise ValueError(f"unsupported multibase prefix {prefix!r} (use base32 'b…' or base58btc 'z…'/'Qm…')")


def b32encode_lower(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


# --- multihash ---------------------------------------------------------------------


def decode_multihash(mh: bytes) -> tuple[int, bytes]:
    """Return (hash code, digest) of a complete multihash; ValueError if malformed."""
    code, pos = decode_varint(mh, 0)
    length, pos = decode_varint(mh, pos)
    digest = mh[pos:]
    if len(digest) != length:
        raise ValueError(f"multihash declares a {length}-byte digest but has {len(digest)} bytes")
    if code in _HASHERS and length != _HASHERS[code][1]:
        raise ValueError(f"multihash 0x{code:x} must have a {_HASHERS[code][1]}-byte digest, not {length}")
    if code == IDENTITY and length > MAX_IDENTITY_DIGEST:
        raise ValueError(f"identity multihash longer than {MAX_IDENTITY_DIGEST} bytes")
    if length > MAX_DIGEST:
        raise ValueError(f"multihash digest longer than {MAX_DIGEST} bytes")
    return code, bytes(digest)


def hash_digest(code: int, data: bytes) -> bytes:
    """The digest of `data` under multihash function `code` (identity included): the one table every
    part of the store (CIDs, bitswap block prefixes) verifies with. ValueError if unsupported."""
    if code == IDENTITY:
        return bytes(data)
    if code in _HASHERS:
        return _HASHERS[code][0](data)
    raise ValueError(f"unsupported hash function 0x{code:x}")


def multihash(data: bytes, code: int = SHA2_256) -> bytes:
    if code == IDENTITY:
        digest = bytes(data)
    elif code in _HASHERS:
        digest = _HASHERS[code][0](data)
    else:
        raise ValueError(f"unsupported hash function 0x{code:x}")
    return encode_varint(code) + encode_varint(len(digest)) + digest


# --- CID ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CID:
    """A CID. `multihash` is the full `<code><len><digest>`; it is also the blockstore key."""

    version: int
    codec: int
    multihash: bytes

    def __post_init__(self) -> None:
        if self.version not in (0, 1):
            raise InvalidCid(f"unsupported CID version {self.version} (only 0 and 1 exist)")
        if not isinstance(self.multihash, bytes):
            object.__setattr__(self, "multihash", bytes(self.multihash))
        try:
            code, digest = decode_multihash(self.multihash)
        except ValueError as e:
            raise InvalidCid(f"invalid multihash in CID: {e}") from None
        if self.version == 0 and (self.codec != DAG_PB or code != SHA2_256):
            raise InvalidCid("a CIDv0 must be dag-pb with a sha2-256 multihash; use CIDv1 for anything else")

    @classmethod
    def parse(cls, value: "str | bytes | CID") -> "CID":
        """Parse a CIDv0 ("Qm…"), a multibase CIDv1 string ("bafy…", "z…") or a binary CID."""
        if isinstance(value, CID):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls._from_binary(bytes(value), shown=bytes(value[:16]).hex())
        if not isinstance(value, str):
            raise InvalidCid(f"a CID must be a string or bytes, not {type(value).__name__}")
        text = value.strip()
        shown = text if len(text) <= 80 else text[:77] + "..."
        if not text:
            raise InvalidCid("empty string is not a CID")
        if len(text) == 46 and text.startswith("Qm"):
            try:
                raw = b58decode(text)
            except ValueError as e:
                raise InvalidCid(f"{shown!r} is not a CIDv0: {e}") from None
            return cls._from_binary(raw, shown=shown)
        try:
            raw = multibase_decode(text)
        except (ValueError, TypeError) as e:  # binascii.Error is a ValueError
            raise InvalidCid(f"{shown!r} is not a CID: {e}") from None
        cid = cls._from_binary(raw, shown=shown)
        if cid.version == 0:
            raise InvalidCid(f"{shown!r}: a CIDv0 is written in base58btc without prefix ('Qm…'), not in multibase")
        return cid

    @classmethod
    def _from_binary(cls, raw: bytes, *, shown: str) -> "CID":
        if len(raw) == 34 and raw[0] == SHA2_256 and raw[1] == 32:
            return cls(0, DAG_PB, raw)
        try:
            version, pos = decode_varint(raw, 0)
            if version == SHA2_256:
                raise ValueError("looks like a CIDv0 multihash of the wrong length")
            if version != 1:
                raise ValueError(f"unsupported CID version {version}")
            codec, pos = decode_varint(raw, pos)
            decode_multihash(raw[pos:])
        except ValueError as e:
            raise InvalidCid(f"{shown!r} is not a CID: {e}") from None
        return cls(1, codec, raw[pos:])

    def to_bytes(self) -> bytes:
        if self.version == 0:
            return self.multihash
        return encode_varint(1) + encode_varint(self.codec) + self.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return b58encode(self.multihash)
        return "b" + b32encode_lower(self.to_bytes())

    def __repr__(self) -> str:
        return f"CID({self})"

    @property
    def hash_code(self) -> int:
        return decode_multihash(self.multihash)[0]

    @property
    def digest(self) -> bytes:
        return decode_multihash(self.multihash)[1]

    def key(self) -> bytes:
        """Blockstore key: the multihash, so a CIDv0 and a CIDv1 of one block share it."""
        return self.multihash

    def to_v1(self) -> "CID":
        return self if self.version == 1 else CID(1, self.codec, self.multihash)

    def to_v0(self) -> "CID":
        """The CIDv0 of the same block; InvalidCid unless dag-pb with sha2-256."""
        return self if self.version == 0 else CID(0, self.codec, self.multihash)


def cid_of(data: bytes, codec: int = RAW, version: int = 1) -> CID:
    """The sha2-256 CID of `data`."""
    return CID(version, codec, multihash(data, SHA2_256))


def verify_block(cid: CID, data: bytes) -> None:
    """Raise InvalidBlock unless `data` hashes to `cid` (sha2-256/512, sha3-256, blake2b-256, identity)."""
    code, digest = decode_multihash(cid.multihash)
    if code == IDENTITY:
        ok = bytes(data) == digest
    elif code in _HASHERS:
        ok = _HASHERS[code][0](data) == digest
    else:
        raise InvalidBlock(f"cannot verify block {cid}: unsupported hash function 0x{code:x}")
    if not ok:
        raise InvalidBlock(f"block of {len(data)} bytes does not hash to {cid}")


# names of common codecs and hashes this node cannot read, for error messages
_CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb", DAG_CBOR: "dag-cbor", 0x0129: "dag-json", 0x0200: "json", 0x51: "cbor",
                0x78: "git-raw", 0x90: "eth-block", 0x0202: "car"}
_HASH_NAMES = {0x11: "sha1", 0x14: "sha3-512", 0x15: "sha3-384", 0x17: "sha3-224", 0x1A: "keccak-224",
               0x1B: "keccak-256", 0x1C: "keccak-384", 0x1D: "keccak-512", 0x1E: "blake3", 0xD5: "md5",
               0xB260: "blake2b-512", 0xB240: "blake2b-384", 0xB250: "blake2s-256"}


def check_file_cid(cid: CID) -> None:
    """InvalidCid ("unsupported codec/hash") unless `cid` can be a UnixFS file this node can fetch and verify.

    Checked before any fetch: a block whose hash this node cannot verify is never accepted
    from the network, so waiting for it would only end in a timeout.
    """
    check_verifiable(cid)
    if cid.codec not in (RAW, DAG_PB):
        name = _CODEC_NAMES.get(cid.codec, "unknown")
        raise InvalidCid(
            f"unsupported codec {name} (0x{cid.codec:x}) in {cid}: this node reads raw and dag-pb (UnixFS) files only; nothing was fetched"
        )


def check_verifiable(cid: CID) -> None:
    """InvalidCid ("unsupported hash") unless verify_block can check blocks of `cid`."""
    code = cid.hash_code
    if code != IDENTITY and code not in _HASHERS:
        name = _HASH_NAMES.get(code, "unknown")
        raise InvalidCid(
            f"unsupported hash {name} (0x{code:x}) in {cid}: this node verifies sha2-256, sha2-512, sha3-256, "
            "blake2b-256 and identity only, so it cannot fetch this block; nothing was fetched"
        )
