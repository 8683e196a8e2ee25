"""The DHT API the store layer uses: provide / find_providers across a line of nodes, and peer routing."""

from __future__ import annotations

import hashlib

import trio

from tests.unit.p2p.helpers import running_nodes, wait_for


def multihash(data: bytes) -> bytes:
    return b"\x12\x20" + hashlib.sha256(data).digest()  # sha2-256 multihash, as in a CID


async def test_provide_and_find_providers_two_hops_away():
    def cfg(i, c):
        c.p2p.low_water = 0  # no discovery dialling: the lookup itself must cross the line

    async with running_nodes(3, dht=True, config_fn=cfg) as (a, b, c):
        await b.connect(a.listen_addrs()[0])
        await c.connect(b.listen_addrs()[0])
        await wait_for(lambda: a.dht.routing_table.size() >= 1 and c.dht.routing_table.size() >= 1)
        key = multihash(b"some block")
        with trio.fail_after(20):
            assert await c.provide(key) is True
            found = await a.find_providers(key, limit=5)
        assert [p.peer_id.to_base58() for p in found] == [c.peer_id]
        assert found[0].addrs, "providers come with addresses to dial"
        assert await a.find_providers(multihash(b"nobody has this"), limit=5) == []
        # peer routing: a learns c's address through b
        with trio.fail_after(10):
            info = await a.dht.find_peer(c.host.get_id())
        assert info is not None and info.addrs


async def test_without_dht():
    async with running_nodes(1, dht=False) as (a,):
        assert a.dht is None
        assert await a.provide(multihash(b"x")) is False
        assert await a.find_providers(multihash(b"x")) == []
