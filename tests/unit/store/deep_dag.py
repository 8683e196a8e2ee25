"""A hostile UnixFS file for tests: a chain of tiny dag-pb nodes, each linking the next, N levels deep."""

from __future__ import annotations

from dainode.store.cid import CID, DAG_PB, RAW, cid_of
from dainode.store.dagpb import T_FILE, PBLink, PBNode, UnixFSData, encode_node, encode_unixfs


def deep_chain(depth: int, leaf: bytes = b"x") -> tuple[CID, dict[CID, bytes]]:
    """Root CID and blocks of a `depth`-level chain whose size claims are all consistent (only depth is wrong)."""
    blocks: dict[CID, bytes] = {}
    cid = cid_of(leaf, RAW, 1)
    blocks[cid] = leaf
    tsize = len(leaf)
    data = encode_unixfs(UnixFSData(T_FILE, None, len(leaf), [len(leaf)]))
    for _ in range(depth):
        block = encode_node(PBNode((PBLink(cid, "", tsize),), data))
        cid = cid_of(block, DAG_PB, 1)
        blocks[cid] = block
        tsize += len(block)
    return cid, blocks
