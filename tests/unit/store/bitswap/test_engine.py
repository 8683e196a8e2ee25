"""The bitswap engine between real in-process py-libp2p hosts, incl. raw peers that play by other rules."""

from __future__ import annotations

import os

import pytest
import trio
from libp2p.custom_types import TProtocol

from dainode.errors import BlockNotFound
from dainode.store.bitswap import Session, wire
from dainode.store.bitswap import session as session_module
from dainode.store.cid import DAG_PB, cid_of
from tests.unit.store.bitswap.helpers import MemoryBlocks, bitswap_peers, connect, running_host


def session(engine, timeout=10.0, wants=8) -> Session:
    return Session(engine, timeout_s=timeout, max_wants=wants)


def record_lookups(engine, *, when: bool = False) -> list:
    """Replace the engine's DHT provider lookup with one that finds nobody; returns what it was asked (or when)."""
    asked: list = []

    async def find_providers(mh):
        asked.append(trio.current_time() if when else mh)
        return []

    engine.find_providers = find_providers
    return asked


async def read_all(stream, into: list) -> None:
    reader = wire.MessageReader(stream)
    try:
        while (payload := await reader.read()) is not None:
            into.append(wire.decode(payload))
    except Exception:
        pass


async def test_fetch_between_two_engines_and_stats():
    data = [os.urandom(1000 * (i + 1)) for i in range(5)]
    cids = [cid_of(d) for d in data]
    async with bitswap_peers(2, [MemoryBlocks(dict(zip(cids, data))), MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        with session(b) as s:
            got = []
            async with trio.open_nursery() as n:
                async def one(i):
                    got.append((i, await s.get(cids[i].to_bytes())))
                for i in range(len(cids)):
                    n.start_soon(one, i)
        assert sorted(got) == list(enumerate(data))
        await b.flush()
        assert await b.blocks.get(cids[0].to_bytes()) == data[0]  # stored locally
        sb, sa = b.stat(), a.stat()
        assert sb["blocks_received"] == 5 and sb["bytes_received"] == sum(map(len, data)) and sb["bad_blocks"] == 0
        assert sa["blocks_sent"] == 5 and sa["blocks_sent_to"] == {hb.get_id().to_base58(): 5}
        assert sb["wantlist_size"] == 0


async def test_blocks_up_to_2_mib_travel():
    """py-libp2p 0.8.1 refuses blocks over 512 KiB; the spec (and Helia, kubo) allow 2 MiB."""
    big = os.urandom(wire.MAX_BLOCK_SIZE)
    cid = cid_of(big)
    async with bitswap_peers(2, [MemoryBlocks({cid: big}), MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        with session(b) as s:
            assert await s.get(cid.to_bytes()) == big


async def test_replies_go_on_a_stream_we_open_not_on_the_requesters():
    """py-libp2p 0.8.1 writes blocks back on the requester's stream, which real bitswap peers never read."""
    block = b"hello bitswap"
    cid = cid_of(block)
    async with bitswap_peers(1, [MemoryBlocks({cid: block})]) as [(hs, server)]:
        async with trio.open_nursery() as nursery:
            async with running_host(nursery) as raw:
                inbound: list[wire.Decoded] = []

                async def on_stream(stream):
                    await read_all(stream, inbound)

                raw.set_stream_handler(TProtocol(wire.PROTOCOL_120), on_stream)
                await connect(raw, hs)
                ours = await raw.new_stream(hs.get_id(), [TProtocol(wire.PROTOCOL_120)])
                await ours.write(wire.frame(wire.encode(entries=[wire.WantEntry(cid.to_bytes(), send_dont_have=True)])))
                on_ours: list[wire.Decoded] = []
                nursery.start_soon(read_all, ours, on_ours)
                with trio.fail_after(10):
                    while not any(m.blocks for m in inbound):
                        await trio.sleep(0.02)
                await trio.sleep(0.2)
                assert on_ours == []  # nothing came back on the stream the requester opened
                [msg] = [m for m in inbound if m.blocks]
                assert wire.cid_for_block(*msg.blocks[0]).to_bytes() == cid.to_bytes()
                assert msg.blocks[0][1] == block
                nursery.cancel_scope.cancel()


async def test_one_outbound_stream_per_peer_is_reused():
    blocks = {cid_of(bytes([i]) * 100): bytes([i]) * 100 for i in range(6)}
    async with bitswap_peers(1, [MemoryBlocks(blocks)]) as [(hs, server)]:
        async with trio.open_nursery() as nursery:
            async with running_host(nursery) as raw:
                streams = []
                got: list[wire.Decoded] = []

                async def on_stream(stream):
                    streams.append(stream)
                    await read_all(stream, got)

                raw.set_stream_handler(TProtocol(wire.PROTOCOL_120), on_stream)
                await connect(raw, hs)
                ours = await raw.new_stream(hs.get_id(), [TProtocol(wire.PROTOCOL_120)])
                for cid in blocks:  # one message per want, with a pause: several replies
                    await ours.write(wire.frame(wire.encode(entries=[wire.WantEntry(cid.to_bytes())])))
                    await trio.sleep(0.05)
                with trio.fail_after(10):
                    while sum(len(m.blocks) for m in got) < len(blocks):
                        await trio.sleep(0.02)
                assert len(streams) == 1
                nursery.cancel_scope.cancel()


async def test_v100_peer_gets_bare_blocks():
    block = b"\x0a\x04\x08\x02\x18\x00"  # a dag-pb node; CIDv0
    cid = cid_of(block, codec=DAG_PB, version=0)
    async with bitswap_peers(1, [MemoryBlocks({cid: block})]) as [(hs, server)]:
        async with trio.open_nursery() as nursery:
            async with running_host(nursery) as raw:
                got: list[wire.Decoded] = []

                async def on_stream(stream):
                    await read_all(stream, got)

                raw.set_stream_handler(TProtocol(wire.PROTOCOL_100), on_stream)
                await connect(raw, hs)
                ours = await raw.new_stream(hs.get_id(), [TProtocol(wire.PROTOCOL_100)])
                await ours.write(wire.frame(wire.encode(entries=[wire.WantEntry(cid.to_bytes())], protocol=wire.PROTOCOL_100)))
                with trio.fail_after(10):
                    while not got:
                        await trio.sleep(0.02)
                assert got[0].blocks == [(None, block)]
                nursery.cancel_scope.cancel()


async def test_want_have_and_dont_have_presences():
    block = b"present"
    cid, missing = cid_of(block), cid_of(b"absent")
    async with bitswap_peers(1, [MemoryBlocks({cid: block})]) as [(hs, server)]:
        async with trio.open_nursery() as nursery:
            async with running_host(nursery) as raw:
                got: list[wire.Decoded] = []

                async def on_stream(stream):
                    await read_all(stream, got)

                raw.set_stream_handler(TProtocol(wire.PROTOCOL_120), on_stream)
                await connect(raw, hs)
                ours = await raw.new_stream(hs.get_id(), [TProtocol(wire.PROTOCOL_120)])
                entries = [
                    wire.WantEntry(cid.to_bytes(), want_have=True, send_dont_have=True),
                    wire.WantEntry(missing.to_bytes(), want_have=True, send_dont_have=True),
                ]
                await ours.write(wire.frame(wire.encode(entries=entries)))
                with trio.fail_after(10):
                    while sum(len(m.presences) for m in got) < 2:
                        await trio.sleep(0.02)
                presences = dict(p for m in got for p in m.presences)
                assert presences == {cid.to_bytes(): True, missing.to_bytes(): False}
                assert not any(m.blocks for m in got)  # want-have does not ship the block
                nursery.cancel_scope.cancel()


async def test_oversized_message_is_refused():
    async with bitswap_peers(1) as [(hs, server)]:
        async with trio.open_nursery() as nursery:
            async with running_host(nursery) as raw:
                await connect(raw, hs)
                ours = await raw.new_stream(hs.get_id(), [TProtocol(wire.PROTOCOL_120)])
                await ours.write(wire.encode_uvarint(wire.MAX_MESSAGE_SIZE + 1) + b"\x00" * 1000)
                with trio.fail_after(10):
                    while not server.stats.protocol_errors:
                        await trio.sleep(0.02)
                assert server.stats.protocol_errors[raw.get_id().to_base58()] == 1
                nursery.cancel_scope.cancel()


async def test_missing_block_raises_instead_of_returning_none():
    """py-libp2p 0.8.1's BlockService.get_block swallows failures and returns None."""
    async with bitswap_peers(2) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        with session(b, timeout=1.5) as s:
            with pytest.raises(BlockNotFound, match="not found within"):
                await s.get(cid_of(b"nobody has this").to_bytes())
        assert b.stat()["wantlist_size"] == 0


async def test_cancelled_fetch_cancels_the_want_at_the_provider():
    cid = cid_of(b"not yet anywhere")
    async with bitswap_peers(2) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        with session(b, timeout=30) as s:
            with trio.move_on_after(1.0):
                await s.get(cid.to_bytes())
        with trio.fail_after(10):
            while a.ledgers.get(hb.get_id()):
                await trio.sleep(0.02)
        assert b.stat()["wantlist_size"] == 0


async def test_block_that_arrives_later_is_sent_to_the_waiting_peer():
    block = b"late block"
    cid = cid_of(block)
    async with bitswap_peers(2) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        with session(b, timeout=20) as s:
            async with trio.open_nursery() as n:
                result = []

                async def fetch():
                    result.append(await s.get(cid.to_bytes()))

                n.start_soon(fetch)
                with trio.fail_after(10):
                    while not a.ledgers.get(hb.get_id()):
                        await trio.sleep(0.02)
                await a.blocks.put(cid.to_bytes(), block)
                a.notify_new_block(cid.to_bytes())
        assert result == [block]


async def test_tampered_block_is_dropped_sender_excluded_fetch_completes_elsewhere():
    """A provider that answers HAVE and then ships wrong bytes: counted, excluded, and the
    fetch finishes from an honest peer."""
    block = os.urandom(5000)
    cid = cid_of(block)
    async with bitswap_peers(2, [MemoryBlocks(), MemoryBlocks({cid: block})]) as [(ha, a), (hb, honest)]:
        async with trio.open_nursery() as nursery:
            async with running_host(nursery) as evil:
                async def evil_handler(stream):
                    peer = stream.muxed_conn.peer_id
                    reader = wire.MessageReader(stream)
                    out = None
                    while (payload := await reader.read()) is not None:
                        msg = wire.decode(payload)
                        if out is None:
                            out = await evil.new_stream(peer, [TProtocol(wire.PROTOCOL_120)])
                        for e in msg.entries:
                            if e.cancel:
                                continue
                            parts = wire.parse_cid_bytes(e.cid)
                            if e.want_have:
                                reply = wire.encode(presences=[(e.cid, True)])
                            else:
                                reply = wire.encode(blocks=[(parts, b"tampered" + block[8:])])
                            await out.write(wire.frame(reply))

                evil.set_stream_handler(TProtocol(wire.PROTOCOL_120), evil_handler)
                await connect(ha, evil)
                result = []
                with session(a, timeout=30) as s:
                    async with trio.open_nursery() as n:
                        async def fetch():
                            result.append(await s.get(cid.to_bytes()))
                        n.start_soon(fetch)
                        with trio.fail_after(10):
                            while not a.stats.bad_blocks:
                                await trio.sleep(0.02)
                        assert evil.get_id() in s.excluded
                        await connect(ha, hb)  # the honest provider appears later
                assert result == [block]
                await a.flush()
                assert await a.blocks.get(cid.to_bytes()) == block
                st = a.stat()
                assert st["bad_blocks_by_peer"] == {evil.get_id().to_base58(): 1}
                assert st["blocks_received_from"][hb.get_id().to_base58()] == 1
                nursery.cancel_scope.cancel()


async def test_session_spreads_wants_over_several_providers():
    data = [os.urandom(20_000) for _ in range(24)]
    blocks = {cid_of(d): d for d in data}
    stores = [MemoryBlocks(blocks), MemoryBlocks(blocks), MemoryBlocks()]
    async with bitswap_peers(3, stores) as [(ha, a), (hb, b), (hc, c)]:
        await connect(hc, ha)
        await connect(hc, hb)
        with session(c, wants=8) as s:
            async with trio.open_nursery() as n:
                for cid in blocks:
                    n.start_soon(s.get, cid.to_bytes())
            assert set(s.peers) == {ha.get_id(), hb.get_id()}
        await c.flush()
        for cid, d in blocks.items():
            assert await c.blocks.get(cid.to_bytes()) == d
        got_from = c.stat()["blocks_received_from"]
        assert got_from.get(ha.get_id().to_base58(), 0) > 0 and got_from.get(hb.get_id().to_base58(), 0) > 0
        assert sum(got_from.values()) == len(blocks) + c.stats.dup_blocks


async def test_engine_grants_a_large_receive_window_on_bitswap_streams():
    """With the go-style window updates every daemon installs (dainode/p2p/perf.py) a stream
    keeps 256 KiB of credit on loopback: it grows only when half of it is consumed within
    4 RTTs (RTT ~0.2 ms). A bulk sender then stalls every 128 KiB. The engine grants 8 MiB."""
    from dainode.p2p import perf
    from dainode.store.bitswap.yamux_wait import BULK_RECEIVE_WINDOW

    perf.install()  # process-wide and idempotent, as in the daemon

    async with bitswap_peers(1) as [(hs, server)]:
        async with trio.open_nursery() as nursery:
            async with running_host(nursery) as raw:
                await connect(raw, hs)
                # the library's own behaviour, shown on a plain handler of the raw host
                async def plain(stream):
                    await read_all(stream, [])

                hs.set_stream_handler(TProtocol("/test/plain/1"), plain)
                other = await raw.new_stream(hs.get_id(), [TProtocol("/test/plain/1")])
                await other.write(b"x")
                await trio.sleep(0.2)
                assert other.muxed_stream.send_window <= 256 * 1024
                ours = await raw.new_stream(hs.get_id(), [TProtocol(wire.PROTOCOL_120)])
                await ours.write(wire.frame(wire.encode(entries=[wire.WantEntry(cid_of(b"q").to_bytes(), want_have=True)])))
                with trio.fail_after(10):
                    while ours.muxed_stream.send_window < BULK_RECEIVE_WINDOW / 2:
                        await trio.sleep(0.02)
                assert ours.muxed_stream.send_window >= BULK_RECEIVE_WINDOW - 1024
                nursery.cancel_scope.cancel()


async def test_fetch_recovers_when_the_stream_to_the_provider_cannot_be_opened():
    """Regression: a want-have lost with a broken outbound stream was never asked again."""
    block = b"retry me"
    cid = cid_of(block)
    async with bitswap_peers(2, [MemoryBlocks({cid: block}), MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        real = hb.new_stream
        failures = []

        async def flaky(peer, protocols):
            if len(failures) < 2:  # both attempts of the first outbox fail
                failures.append(peer)
                raise OSError("simulated handshake failure")
            return await real(peer, protocols)

        hb.new_stream = flaky
        with session(b, timeout=10) as s:
            assert await s.get(cid.to_bytes()) == block
        assert len(failures) == 2


async def test_a_new_session_asks_the_peer_that_delivered_last_for_the_block_at_once():
    first, second = os.urandom(30_000), os.urandom(30_000)
    c1, c2 = cid_of(first), cid_of(second)
    store_a = MemoryBlocks({c1: first})
    async with bitswap_peers(2, [store_a, MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        with session(b) as s:
            assert await s.get(c1.to_bytes()) == first  # want-have, HAVE, want-block, block
        await trio.sleep(0.2)  # let every message of that fetch arrive
        before = a.stats.messages_received
        assert before == 2
        store_a.add(c2, second)  # e.g. the next round's model, on the same provider
        with session(b) as s:
            assert await s.get(c2.to_bytes()) == second
        await trio.sleep(0.2)
        assert a.stats.messages_received - before == 1  # one want-block, no want-have round trip first


async def test_a_wrong_hunch_does_not_stop_the_search():
    data = os.urandom(30_000)
    cid, warm = cid_of(data), os.urandom(1000)
    async with bitswap_peers(3, [MemoryBlocks({cid_of(warm): warm}), MemoryBlocks({cid: data}), MemoryBlocks()]) as peers:
        (ha, a), (hb, b), (hc, c) = peers
        await connect(hc, ha)
        await connect(hc, hb)
        with session(c) as s:
            await s.get(cid_of(warm).to_bytes())  # a delivered last: the hunch for the next block
        with trio.fail_after(5), session(c) as s:
            assert await s.get(cid.to_bytes()) == data  # a says DONT_HAVE; b, found by want-have, delivers
        assert c.stats.received_from[hb.get_id().to_base58()] == 1


async def test_a_block_arriving_after_its_fetch_was_given_up_is_late_not_bad():
    data = os.urandom(5000)
    cid = cid_of(data)
    async with bitswap_peers(2, [MemoryBlocks(), MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        with session(b) as s:
            with trio.move_on_after(0.3):  # nobody has it: the fetch is given up (as when a pushed copy won)
                await s.get(cid.to_bytes())
        msg = wire.decode(wire.encode(blocks=[(wire.parse_cid_bytes(cid.to_bytes()), data)]))
        await b.on_message(ha.get_id(), msg)
        assert b.stats.bad_blocks == {} and b.stats.dup_blocks == 1  # before the fix: "bad block", a excluded


async def test_a_peer_that_reconnects_gets_its_answer_on_the_new_connection():
    """Regression: a peer that restarted (same peer ID, a new connection) asked again and got no answer: the
    provider's outbox still held the stream of the dead connection, the reply failed on it and was dropped."""
    first, second = os.urandom(30_000), os.urandom(30_000)
    c1, c2 = cid_of(first), cid_of(second)
    async with bitswap_peers(2, [MemoryBlocks({c1: first, c2: second}), MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        with session(b) as s:
            assert await s.get(c1.to_bytes()) == first  # a now has an outbound stream to b
        await hb.get_network().close_peer(ha.get_id())
        await trio.sleep(0.2)
        await connect(hb, ha)
        with trio.fail_after(5), session(b, timeout=10) as s:
            assert await s.get(c2.to_bytes()) == second


async def test_a_have_question_nobody_answered_is_asked_again(monkeypatch):
    """Regression: a want-have lost on the way (or its answer) was never asked again: the fetch waited for a
    reply from a peer that had the block until it timed out."""
    monkeypatch.setattr(session_module, "PEER_TIMEOUT_S", 0.5)
    block = os.urandom(5000)
    cid = cid_of(block)
    async with bitswap_peers(2, [MemoryBlocks({cid: block}), MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        real = a._on_wantlist
        dropped = []

        async def deaf_once(peer, msg):
            if not dropped:  # the first question is lost
                dropped.append(peer)
                return
            await real(peer, msg)

        a._on_wantlist = deaf_once
        with trio.fail_after(10), session(b, timeout=60) as s:
            assert await s.get(cid.to_bytes()) == block
        assert dropped == [hb.get_id()]


async def test_no_dht_lookup_while_a_connected_peer_is_still_sending_the_block():
    """The peers that lack a block answer DONT_HAVE at once, before the hunch's big block arrives: that is not a
    reason for a DHT provider lookup (it used to cost one per fetch, dozens of queries across the network)."""
    warm, big = os.urandom(1000), os.urandom(1_500_000)
    store_b = MemoryBlocks({cid_of(warm): warm})
    async with bitswap_peers(4, [MemoryBlocks(), store_b, MemoryBlocks(), MemoryBlocks()]) as peers:
        (ha, a), (hb, b), (hc, c), (hd, d) = peers
        for h in (ha, hb, hd):
            await connect(hc, h)
        lookups = record_lookups(c)
        with session(c) as s:
            await s.get(cid_of(warm).to_bytes())  # b delivered last: the hunch for the next block
        store_b.add(cid_of(big), big)
        with trio.fail_after(10), session(c) as s:
            assert await s.get(cid_of(big).to_bytes()) == big
        assert c.stats.provider_lookups == 0 and lookups == []


async def test_a_block_no_connected_peer_has_is_looked_up_on_the_dht():
    data = os.urandom(1000)
    async with bitswap_peers(2, [MemoryBlocks(), MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)
        lookups = record_lookups(b)
        with pytest.raises(BlockNotFound), session(b, timeout=3.0) as s:
            await s.get(cid_of(data).to_bytes())
        assert lookups == [cid_of(data).multihash] and b.stats.provider_lookups == 1


async def test_a_peer_that_never_answers_does_not_hold_back_the_dht_lookup_for_long():
    data = os.urandom(1000)
    async with bitswap_peers(2, [MemoryBlocks(), MemoryBlocks()]) as [(ha, a), (hb, b)]:
        await connect(hb, ha)

        async def silent(peer, msg):
            return  # takes the question, never says DONT_HAVE

        a._on_wantlist = silent
        asked_at = record_lookups(b, when=True)
        t0 = trio.current_time()
        with pytest.raises(BlockNotFound), session(b, timeout=session_module.HAVE_ANSWER_S + 3) as s:
            await s.get(cid_of(data).to_bytes())
        assert len(asked_at) == 1
        assert session_module.HAVE_ANSWER_S <= asked_at[0] - t0 < session_module.HAVE_ANSWER_S + 2.5
