"""dag-pb (PBNode/PBLink) and UnixFS `Data` protobuf encode/decode, byte-exact per the IPLD and UnixFS specs."""

from __future__ import annotations

from dataclasses import dataclass, field

from dainode.errors import InvalidBlock, InvalidCid
from dainode.store.cid import CID, decode_varint, encode_varint

# UnixFS Data.DataType
T_RAW = 0
T_DIRECTORY = 1
T_FILE = 2
T_METADATA = 3
T_SYMLINK = 4
T_HAMT_SHARD = 5
TYPE_NAMES = {0: "raw", 1: "directory", 2: "file", 3: "metadata", 4: "symlink", 5: "hamt-sharded-directory"}

_VARINT = 0
_I64 = 1
_LEN = 2
_I32 = 5
_MAX_U64 = 2**64 - 1


@dataclass(frozen=True)
class PBLink:
    cid: CID
    name: str | None = ""
    tsize: int | None = None


@dataclass(frozen=True)
class PBNode:
    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


@dataclass
class UnixFSData:
    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: bytes | None = None  # raw UnixTime message; kept, not interpreted


# --- protobuf primitives -----------------------------------------------------------


def _key(field_no: int, wire: int) -> bytes:
    return encode_varint(field_no << 3 | wire)


def _len_field(field_no: int, payload: bytes) -> bytes:
    return _key(field_no, _LEN) + encode_varint(len(payload)) + payload


def _fields(buf: bytes):
    """Yield (field number, wire type, value) where value is int for varints, bytes for LEN."""
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = decode_varint(buf, pos)
        field_no, wire = key >> 3, key & 7
        if field_no == 0:
            raise ValueError("protobuf field number 0")
        if wire == _VARINT:
            value, pos = _read_varint64(buf, pos)
        elif wire == _LEN:
            length, pos = decode_varint(buf, pos)
            if pos + length > n:
                raise ValueError("length-delimited field runs past the end")
            value = buf[pos : pos + length]
            pos += length
        elif wire == _I64:
            if pos + 8 > n:
                raise ValueError("truncated fixed64")
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _I32:
            if pos + 4 > n:
                raise ValueError("truncated fixed32")
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field_no, wire, value


def _read_varint64(buf: bytes, pos: int) -> tuple[int, int]:
    # protobuf varints may be 10 bytes (uint64); the multiformats decoder stops at 9
    result = 0
    shift = 0
    for i in range(10):
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result > _MAX_U64:
                raise ValueError("varint exceeds 64 bits")
            return result, pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")


# --- dag-pb --------------------------------------------------------------------------


def encode_link(link: PBLink) -> bytes:
    out = _len_field(1, link.cid.to_bytes())
    if link.name is not None:
        out += _len_field(2, link.name.encode("utf-8"))
    if link.tsize is not None:
        if not 0 <= link.tsize < 2**63:
            raise ValueError(f"Tsize {link.tsize} out of range")
        out += _key(3, _VARINT) + encode_varint(link.tsize)
    return out


def encode_node(node: PBNode) -> bytes:
    """Canonical dag-pb bytes: every Links(2) entry first, in order, then Data(1) if present."""
    parts = [_len_field(2, encode_link(link)) for link in node.links]
    if node.data is not None:
        parts.append(_len_field(1, bytes(node.data)))
    return b"".join(parts)


def _decode_link(buf: bytes) -> PBLink:
    cid = None
    name = None
    tsize = None
    last = 0
    for field_no, wire, value in _fields(buf):
        # the spec requires Hash, Name, Tsize in that order, each at most once
        if field_no <= last:
            raise ValueError("PBLink fields out of order or repeated")
        last = field_no
        if field_no == 1 and wire == _LEN:
            try:
                cid = CID.parse(bytes(value))
            except InvalidCid as e:
                raise ValueError(f"PBLink Hash is not a CID: {e}") from None
        elif field_no == 2 and wire == _LEN:
            try:
                name = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("PBLink Name is not UTF-8") from None
        elif field_no == 3 and wire == _VARINT:
            if value >= 2**63:
                raise ValueError("PBLink Tsize too large")
            tsize = value
        else:
            raise ValueError(f"unexpected PBLink field {field_no} (wire type {wire})")
    if cid is None:
        raise ValueError("PBLink without Hash")
    return PBLink(cid, name, tsize)


def decode_node(block: bytes) -> PBNode:
    """Strict dag-pb decode (spec: only Links then at most one Data; nothing else). InvalidBlock if malformed."""
    links: list[PBLink] = []
    data = None
    try:
        for field_no, wire, value in _fields(bytes(block)):
            if field_no == 2 and wire == _LEN:
                if data is not None:
                    raise ValueError("PBNode Links after Data")
                links.append(_decode_link(value))
            elif field_no == 1 and wire == _LEN:
                if data is not None:
                    raise ValueError("PBNode has Data twice")
                data = bytes(value)
            else:
                raise ValueError(f"unexpected PBNode field {field_no} (wire type {wire})")
    except ValueError as e:
        raise InvalidBlock(f"not a valid dag-pb block: {e}") from None
    return PBNode(tuple(links), data)


# --- UnixFS Data ---------------------------------------------------------------------


def encode_unixfs(u: UnixFSData) -> bytes:
    """UnixFS `Data` message, fields in number order as js-ipfs-unixfs and go-unixfs write them."""
    out = _key(1, _VARINT) + encode_varint(u.type)
    if u.data:  # an empty Data is omitted, as the reference importers do
        out += _len_field(2, u.data)
    if u.filesize is not None:
        out += _key(3, _VARINT) + encode_varint(u.filesize)
    for size in u.blocksizes:  # proto2 repeated, not packed
        out += _key(4, _VARINT) + encode_varint(size)
    if u.hash_type is not None:
        out += _key(5, _VARINT) + encode_varint(u.hash_type)
    if u.fanout is not None:
        out += _key(6, _VARINT) + encode_varint(u.fanout)
    if u.mode is not None:
        out += _key(7, _VARINT) + encode_varint(u.mode)
    if u.mtime is not None:
        out += _len_field(8, u.mtime)
    return out


def decode_unixfs(buf: bytes) -> UnixFSData:
    """Decode a UnixFS `Data` message; InvalidBlock if malformed or without Type."""
    u = UnixFSData(type=-1)
    try:
        for field_no, wire, value in _fields(bytes(buf)):
            if field_no == 1 and wire == _VARINT:
                u.type = value
            elif field_no == 2 and wire == _LEN:
                u.data = bytes(value)
            elif field_no == 3 and wire == _VARINT:
                u.filesize = value
            elif field_no == 4 and wire == _VARINT:
                u.blocksizes.append(value)
            elif field_no == 4 and wire == _LEN:  # packed encoding is valid protobuf too
                pos = 0
                while pos < len(value):
                    size, pos = _read_varint64(value, pos)
                    u.blocksizes.append(size)
            elif field_no == 5 and wire == _VARINT:
                u.hash_type = value
            elif field_no == 6 and wire == _VARINT:
                u.fanout = value
            elif field_no == 7 and wire == _VARINT:
                u.mode = value
            elif field_no == 8 and wire == _LEN:
                u.mtime = bytes(value)
            # other fields: ignored, as protobuf decoders do
    except ValueError as e:
        raise InvalidBlock(f"not a valid UnixFS Data message: {e}") from None
    if u.type not in TYPE_NAMES:
        raise InvalidBlock("UnixFS Data message without a valid Type" if u.type < 0 else f"unknown UnixFS type {u.type}")
    return u
