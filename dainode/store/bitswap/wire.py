"""Bitswap wire format: uvarint-framed protobuf messages, CID prefixes, block hashing."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from libp2p.bitswap.pb.bitswap_pb2 import Message

from dainode.errors import ProtocolError
from dainode.store.cid import decode_varint, encode_varint, hash_digest

PROTOCOL_120 = "/ipfs/bitswap/1.2.0"
PROTOCOL_110 = "/ipfs/bitswap/1.1.0"
PROTOCOL_100 = "/ipfs/bitswap/1.0.0"
PROTOCOLS = (PROTOCOL_120, PROTOCOL_110, PROTOCOL_100)  # preference order when we open a stream

#: Largest message we accept or send (the spec's and go-bitswap's limit).
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: Largest block (the spec requires 2 MiB; py-libp2p 0.8.1 refuses anything over 512 KiB).
MAX_BLOCK_SIZE = 2 * 1024 * 1024

DAG_PB = 0x70
SHA2_256 = 0x12

IDENTITY = 0x00


# --- uvarints ---------------------------------------------------------------------------


# The unsigned-varint codec is the multiformats one (dainode.store.cid); the wire only maps its
# errors to ProtocolError, which is what a peer's bad frame is.
encode_uvarint = encode_varint


def decode_uvarint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """(value, position after it); ProtocolError if truncated, non-minimal or longer than 9 bytes."""
    try:
        return decode_varint(buf, pos)
    except ValueError as exc:
        raise ProtocolError(f"bad uvarint: {exc}") from None


def frame(payload: bytes) -> bytes:
    """One message as it travels: uvarint length, then the protobuf bytes."""
    if len(payload) > MAX_MESSAGE_SIZE:
        raise ProtocolError(f"bitswap message of {len(payload)} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit")
    return encode_uvarint(len(payload)) + payload


class MessageReader:
    """Reads uvarint-framed messages from a libp2p stream, refusing frames over `max_size`."""

    def __init__(self, stream, max_size: int = MAX_MESSAGE_SIZE, read_size: int = 256 * 1024):
        self.stream = stream
        self.max_size = max_size
        self.read_size = read_size
        self._buf = bytearray()

    async def _fill(self) -> bool:
        chunk = await self.stream.read(self.read_size)
        if not chunk:
            return False
        self._buf += chunk
        return True

    async def read(self) -> bytes | None:
        """The next message's bytes, or None at a clean end of stream."""
        while True:
            try:
                length, start = decode_uvarint(self._buf)
                break
            except ProtocolError:
                if len(self._buf) >= 9:
                    raise
            if not await self._fill():
                if self._buf:
                    raise ProtocolError("stream ended inside a message length")
                return None
        if length > self.max_size:
            raise ProtocolError(f"peer sent a {length}-byte bitswap message; the limit is {self.max_size}")
        end = start + length
        while len(self._buf) < end:
            if not await self._fill():
                raise ProtocolError("stream ended inside a message")
        payload = bytes(self._buf[start:end])
        del self._buf[:end]
        return payload


# --- CIDs on the wire ----------------------------------------------------------------------


@dataclass(frozen=True)
class CidParts:
    """The parts of a binary CID that the wire format needs (no dependency on the CID class)."""

    version: int
    codec: int
    mh_code: int
    digest: bytes

    @property
    def multihash(self) -> bytes:
        return encode_uvarint(self.mh_code) + encode_uvarint(len(self.digest)) + self.digest

    def to_bytes(self) -> bytes:
        if self.version == 0:
            return self.multihash
        return encode_uvarint(1) + encode_uvarint(self.codec) + self.multihash

    @property
    def prefix(self) -> bytes:
        """Bitswap 1.1 block prefix: version, codec, multihash code, digest length (all uvarints)."""
        return b"".join(encode_uvarint(x) for x in (self.version, self.codec, self.mh_code, len(self.digest)))


def _split_multihash(buf: bytes, pos: int) -> tuple[int, bytes]:
    code, pos = decode_uvarint(buf, pos)
    length, pos = decode_uvarint(buf, pos)
    digest = bytes(buf[pos : pos + length])
    if len(digest) != length or pos + length != len(buf):
        raise ProtocolError("malformed multihash in CID")
    return code, digest


def parse_cid_bytes(raw: bytes) -> CidParts:
    """Binary CIDv0 (a bare sha2-256 multihash) or CIDv1; ProtocolError if malformed."""
    raw = bytes(raw)
    if len(raw) == 34 and raw[0] == SHA2_256 and raw[1] == 32:
        return CidParts(0, DAG_PB, SHA2_256, raw[2:])
    version, pos = decode_uvarint(raw, 0)
    if version != 1:
        raise ProtocolError(f"unsupported CID version {version}")
    codec, pos = decode_uvarint(raw, pos)
    code, digest = _split_multihash(raw, pos)
    return CidParts(1, codec, code, digest)


def cid_for_block(prefix: bytes | None, data: bytes) -> CidParts:
    """The CID a received block claims to be: its prefix's settings applied to the hash of its data.

    A 1.0.0 block has no prefix and is a CIDv0 (dag-pb, sha2-256). ProtocolError for a
    malformed prefix or an unsupported hash function.
    """
    if prefix is None:
        version, codec, code, length = 0, DAG_PB, SHA2_256, 32
    else:
        version, pos = decode_uvarint(prefix, 0)
        codec, pos = decode_uvarint(prefix, pos)
        code, pos = decode_uvarint(prefix, pos)
        length, pos = decode_uvarint(prefix, pos)
        if pos != len(prefix):
            raise ProtocolError("trailing bytes in block prefix")
    try:
        digest = hash_digest(code, data)  # the store's table: what verifies in the store travels over bitswap
    except ValueError:
        raise ProtocolError(f"unsupported multihash code 0x{code:x} in block prefix") from None
    if code != IDENTITY:
        if length > len(digest):
            raise ProtocolError("block prefix asks for a longer digest than the hash gives")
        digest = digest[:length]
    if version == 0 and (codec != DAG_PB or code != SHA2_256 or length != 32):
        raise ProtocolError("CIDv0 prefix must be dag-pb sha2-256")
    return CidParts(version, codec, code, digest)


# --- messages ------------------------------------------------------------------------------


@dataclass
class WantEntry:
    cid: bytes  # binary CID
    want_have: bool = False  # False: want-block
    send_dont_have: bool = False
    cancel: bool = False
    priority: int = 1


@dataclass
class Decoded:
    entries: list[WantEntry] = field(default_factory=list)
    full: bool = False
    blocks: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (prefix or None for 1.0.0, data)
    presences: list[tuple[bytes, bool]] = field(default_factory=list)  # (binary CID, have?)


def decode(payload: bytes) -> Decoded:
    try:
        msg = Message.FromString(payload)
    except DecodeError as exc:
        raise ProtocolError(f"undecodable bitswap message: {exc}") from None
    out = Decoded(full=msg.wantlist.full)
    for e in msg.wantlist.entries:
        out.entries.append(
            WantEntry(e.block, e.wantType == Message.Wantlist.Have, e.sendDontHave, e.cancel, e.priority)
        )
    for data in msg.blocks:
        out.blocks.append((None, data))
    for b in msg.payload:
        out.blocks.append((b.prefix, b.data))
    for p in msg.blockPresences:
        out.presences.append((p.cid, p.type == Message.Have))
    return out


def encode(
    *,
    entries: list[WantEntry] = (),  # type: ignore[assignment]
    blocks: list[tuple[CidParts, bytes]] = (),  # type: ignore[assignment]
    presences: list[tuple[bytes, bool]] = (),  # type: ignore[assignment]
    protocol: str = PROTOCOL_120,
    full: bool = False,
) -> bytes:
    """Protobuf bytes for one message in the dialect of `protocol` (1.0.0: no prefixes, no presences)."""
    msg = Message()
    v12 = protocol == PROTOCOL_120
    for e in entries:
        entry = msg.wantlist.entries.add()
        entry.block = e.cid
        entry.priority = e.priority
        entry.cancel = e.cancel
        if v12:
            entry.wantType = Message.Wantlist.Have if e.want_have else Message.Wantlist.Block
            entry.sendDontHave = e.send_dont_have
    if entries or full:
        msg.wantlist.full = full
    for cid, data in blocks:
        if protocol == PROTOCOL_100:
            msg.blocks.append(data)
        else:
            msg.payload.add(prefix=cid.prefix, data=data)
    if v12:
        for cid, have in presences:
            msg.blockPresences.add(cid=cid, type=Message.Have if have else Message.DontHave)
    return msg.SerializeToString()
