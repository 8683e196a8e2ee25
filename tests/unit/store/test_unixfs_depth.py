"""The UnixFS exporter is iterative and refuses DAGs deeper than its limit (a peer can serve any DAG)."""

from __future__ import annotations

import pytest
import trio

from dainode.errors import StoreError
from dainode.limits import MAX_DAG_DEPTH
from dainode.store.unixfs import export_file
from tests.unit.store.deep_dag import deep_chain


async def _export(root, blocks, **kw):
    fetched = []
    out = bytearray()

    async def get(c):
        await trio.lowlevel.checkpoint()
        fetched.append(c)
        return blocks[c]

    n = await export_file(root, get, out.extend, **kw)
    return n, bytes(out), fetched


@pytest.mark.parametrize("prefetch", [1, 8])
async def test_a_25000_deep_chain_is_refused_early(prefetch):
    root, blocks = deep_chain(25_000)
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError, match="nested deeper than")) if prefetch > 1 else pytest.raises(
        StoreError, match=f"nested deeper than {MAX_DAG_DEPTH} levels"
    ):
        await _export(root, blocks, prefetch=prefetch)


async def test_the_limit_is_exact_and_iteration_handles_deep_trees_without_recursion():
    for depth in (MAX_DAG_DEPTH, 1):
        root, blocks = deep_chain(depth)
        n, data, fetched = await _export(root, blocks)
        assert (n, data, len(fetched)) == (1, b"x", depth + 1)
    root, blocks = deep_chain(MAX_DAG_DEPTH + 1)
    with pytest.raises(StoreError, match="nested deeper"):
        await _export(root, blocks)
    # far deeper than Python's recursion limit, allowed explicitly: no RecursionError, no crash
    root, blocks = deep_chain(5_000)
    n, data, _ = await _export(root, blocks, max_depth=10_000)
    assert data == b"x"


async def test_walk_dag_refuses_deep_chains_too():
    from dainode.store.unixfs import walk_dag

    async def get(c):
        return blocks[c]

    root, blocks = deep_chain(MAX_DAG_DEPTH)
    assert len([c async for c in walk_dag(root, get)]) == MAX_DAG_DEPTH + 1
    root, blocks = deep_chain(25_000)
    walked = []
    with pytest.raises(StoreError, match=f"nested deeper than {MAX_DAG_DEPTH} levels"):
        async for c in walk_dag(root, get):
            walked.append(c)
    assert len(walked) == MAX_DAG_DEPTH + 1
