"""UnixFS importer/exporter: round trips, DAG shape, Tsize, codec-driven export, size checks."""

from __future__ import annotations

import io
import random
import tracemalloc

import pytest
import trio

from dainode.errors import InvalidBlock, StoreError
from dainode.store.cid import CID, DAG_PB, RAW, cid_of
from dainode.store.dagpb import T_DIRECTORY, T_FILE, PBLink, PBNode, UnixFSData, decode_node, decode_unixfs, encode_node, encode_unixfs
from dainode.store.unixfs import export_file, import_file, links_of, walk_dag

KIB = 1024
CHUNK = 256 * KIB


def _import(data: bytes, **kw):
    blocks: dict[CID, bytes] = {}
    result = import_file(io.BytesIO(data), lambda c, b: blocks.__setitem__(c, b), **kw)
    return result, blocks


async def _export(cid: CID, blocks: dict[CID, bytes], **kw) -> bytes:
    out = bytearray()

    async def get(c: CID) -> bytes:
        await trio.lowlevel.checkpoint()
        return blocks[c]

    n = await export_file(cid, get, out.extend, **kw)
    assert n == len(out)
    return bytes(out)


def _depth(cid: CID, blocks) -> int:
    if cid.codec == RAW:
        return 0
    kids = links_of(cid, blocks[cid])
    return 1 + max((_depth(k, blocks) for k in kids), default=0)


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * 1024 * KIB + 17])
async def test_round_trip_default_settings(size):
    data = random.Random(size).randbytes(size)
    result, blocks = _import(data)
    assert result.size == size and result.blocks == len(blocks)
    assert await _export(result.cid, blocks) == data
    assert await _export(result.cid, blocks, prefetch=4) == data


async def test_empty_and_single_chunk_files_are_their_raw_leaf():
    empty, blocks = _import(b"")
    assert str(empty.cid) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert blocks == {empty.cid: b""} and await _export(empty.cid, blocks) == b""
    one, _ = _import(b"x")
    assert one.cid == cid_of(b"x", RAW, 1)
    full, blocks = _import(bytes(CHUNK))
    assert full.cid == cid_of(bytes(CHUNK)) and len(blocks) == 1


async def test_cidv0_dag_pb_leaves():
    empty, blocks = _import(b"", cid_version=0, raw_leaves=False)
    assert str(empty.cid) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert await _export(empty.cid, blocks) == b""
    hello, _ = _import(b"hello world\n", cid_version=0, raw_leaves=False)
    assert str(hello.cid) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    data = random.Random(5).randbytes(70 * KIB)
    result, blocks = _import(data, cid_version=0, raw_leaves=False, chunk_size=KIB, max_links=4)
    assert result.cid.version == 0 and all(c.version == 0 and c.codec == DAG_PB for c in blocks)
    assert await _export(result.cid, blocks, prefetch=3) == data


async def test_deep_tree_shape_and_round_trip():
    n_chunks = 4**4 + 3  # 259 leaves, max 4 links: 5 levels of parents
    data = random.Random(7).randbytes(n_chunks * KIB - 5)
    result, blocks = _import(data, chunk_size=KIB, max_links=4)
    assert _depth(result.cid, blocks) == 5
    for cid, block in blocks.items():
        if cid.codec == DAG_PB:
            assert 1 <= len(decode_node(block).links) <= 4
    assert await _export(result.cid, blocks) == data
    assert await _export(result.cid, blocks, prefetch=8) == data
    walked = [c async for c in walk_dag(result.cid, _async_get(blocks))]
    assert set(walked) == set(blocks) and walked[0] == result.cid


def _async_get(blocks):
    async def get(c):
        return blocks[c]

    return get


def test_last_group_of_one_gets_its_own_parent_like_helia():
    # 5 leaves with max 4 links: ipfs-unixfs-importer's balanced layout makes [4] and [1]
    # parents and a root over both (py-libp2p 0.8.1 passes the lone leaf up instead)
    result, blocks = _import(bytes(5 * KIB), chunk_size=KIB, max_links=4)
    root = decode_node(blocks[result.cid])
    assert len(root.links) == 2
    second = decode_node(blocks[root.links[1].cid])
    assert len(second.links) == 1 and second.links[0].cid.codec == RAW
    # the library links the fifth leaf from the root directly
    from libp2p.bitswap.dag_pb import balanced_layout

    leaves = [cid_of(bytes(KIB))] * 5
    _, lib_root, _ = balanced_layout([(c.to_bytes(), bytes(KIB), KIB) for c in leaves], max_links=4)
    assert decode_node(lib_root).links[1].cid == leaves[4]


def test_tsize_is_the_serialized_size_of_the_child_dag():
    data = bytes(CHUNK + 1)
    result, blocks = _import(data)
    root = decode_node(blocks[result.cid])
    assert [link.tsize for link in root.links] == [CHUNK, 1]  # raw leaves: their byte length
    assert [link.name for link in root.links] == ["", ""]
    u = decode_unixfs(root.data)
    assert (u.type, u.filesize, u.blocksizes) == (T_FILE, CHUNK + 1, [CHUNK, 1])
    # the root CID @helia/unixfs 8.0.5 gives for these bytes (256 KiB chunks, raw leaves, CIDv1);
    # tests/integration/test_unixfs_helia_cid.py checks against a live Helia for many inputs
    assert str(result.cid) == "bafybeigllfqgfpqydppr6cmv56g7ax4wyhruzswvcefv6j5kj77nzttfki"
    assert result.dag_size == len(blocks[result.cid]) + CHUNK + 1
    # intermediate nodes: Tsize = block + all Tsizes below
    deep, dblocks = _import(bytes(9 * KIB), chunk_size=KIB, max_links=4)
    top = decode_node(dblocks[deep.cid])
    for link in top.links:
        child = decode_node(dblocks[link.cid])
        assert link.tsize == len(dblocks[link.cid]) + sum(grand.tsize for grand in child.links)


def test_py_libp2p_0_8_1_writes_tsize_0_for_raw_leaves():
    """The library bug the importer avoids: same leaves, Tsize 0 in links, another root CID."""
    from libp2p.bitswap.dag_pb import balanced_layout

    data = bytes(CHUNK + 1)
    ours, blocks = _import(data)
    leaves = [c for c in blocks if c.codec == RAW]
    leaf_triples = [(c.to_bytes(), None, len(blocks[c])) for c in leaves]  # as libp2p.bitswap.dag does
    root_bytes, root_block, _ = balanced_layout(leaf_triples, max_links=1024)
    theirs = decode_node(root_block)
    assert [link.cid for link in theirs.links] == leaves  # same leaves
    assert [link.tsize for link in theirs.links] == [0, 0]
    assert CID.parse(root_bytes) != ours.cid


async def test_export_decides_raw_from_the_cid_not_the_bytes():
    # file content that is itself a valid dag-pb UnixFS file node
    content = encode_node(PBNode((), encode_unixfs(UnixFSData(T_FILE, b"hello", 5))))
    from libp2p.bitswap.dag_pb import is_file_node

    assert is_file_node(content)  # byte sniffing (py-libp2p 0.8.1 fetch_file) would unwrap it to b"hello"
    result, blocks = _import(content)
    assert result.cid.codec == RAW
    assert await _export(result.cid, blocks) == content
    # and the same bytes addressed as dag-pb are a UnixFS file with content b"hello"
    as_pb = cid_of(content, DAG_PB)
    assert await _export(as_pb, {as_pb: content}) == b"hello"


async def test_export_checks_sizes():
    leaf = b"abc"
    lc = cid_of(leaf)
    lying = encode_node(PBNode((PBLink(lc, "", 3),), encode_unixfs(UnixFSData(T_FILE, None, 4, [4]))))
    rc = cid_of(lying, DAG_PB)
    with pytest.raises(InvalidBlock, match="has 3 bytes, its parent says 4"):
        await _export(rc, {rc: lying, lc: leaf})
    bad_total = encode_node(PBNode((PBLink(lc, "", 3),), encode_unixfs(UnixFSData(T_FILE, None, 9, [3]))))
    bc = cid_of(bad_total, DAG_PB)
    with pytest.raises(InvalidBlock, match="filesize 9"):
        await _export(bc, {bc: bad_total, lc: leaf})
    missing_sizes = encode_node(PBNode((PBLink(lc, "", 3),), encode_unixfs(UnixFSData(T_FILE, None, 3, []))))
    mc = cid_of(missing_sizes, DAG_PB)
    with pytest.raises(InvalidBlock, match="1 links but 0 blocksizes"):
        await _export(mc, {mc: missing_sizes, lc: leaf})


async def test_export_refuses_directories_and_other_codecs():
    d = encode_node(PBNode((), encode_unixfs(UnixFSData(T_DIRECTORY))))
    dc = cid_of(d, DAG_PB, 0)
    with pytest.raises(StoreError, match="UnixFS directory, not a file"):
        await _export(dc, {dc: d})
    cbor = CID(1, 0x71, cid_of(b"x").multihash)
    with pytest.raises(StoreError, match="codec 0x71"):
        await _export(cbor, {cbor: b"x"})
    with pytest.raises(StoreError, match="codec 0x71"):
        links_of(cbor, b"x")


async def test_prefetch_runs_fetches_concurrently_and_writes_in_order():
    data = random.Random(3).randbytes(40 * KIB)
    result, blocks = _import(data, chunk_size=KIB)
    in_flight = 0
    peak = 0

    async def slow_get(c):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await trio.sleep(0.001 * random.random())
        in_flight -= 1
        return blocks[c]

    out = bytearray()

    async def awrite(b):
        await trio.lowlevel.checkpoint()
        out.extend(b)

    await export_file(result.cid, slow_get, awrite, prefetch=6)
    assert bytes(out) == data
    assert 2 <= peak <= 6 + 1  # the window (+ the node being descended into)


class _Trickle(io.RawIOBase):
    """Returns at most 1000 bytes per read (like a pipe); with `data=None`, random bytes never held whole."""

    def __init__(self, size: int, data: bytes | None = None):
        self.left = size
        self.pos = 0
        self.data = data
        self.rng = random.Random(size)

    def readable(self):
        return True

    def read(self, n=-1):
        n = min(self.left, 1000 if n < 0 else min(n, 1000))
        self.left -= n
        if self.data is None:
            return self.rng.randbytes(n)
        self.pos += n
        return self.data[self.pos - n : self.pos]


def test_short_reads_give_the_same_cid():
    size = 5 * CHUNK + 3
    data = random.Random(1).randbytes(size)
    a = import_file(io.BytesIO(data), lambda c, b: None)
    b = import_file(_Trickle(size, data), lambda c, b: None)
    assert a.cid == b.cid and b.size == size


def test_import_memory_is_bounded_by_the_chunk_not_the_file():
    size = 24 * 1024 * KIB
    tracemalloc.start()
    try:
        result = import_file(_Trickle(size), lambda c, b: None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == size
    assert peak < 3 * CHUNK, peak  # the chunk being read (parts + joined) and little else


def test_import_parameter_errors():
    for kw, fragment in [
        (dict(chunk_size=0), "chunk size"),
        (dict(chunk_size=2 * 1024 * KIB), "chunk size"),
        (dict(max_links=1), "max_links"),
        (dict(cid_version=2), "CID version"),
    ]:
        with pytest.raises(StoreError, match=fragment):
            import_file(io.BytesIO(b"x"), lambda c, b: None, **kw)


def test_leaves_are_not_duplicated_in_memory_by_put():
    # put sees each block once per occurrence; identical chunks share one CID
    result, blocks = _import(bytes(4 * KIB), chunk_size=KIB)
    assert result.blocks == 5 and len(blocks) == 2
