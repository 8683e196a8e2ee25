"""Envelopes: round trips, streaming in bounded memory, and every kind of tampering detected."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tracemalloc

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa, x25519

from dainode.crypto import envelope as env
from dainode.crypto.keys import key_id
from dainode.errors import CryptoError, DecryptionError, EnvelopeError

SEG_LOG2 = 12  # 4 KiB segments keep the multi-segment cases small
SEG = 1 << SEG_LOG2
AD = env.associated_data("update", task=7, round=3)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


@pytest.fixture(scope="module")
def x_key():
    return x25519.X25519PrivateKey.generate()


def _seal(data: bytes, *keys) -> bytes:
    return env.encrypt(data, [k.public_key() for k in keys], AD, segment_log2=SEG_LOG2)


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 5 * SEG + 123])
def test_round_trip_both_key_types(size, rsa_key, x_key):
    data = os.urandom(size)
    blob = _seal(data, rsa_key, x_key)
    assert env.decrypt(blob, rsa_key, AD) == data
    assert env.decrypt(blob, x_key, AD) == data
    info = env.inspect(blob)
    n_segments = max(1, -(-size // SEG))
    assert len(blob) == info.header_len + size + n_segments * env.TAG_LEN


def test_inspect_without_key(rsa_key, x_key):
    blob = _seal(b"hello", rsa_key, x_key)
    info = env.inspect(blob[:2000])
    d = info.describe()
    assert d["version"] == env.VERSION and d["aead"] == "AES-256-GCM-STREAM" and d["segment_size"] == SEG
    assert [r["alg"] for r in d["recipients"]] == ["RSA-OAEP-SHA256", "X25519-HKDF-SHA256-AES256GCM"]
    assert [r["key_id"] for r in d["recipients"]] == [key_id(rsa_key).hex(), key_id(x_key).hex()]
    with pytest.raises(EnvelopeError, match="truncated"):
        env.inspect(blob[:100])


def test_default_segment_size_round_trip(x_key):
    data = os.urandom(700_000)  # three 256 KiB segments
    blob = env.encrypt(data, [x_key.public_key()], AD)
    assert env.inspect(blob).segment_size == 1 << env.DEFAULT_SEGMENT_LOG2
    assert env.decrypt(blob, x_key, AD) == data


def _flip(blob: bytes, pos: int) -> bytes:
    b = bytearray(blob)
    b[pos] ^= 0x01
    return bytes(b)


def test_every_tampering_is_detected(rsa_key, x_key):
    data = os.urandom(3 * SEG + 100)  # segments: full, full, full, last (100 B)
    blob = _seal(data, rsa_key, x_key)
    info = env.inspect(blob)
    h = info.header_len
    ct = SEG + env.TAG_LEN
    rsa_body_at = env._FIXED.size + env._RECIPIENT.size
    x_body_at = rsa_body_at + len(info.recipients[0].body) + env._RECIPIENT.size
    segs = [blob[h + i * ct : h + (i + 1) * ct] for i in range(4)]
    cases = {
        "ciphertext byte": _flip(blob, h + 10),
        "ciphertext byte in last segment": _flip(blob, len(blob) - 30),
        "tag": _flip(blob, h + ct - 1),
        "final tag": _flip(blob, len(blob) - 1),
        "header nonce prefix": _flip(blob, 9),
        "header segment size": blob[:6] + bytes([SEG_LOG2 + 1]) + blob[7:],
        "header recipient key id (other recipient)": _flip(blob, rsa_body_at + len(info.recipients[0].body) + 5),
        "wrapped key RSA": _flip(blob, rsa_body_at + 50),
        "wrapped key X25519 ephemeral": _flip(blob, x_body_at + 3),
        "wrapped key X25519 ciphertext": _flip(blob, x_body_at + 40),
        "truncated at segment boundary": blob[: h + 3 * ct],
        "truncated mid segment": blob[:-50],
        "truncated to header": blob[:h],
        "segments reordered": blob[:h] + segs[1] + segs[0] + segs[2] + segs[3],
        "segment dropped": blob[:h] + segs[0] + segs[2] + segs[3],
        "segment duplicated": blob[:h] + segs[0] + segs[0] + segs[1] + segs[2] + segs[3],
        "appended data": blob + b"\x00" * 20,
        "appended segment": blob + segs[0],
    }
    for name, bad in cases.items():
        for key in (rsa_key, x_key):
            with pytest.raises(CryptoError) as excinfo:
                env.decrypt(bad, key, AD)
            assert str(excinfo.value), name


def test_header_change_is_authenticated_even_for_the_other_recipient(rsa_key, x_key):
    # flipping a byte of the RSA recipient's wrapped key must also break decryption for X25519
    blob = _seal(b"x" * 100, rsa_key, x_key)
    at = env._FIXED.size + env._RECIPIENT.size + 10
    with pytest.raises(DecryptionError, match="segment 0 failed authentication"):
        env.decrypt(_flip(blob, at), x_key, AD)


def test_specific_error_messages(rsa_key, x_key):
    blob = _seal(b"payload", rsa_key)
    with pytest.raises(DecryptionError, match="associated data mismatch"):
        env.decrypt(blob, rsa_key, env.associated_data("update", task=7, round=4))
    with pytest.raises(DecryptionError, match="not addressed to key"):
        env.decrypt(blob, x_key, AD)
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    with pytest.raises(DecryptionError, match="not addressed to key"):
        env.decrypt(blob, other_rsa, AD)
    with pytest.raises(EnvelopeError, match="unknown envelope version 2"):
        env.decrypt(blob[:4] + b"\x02" + blob[5:], rsa_key, AD)
    with pytest.raises(EnvelopeError, match="bad magic"):
        env.decrypt(b"PK\x03\x04" + blob[4:], rsa_key, AD)
    with pytest.raises(EnvelopeError, match="bad magic"):
        env.decrypt(b"", rsa_key, AD)
    h = env.inspect(blob).header_len
    with pytest.raises(DecryptionError, match="truncated"):
        env.decrypt(blob[:h], rsa_key, AD)
    with pytest.raises(DecryptionError, match="tampered"):
        env.decrypt(_flip(blob, env._FIXED.size + env._RECIPIENT.size + 5), rsa_key, AD)


def test_weak_or_missing_recipients_refused(x_key):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(EnvelopeError, match="3072"):
        env.encrypt(b"x", [weak.public_key()], AD)
    with pytest.raises(EnvelopeError, match="at least one recipient"):
        env.encrypt(b"x", [], AD)


def test_decrypt_file_leaves_nothing_on_failure(tmp_path, x_key):
    src = tmp_path / "plain"
    src.write_bytes(os.urandom(4 * SEG))
    sealed = tmp_path / "sealed"
    env.encrypt_file(src, sealed, [x_key.public_key()], AD, segment_log2=SEG_LOG2)
    out = tmp_path / "out"
    assert env.decrypt_file(sealed, out, x_key, AD) == 4 * SEG
    assert out.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # decrypted data is private
    with open(sealed, "rb") as f:  # inspect reads just the header from a stream
        assert env.inspect(f).recipients[0].key_id == key_id(x_key)
    # truncation is only visible at the very end; the first three segments authenticate
    truncated = tmp_path / "truncated"
    truncated.write_bytes(sealed.read_bytes()[: -(SEG + env.TAG_LEN)])
    out2 = tmp_path / "out2"
    with pytest.raises(DecryptionError):
        env.decrypt_file(truncated, out2, x_key, AD)
    assert not out2.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plain", "sealed", "truncated"]


class _ShortReads(io.RawIOBase):
    """A pipe-like source that returns at most 1000 bytes per read."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)

    def readable(self):
        return True

    def read(self, n=-1):
        return self._buf.read(min(n, 1000) if n >= 0 else 1000)


def test_short_reads_are_handled(x_key):
    data = os.urandom(3 * SEG + 5)
    out = io.BytesIO()
    env.encrypt_stream(_ShortReads(data), out, [x_key.public_key()], AD, segment_log2=SEG_LOG2)
    plain = io.BytesIO()
    env.decrypt_stream(_ShortReads(out.getvalue()), plain, x_key, AD)
    assert plain.getvalue() == data


@pytest.mark.slow
def test_200_mb_streamed_in_bounded_memory(tmp_path, rsa_key):
    size = 200 * 1024 * 1024
    src = tmp_path / "big.bin"
    h_in = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(size >> 20):
            chunk = bytes([i & 0xFF]) + block[1:]  # not all segments identical
            h_in.update(chunk)
            f.write(chunk)
    sealed, out = tmp_path / "big.env", tmp_path / "big.out"
    tracemalloc.start()
    try:
        env.encrypt_file(src, sealed, [rsa_key.public_key()], AD)
        src.unlink()
        n = env.decrypt_file(sealed, out, rsa_key, AD)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == size
    assert sealed.stat().st_size == env.inspect(sealed.read_bytes()[:4096]).header_len + size + 800 * env.TAG_LEN
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak} bytes: the payload is being buffered"
    h_out = hashlib.sha256()
    with open(out, "rb") as f:
        while chunk := f.read(1 << 20):
            h_out.update(chunk)
    assert h_out.digest() == h_in.digest()
