"""StoreService without a network: add (path or stream), options, cat ranges and limits, pins, gc."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace

import pytest
import trio

from dainode.config import Config
from dainode.errors import InvalidCid, StoreError
from dainode.store.cid import CID
from dainode.store.service import StoreService


class FakeHost:
    """Enough of a libp2p host for the bitswap engine to start (no peers)."""

    def set_stream_handler(self, protocol, handler):
        pass

    def get_network(self):
        return SimpleNamespace(connections={})


@pytest.fixture
async def store(tmp_path):
    service = StoreService(Config(), SimpleNamespace(host=FakeHost()), tmp_path / "node")  # files to add live beside it
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield service
        nursery.cancel_scope.cancel()


async def test_add_from_stream_and_path_give_the_same_cid(store, tmp_path):
    data = os.urandom(600_000)
    (tmp_path / "f.bin").write_bytes(data)
    by_path = await store.add(tmp_path / "f.bin")
    by_stream = await store.add(io.BytesIO(data))
    assert by_path["cid"] == by_stream["cid"] and by_path["size"] == 600_000 and by_path["blocks"] == 4
    assert by_path["pinned"]
    out = bytearray()
    assert await store.export(CID.parse(by_path["cid"]), out.extend) == 600_000
    assert bytes(out) == data


async def test_cid_version_0_defaults_to_dag_pb_leaves_and_only_hash_stores_nothing(store, tmp_path):
    v0 = await store.add(io.BytesIO(b"hello"), cid_version=0)
    assert v0["cid"].startswith("Qm")
    before = (await store.stat())["blocks"]
    only = await store.add(io.BytesIO(os.urandom(1000)), only_hash=True)
    assert only["pinned"] is False and (await store.stat())["blocks"] == before
    with pytest.raises(StoreError, match="no such file"):
        await store.add(tmp_path / "missing")


async def test_cat_ranges_and_limit(store):
    data = os.urandom(700_000)
    cid = (await store.add(io.BytesIO(data)))["cid"]
    assert await store.cat(cid, 0, None, limit=1 << 20) == data
    assert await store.cat(cid, 262_000, 1000, limit=1 << 20) == data[262_000:263_000]
    assert await store.cat(cid, 699_990, 100, limit=1 << 20) == data[699_990:]
    with pytest.raises(StoreError, match="limit of cat"):
        await store.cat(cid, 0, None, limit=100_000)
    with pytest.raises(StoreError, match="exceeds"):
        await store.cat(cid, 0, 200_000, limit=100_000)
    with pytest.raises(InvalidCid):
        await store.cat("not-a-cid", limit=10)
    empty = (await store.add(io.BytesIO(b"")))["cid"]
    assert await store.cat(empty, limit=10) == b""


async def test_pins_and_gc(store):
    keep = (await store.add(io.BytesIO(os.urandom(300_000))))["cid"]
    drop = (await store.add(io.BytesIO(os.urandom(300_000)), pin=False))["cid"]
    assert [p["cid"] for p in await store.pin_ls()] == [keep]
    res = await store.gc()
    assert res["removed"] == 3 and (await store.stat())["blocks"] == 3
    await store.pin_rm(keep)
    with pytest.raises(StoreError, match="not pinned"):
        await store.pin_rm(keep)
    assert (await store.gc())["removed"] == 3
    assert (await store.stat())["blocks"] == 0
    assert drop != keep
