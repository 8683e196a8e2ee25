"""CID parsing, encoding and block verification."""

from __future__ import annotations

import hashlib

import pytest

from dainode.errors import InvalidBlock, InvalidCid
from dainode.store.cid import (
    CID,
    DAG_PB,
    IDENTITY,
    RAW,
    SHA2_256,
    b58decode,
    b58encode,
    cid_of,
    decode_varint,
    encode_varint,
    multihash,
    verify_block,
)

EMPTY_DIR_V0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
EMPTY_DIR_V1 = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_empty_raw_block_cid_is_the_known_one():
    cid = cid_of(b"")
    assert str(cid) == EMPTY_RAW
    assert cid.version == 1 and cid.codec == RAW
    assert cid.digest == hashlib.sha256(b"").digest()
    assert cid.multihash == bytes([SHA2_256, 32]) + cid.digest
    assert cid.key() == cid.multihash


def test_v0_parse_and_roundtrip():
    cid = CID.parse(EMPTY_DIR_V0)
    assert (cid.version, cid.codec) == (0, DAG_PB)
    assert str(cid) == EMPTY_DIR_V0
    assert cid.to_bytes() == cid.multihash and len(cid.to_bytes()) == 34
    assert CID.parse(cid.to_bytes()) == cid


def test_v0_and_v1_share_the_key():
    v0 = CID.parse(EMPTY_DIR_V0)
    v1 = CID.parse(EMPTY_DIR_V1)
    assert v0.to_v1() == v1 and v1.to_v0() == v0
    assert v0 != v1 and v0.key() == v1.key()


@pytest.mark.parametrize("text", [EMPTY_RAW, EMPTY_DIR_V1, EMPTY_RAW.upper()])  # "B…" = base32 upper
def test_v1_base32_parse_roundtrip(text):
    cid = CID.parse(text)
    assert str(cid) == text.lower()
    assert CID.parse(cid.to_bytes()) == cid
    assert CID.parse(cid) is cid


def test_v1_other_multibases():
    cid = CID.parse(EMPTY_RAW)
    raw = cid.to_bytes()
    assert CID.parse("z" + b58encode(raw)) == cid
    assert CID.parse("f" + raw.hex()) == cid
    assert CID.parse("F" + raw.hex().upper()) == cid


def test_identity_cid():
    cid = CID(1, RAW, multihash(b"hi", IDENTITY))
    assert CID.parse(str(cid)) == cid
    assert cid.digest == b"hi"
    verify_block(cid, b"hi")
    with pytest.raises(InvalidBlock):
        verify_block(cid, b"ho")


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("", "empty"),
        ("hello", "unsupported multibase prefix 'h'"),
        ("Qm" + "0" * 44, "not a CIDv0"),  # '0' is not base58
        ("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3N", "unsupported multibase prefix 'Q'"),  # 45 chars
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk", "invalid base32"),  # one char short
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevte", "declares a 32-byte digest but has 27"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvykU", "mixed case"),
        ("b!!!!", "not a CID"),
        ("z" + b58encode(b"\x02\x55\x12\x20" + bytes(32)), "unsupported CID version 2"),
        ("z" + b58encode(b"\x01\x55\x12\x20" + bytes(31)), "32-byte digest"),
        ("z" + b58encode(b"\x01\x55\x12\x20" + bytes(33)), "declares a 32-byte digest but has 33"),
        ("z" + b58encode(b"\x01\x70"), "truncated varint"),
        ("z" + b58encode(b"\x81\x00"), "non-minimal"),
    ],
)
def test_bad_strings_raise_invalid_cid(value, fragment):
    with pytest.raises(InvalidCid, match=fragment):
        CID.parse(value)


def test_bad_binary_and_types():
    with pytest.raises(InvalidCid, match="not a CID"):
        CID.parse(b"")
    with pytest.raises(InvalidCid, match="wrong length"):
        CID.parse(bytes([0x12, 0x20]) + bytes(31))
    with pytest.raises(InvalidCid, match="must be a string or bytes"):
        CID.parse(42)  # type: ignore[arg-type]


def test_v0_rules():
    with pytest.raises(InvalidCid, match="CIDv0 must be dag-pb"):
        CID(0, RAW, multihash(b"x"))
    with pytest.raises(InvalidCid, match="CIDv0 must be dag-pb"):
        cid_of(b"x", RAW, 0)
    with pytest.raises(InvalidCid, match="version 3"):
        CID(3, RAW, multihash(b"x"))
    # a CIDv0 written as a multibase string is not a valid CID encoding
    v0 = CID.parse(EMPTY_DIR_V0)
    with pytest.raises(InvalidCid, match="base58btc without prefix"):
        CID.parse("z" + b58encode(v0.to_bytes()))


def test_verify_block():
    data = b"some block"
    cid = cid_of(data)
    verify_block(cid, data)
    verify_block(cid_of(data, DAG_PB, 0), data)
    with pytest.raises(InvalidBlock, match="does not hash to"):
        verify_block(cid, data + b"!")
    unknown = CID(1, RAW, encode_varint(0x1B) + bytes([32]) + bytes(32))  # keccak-256: not supported
    with pytest.raises(InvalidBlock, match="unsupported hash function 0x1b"):
        verify_block(unknown, data)


def test_varint_and_base58_codecs():
    for n in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        assert decode_varint(encode_varint(n)) == (n, len(encode_varint(n)))
    with pytest.raises(ValueError):
        decode_varint(b"\x80")
    assert b58decode(b58encode(b"\0\0abc")) == b"\0\0abc"
    with pytest.raises(ValueError):
        b58decode("0OIl")
