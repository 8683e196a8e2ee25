"""dag-pb and UnixFS Data codecs against known vectors and the spec's strictness rules."""

from __future__ import annotations

import pytest

from dainode.errors import InvalidBlock
from dainode.store.cid import DAG_PB, RAW, cid_of
from dainode.store.dagpb import (
    T_DIRECTORY,
    T_FILE,
    PBLink,
    PBNode,
    UnixFSData,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)


def test_empty_directory_vector():
    data = encode_unixfs(UnixFSData(T_DIRECTORY))
    assert data == b"\x08\x01"
    block = encode_node(PBNode((), data))
    assert block == b"\x0a\x02\x08\x01"
    assert str(cid_of(block, DAG_PB, 0)) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    assert str(cid_of(block, DAG_PB, 1)) == "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    assert decode_node(block) == PBNode((), b"\x08\x01")
    assert decode_unixfs(b"\x08\x01").type == T_DIRECTORY


def test_empty_file_and_hello_world_vectors():
    # `ipfs add` of an empty file and of "hello world\n" with CIDv0 (dag-pb leaves)
    empty = encode_node(PBNode((), encode_unixfs(UnixFSData(T_FILE, b"", 0))))
    assert empty == b"\x0a\x04\x08\x02\x18\x00"
    assert str(cid_of(empty, DAG_PB, 0)) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    hello = encode_node(PBNode((), encode_unixfs(UnixFSData(T_FILE, b"hello world\n", 12))))
    assert str(cid_of(hello, DAG_PB, 0)) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def test_links_are_serialized_before_data():
    child = cid_of(b"leaf")
    node = PBNode((PBLink(child, "", 4), PBLink(child, "x", None)), b"\x08\x02")
    block = encode_node(node)
    assert block[0] == 0x12  # field 2 (Links), wire type 2
    assert block.endswith(b"\x0a\x02\x08\x02")  # field 1 (Data) last
    link = b"\x0a" + bytes([len(child.to_bytes())]) + child.to_bytes() + b"\x12\x00" + b"\x18\x04"
    assert block.startswith(b"\x12" + bytes([len(link)]) + link)
    assert decode_node(block) == node


def test_link_without_name_or_tsize_round_trips_exactly():
    node = PBNode((PBLink(cid_of(b"a"), None, None),), None)
    block = encode_node(node)
    assert decode_node(block) == node
    assert encode_node(decode_node(block)) == block


@pytest.mark.parametrize(
    "block, fragment",
    [
        (b"\x0a\x02\x08\x01" + encode_node(PBNode((PBLink(cid_of(b"a"), "", 1),))), "Links after Data"),
        (b"\x0a\x00\x0a\x00", "Data twice"),
        (b"\x1a\x00", "unexpected PBNode field 3"),
        (b"\x08\x01", "unexpected PBNode field 1 \\(wire type 0\\)"),
        (b"\x12\x02\x12\x00", "without Hash"),
        (b"\x12\x03\x0a\x01\x00", "Hash is not a CID"),
        (b"\x0a\x05\x08", "runs past the end"),
        (b"\x0a", "truncated varint"),
    ],
)
def test_decoder_rejects_non_canonical_or_malformed(block, fragment):
    with pytest.raises(InvalidBlock, match=fragment):
        decode_node(block)


def test_link_fields_out_of_order_are_rejected():
    cid = cid_of(b"a").to_bytes()
    link = b"\x12\x00" + b"\x0a" + bytes([len(cid)]) + cid  # Name before Hash
    with pytest.raises(InvalidBlock, match="out of order"):
        decode_node(b"\x12" + bytes([len(link)]) + link)


def test_unixfs_file_with_blocksizes():
    u = UnixFSData(T_FILE, None, 262145, [262144, 1])
    raw = encode_unixfs(u)
    # Type, filesize, then one unpacked varint per blocksize (as js/go write them)
    assert raw == b"\x08\x02\x18\x81\x80\x10\x20\x80\x80\x10\x20\x01"
    assert decode_unixfs(raw) == u
    # the packed form is valid protobuf and decodes the same
    assert decode_unixfs(b"\x08\x02\x18\x81\x80\x10\x22\x04\x80\x80\x10\x01").blocksizes == [262144, 1]


def test_unixfs_rejects_missing_or_unknown_type():
    with pytest.raises(InvalidBlock, match="without a valid Type"):
        decode_unixfs(b"\x18\x00")
    with pytest.raises(InvalidBlock, match="unknown UnixFS type 9"):
        decode_unixfs(b"\x08\x09")
    with pytest.raises(InvalidBlock, match="not a valid UnixFS"):
        decode_unixfs(b"\x08")


def test_raw_cid_is_not_a_dag_pb_cid():
    assert cid_of(b"x", RAW).codec == RAW
