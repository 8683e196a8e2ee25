"""Gossip between in-process nodes, and the py-libp2p 0.8.1 workarounds (each shown failing without it)."""

from __future__ import annotations

import pytest
import trio

from dainode.errors import P2PError
from dainode.p2p import topics
from tests.unit.p2p.helpers import connect_line, running_nodes, wait_for

BURST = 100


async def _burst(a, b, count: int) -> int:
    """Publish `count` messages from a without pausing; return how many b delivered to a subscriber."""
    sub = b.gossip.subscribe(topics.TASKS)
    for i in range(count):
        await a.gossip.publish(topics.TASKS, "n", {"i": i})
    got = set()
    with trio.move_on_after(5):
        while len(got) < count:
            got.add((await sub.receive()).body["i"])
    return len(got)


async def test_typed_messages_cross_a_line_including_own():
    async with running_nodes(3) as (a, b, c):
        await connect_line([a, b, c])
        sub_c, sub_a = c.gossip.subscribe(topics.OFFERS), a.gossip.subscribe(topics.OFFERS)
        sent = await a.gossip.publish(topics.OFFERS, "data_offer", {"cid": "bafy", "blob": b"\x01"})
        with trio.fail_after(5):
            got = await sub_c.receive()
            own = await sub_a.receive()
        assert got == sent == own
        assert got.sender == a.identity.account.address and got.peer_id == a.peer_id
        assert got.body == {"cid": "bafy", "blob": b"\x01"} and got.type == "data_offer"
        # the sender's eth address is learned from its signed gossip, two hops away too
        assert c.eth_address_of(a.peer_id) == a.identity.account.address
        assert b.gossip.stats()["accepted"] == 1


async def test_burst_is_delivered_completely():
    async with running_nodes(2) as (a, b):
        await connect_line([a, b])
        assert await _burst(a, b, BURST) == BURST


async def test_library_spam_protection_would_drop_the_burst():
    """Without spam_protection_enabled=False the library drops our own publishes beyond 10/s."""
    async with running_nodes(2) as (a, b):
        a.gossip.router.spam_protection_enabled = True
        await connect_line([a, b])
        assert await _burst(a, b, 30) <= 11


async def test_library_outbound_queue_of_32_would_drop_the_burst():
    """Without _SizedQueues the per-peer queue holds 32 RPCs and a fast burst loses the rest."""
    async with running_nodes(2) as (a, b):
        a.gossip.pubsub.peer_queues.size = 32
        await connect_line([a, b])
        assert await _burst(a, b, BURST) < BURST


async def test_slow_subscriber_gets_everything_up_to_its_buffer():
    async with running_nodes(2) as (a, b):
        await connect_line([a, b])
        sub = b.gossip.subscribe(topics.CHAIN)
        small = b.gossip.subscribe(topics.CHAIN, buffer=8)
        for i in range(BURST):  # nobody reads while these arrive (the library channel holds 32)
            await a.gossip.publish(topics.CHAIN, "n", {"i": i})
        await wait_for(lambda: len(b.gossip.recent[topics.CHAIN]) == BURST, timeout=5)
        got = [(await sub.receive()).body["i"] for _ in range(BURST)]
        assert got == list(range(BURST))
        assert small.dropped == BURST - 8 and b.gossip.stats()["undelivered_to_subscribers"] == BURST - 8


async def test_heartbeat_comes_from_config():
    def cfg(i, c):
        c.gossip.heartbeat_s = 0.5

    async with running_nodes(1, config_fn=cfg) as (a,):
        assert a.gossip.router.heartbeat_interval == 0.5  # library default: 120 s


async def test_publish_errors_and_new_topics():
    def cfg(i, c):
        c.gossip.max_message_size = 1000

    async with running_nodes(2, config_fn=cfg) as (a, b):
        await connect_line([a, b])
        with pytest.raises(P2PError, match="max_message_size"):
            await a.gossip.publish(topics.OFFERS, "big", {"x": "y" * 2000})
        with pytest.raises(P2PError, match="invalid gossip topic"):
            await a.gossip.publish("offers", "x", {})
        # a topic registered later by another layer is joined on first use
        with b.gossip.subscribe("/dai/1/rounds") as sub:
            await wait_for(lambda: b.peer_id in {p.to_base58() for p in a.gossip.pubsub.peer_topics.get("/dai/1/rounds", ())})
            await a.gossip.publish("/dai/1/rounds", "round", {"n": 1})
            with trio.fail_after(5):
                assert (await sub.receive()).body == {"n": 1}


async def test_same_body_twice_in_a_row_is_two_messages():
    async with running_nodes(2) as (a, b):
        await connect_line([a, b])
        sub = b.gossip.subscribe(topics.OFFERS)
        first = await a.gossip.publish(topics.OFFERS, "same", {"k": 1})
        second = await a.gossip.publish(topics.OFFERS, "same", {"k": 1})
        assert second.ts > first.ts
        with trio.fail_after(5):
            got = [await sub.receive(), await sub.receive()]
        assert [m.ts for m in got] == [first.ts, second.ts]
        assert a.gossip.stats()["rejected"] == 0


async def test_eth_address_is_proven_on_connect_without_gossip():
    from dainode.errors import P2PError
    from dainode.p2p.idexchange import PROTOCOL

    async with running_nodes(2) as (a, b):
        await a.connect(b.listen_addrs()[0])
        await wait_for(lambda: a.eth_address_of(b.peer_id) == b.identity.account.address, timeout=10)
        await wait_for(lambda: b.eth_address_of(a.peer_id) == a.identity.account.address, timeout=10)

        # a peer that signs the binding with another key is not believed
        async def lying(peer_id, request):
            honest = await b.ids._answer(peer_id, request)
            from eth_account import Account

            return {"address": Account.create().address, "sig": honest["sig"]}

        b.reqresp.set_handler(PROTOCOL, lying)
        with pytest.raises(P2PError, match="claims"):
            await a.ids.ask(b.host.get_id())
