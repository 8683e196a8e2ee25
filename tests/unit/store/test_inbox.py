"""Pushed documents: held only if they hash to their CID, served to a fetch that started before they arrived."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace

import pytest
import trio

from dainode.config import Config
from dainode.errors import StoreError
from dainode.store.inbox import Inbox
from dainode.store.service import StoreService
from tests.unit.store.test_service import FakeHost


@pytest.fixture
async def store(tmp_path):
    cfg = Config()
    cfg.store.fetch_timeout_s = 30.0  # nobody is connected: only a push can end a fetch before this
    service = StoreService(cfg, SimpleNamespace(host=FakeHost()), tmp_path / "node")
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield service
        nursery.cancel_scope.cancel()


async def cid_of(store, data: bytes) -> str:
    return (await store.add(io.BytesIO(data), only_hash=True, pin=False))["cid"]


@pytest.mark.parametrize("size", [10, 40_000, 600_000])
async def test_hash_bytes_is_the_cid_add_gives(store, size):
    data = os.urandom(size)
    assert str(await store.hash_bytes(data)) == await cid_of(store, data)


async def test_a_push_that_hashes_to_its_cid_is_read_without_the_network(store):
    data = os.urandom(40_000)
    cid = await cid_of(store, data)
    assert await store.accept_push(cid, data)
    with trio.fail_after(5):  # no peer: a network fetch would wait for fetch_timeout_s
        assert await store.fetch_bytes(cid, limit=1 << 20) == data
    assert (await store.stat())["blocks"] == 0  # held in memory, nothing written


async def test_a_fetch_waiting_on_the_network_takes_a_push_that_arrives_meanwhile(store):
    data = os.urandom(40_000)
    cid = await cid_of(store, data)
    got = []

    async def fetch():
        got.append(await store.fetch_bytes(cid, limit=1 << 20))

    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(fetch)
            await trio.sleep(0.2)  # the fetch is asking bitswap by now
            assert not got
            assert await store.accept_push(cid, data)
    assert got == [data]
    assert not store.inbox._waiters and not store.bitswap.wants  # the losing fetch left nothing behind


async def test_bytes_that_do_not_hash_to_the_cid_are_refused_and_not_served(store):
    data, other = os.urandom(1000), os.urandom(1000)
    cid = await cid_of(store, data)
    assert not await store.accept_push(cid, other)
    assert cid not in store.inbox


async def test_the_read_limit_holds_for_pushed_bytes(store):
    data = os.urandom(5000)
    cid = await cid_of(store, data)
    assert await store.accept_push(cid, data)
    with pytest.raises(StoreError, match="limit"):
        await store.fetch_bytes(cid, limit=4096)


def test_inbox_keeps_at_most_max_bytes_dropping_the_oldest():
    box = Inbox(max_bytes=250)
    for i in range(3):
        box.put(f"c{i}", bytes(100))
    assert "c0" not in box and "c1" in box and "c2" in box
    box.put("huge", bytes(1000))  # larger than the whole inbox: not held
    assert "huge" not in box and len(box) == 2


class AnnouncingP2P(SimpleNamespace):
    """A p2p layer that records DHT provides."""

    async def provide(self, mh):
        self.provided.append(mh)
        return True


async def test_small_documents_are_announced_once_adds_are_quiet_others_at_once(tmp_path, monkeypatch):
    from dainode.store import service as svc
    from dainode.store.cid import CID

    monkeypatch.setattr(svc, "ANNOUNCE_QUIET_S", 1000.0)  # adds stay "recent" until the test says otherwise
    p2p = AnnouncingP2P(host=FakeHost(), provided=[])
    store = StoreService(Config(), p2p, tmp_path / "node")
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        small = [CID.parse((await store.add(io.BytesIO(os.urandom(1000))))["cid"]).multihash for _ in range(3)]
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(300_000))
        big_mh = CID.parse((await store.add(big))["cid"]).multihash
        with trio.fail_after(10):
            while big_mh not in p2p.provided:
                await trio.sleep(0.01)
        assert not set(small) & set(p2p.provided)  # each used to be announced at once, in the middle of the rounds
        monkeypatch.setattr(svc, "ANNOUNCE_QUIET_S", 0.0)  # adds went quiet
        store._deferred_wake.set()
        with trio.fail_after(10):
            while not set(small) <= set(p2p.provided):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
