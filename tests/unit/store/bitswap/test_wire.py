"""The bitswap wire codec: framing, size limits, CID prefixes, both message dialects."""

from __future__ import annotations

import hashlib

import pytest

from dainode.errors import ProtocolError
from dainode.store.bitswap import wire
from dainode.store.cid import CID, DAG_PB, RAW, cid_of


class ChunkedStream:
    """A fake stream that returns its bytes in small pieces, like a real muxed stream may."""

    def __init__(self, data: bytes, piece: int = 3):
        self.data = data
        self.piece = piece

    async def read(self, n: int) -> bytes:
        out, self.data = self.data[: min(n, self.piece)], self.data[min(n, self.piece):]
        return out


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**21, 2**35])
def test_uvarint_roundtrip(n):
    enc = wire.encode_uvarint(n)
    assert wire.decode_uvarint(enc) == (n, len(enc))


def test_uvarint_truncated():
    with pytest.raises(ProtocolError):
        wire.decode_uvarint(b"\x80\x80")


async def test_reader_reassembles_frames_from_small_reads():
    msgs = [b"", b"a", b"x" * 1000]
    reader = wire.MessageReader(ChunkedStream(b"".join(wire.frame(m) for m in msgs)))
    assert [await reader.read() for _ in msgs] == msgs
    assert await reader.read() is None


async def test_reader_refuses_oversized_frame_before_reading_it():
    header = wire.encode_uvarint(wire.MAX_MESSAGE_SIZE + 1)
    reader = wire.MessageReader(ChunkedStream(header))  # no body at all: must fail on the length
    with pytest.raises(ProtocolError, match="limit"):
        await reader.read()


async def test_reader_truncated_body():
    reader = wire.MessageReader(ChunkedStream(wire.encode_uvarint(10) + b"abc"))
    with pytest.raises(ProtocolError, match="inside a message"):
        await reader.read()


def test_frame_refuses_oversized_message():
    with pytest.raises(ProtocolError):
        wire.frame(b"x" * (wire.MAX_MESSAGE_SIZE + 1))


@pytest.mark.parametrize("version,codec", [(1, RAW), (1, DAG_PB), (0, DAG_PB)])
def test_prefix_gives_back_the_cid(version, codec):
    data = b"some block bytes"
    cid = cid_of(data, codec=codec, version=version)
    parts = wire.parse_cid_bytes(cid.to_bytes())
    assert parts.to_bytes() == cid.to_bytes() and parts.multihash == cid.multihash
    assert wire.cid_for_block(parts.prefix, data).to_bytes() == cid.to_bytes()
    # tampered bytes give another CID
    assert wire.cid_for_block(parts.prefix, data + b"!").to_bytes() != cid.to_bytes()


def test_v100_block_without_prefix_is_cidv0():
    data = b"\x0a\x02\x08\x01"
    assert wire.cid_for_block(None, data).multihash == b"\x12\x20" + hashlib.sha256(data).digest()


def test_unsupported_hash_in_prefix():
    prefix = b"".join(wire.encode_uvarint(x) for x in (1, RAW, 0x1B, 32))  # keccak-256: not supported
    with pytest.raises(ProtocolError, match="unsupported multihash"):
        wire.cid_for_block(prefix, b"x")


def test_message_roundtrip_v120():
    a, b = cid_of(b"a"), cid_of(b"b", codec=DAG_PB, version=0)
    payload = wire.encode(
        entries=[wire.WantEntry(a.to_bytes(), want_have=True, send_dont_have=True), wire.WantEntry(b.to_bytes(), cancel=True)],
        blocks=[(wire.parse_cid_bytes(a.to_bytes()), b"a")],
        presences=[(b.to_bytes(), False)],
        full=True,
    )
    msg = wire.decode(payload)
    assert msg.full
    assert [(e.cid, e.want_have, e.send_dont_have, e.cancel) for e in msg.entries] == [
        (a.to_bytes(), True, True, False),
        (b.to_bytes(), False, False, True),
    ]
    assert len(msg.blocks) == 1 and wire.cid_for_block(*msg.blocks[0]).to_bytes() == a.to_bytes()
    assert msg.presences == [(b.to_bytes(), False)]


def test_message_v100_dialect_has_bare_blocks_and_no_presences():
    a = cid_of(b"a", codec=DAG_PB, version=0)
    payload = wire.encode(blocks=[(wire.parse_cid_bytes(a.to_bytes()), b"a")], presences=[(a.to_bytes(), True)], protocol=wire.PROTOCOL_100)
    msg = wire.decode(payload)
    assert msg.blocks == [(None, b"a")] and msg.presences == []


def test_garbage_message():
    with pytest.raises(ProtocolError):
        wire.decode(b"\xff\xff\xff")


def test_cid_class_agrees():
    c = CID.parse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
    assert wire.parse_cid_bytes(c.to_bytes()).multihash == c.multihash


def test_every_hash_the_store_verifies_is_accepted_in_a_block_prefix():
    from dainode.store.cid import BLAKE2B_256, CID, SHA2_256, SHA2_512, SHA3_256, encode_varint, multihash, verify_block

    data = b"one table for the store and bitswap"
    for code in (SHA2_256, SHA2_512, SHA3_256, BLAKE2B_256):
        mh = multihash(data, code)
        cid = CID(1, 0x55, mh)
        verify_block(cid, data)  # the store accepts it ...
        length = len(mh) - len(encode_varint(code)) - 1
        prefix = encode_varint(1) + encode_varint(0x55) + encode_varint(code) + encode_varint(length)
        parts = wire.cid_for_block(prefix, data)  # ... and so does bitswap
        assert (parts.mh_code, parts.digest) == (code, mh[-length:])
