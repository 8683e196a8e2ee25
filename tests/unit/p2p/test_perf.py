"""The CPU trims in dainode/p2p/perf.py and DaiGossipSub, each shown against the library behaviour."""

from __future__ import annotations

from collections import Counter

import libp2p.pubsub.pubsub as pubsub_mod
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.stream_muxer.yamux.yamux import YamuxStream
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from dainode.p2p import perf, topics
from dainode.p2p.gossip import DaiPubsub
from tests.unit.p2p.helpers import connect_line, running_nodes, wait_for


class FakeHost:
    def __init__(self):
        self._id = ID.from_pubkey(create_new_key_pair().public_key)

    def get_id(self):
        return self._id


def test_signed_record_is_verified_once_per_peer_and_bytes():
    calls = []

    def original(msg, host, peer_id):
        calls.append(msg.senderRecord)
        return msg.senderRecord != b"bad"

    cache = perf._RecordCache()
    check = cache.wrap(original)
    host, peer = FakeHost(), FakeHost().get_id()
    rpc = rpc_pb2.RPC(senderRecord=b"record-1")
    assert check(rpc, host, peer) and check(rpc, host, peer) and check(rpc, host, peer)
    assert calls == [b"record-1"]  # library: verified on every RPC
    assert check(rpc_pb2.RPC(senderRecord=b"record-2"), host, peer)  # a new record is verified
    assert check(rpc, host, FakeHost().get_id())  # same bytes from another peer: verified again
    bad = rpc_pb2.RPC(senderRecord=b"bad")
    assert not check(bad, host, peer) and not check(bad, host, peer)  # failures are never cached
    assert calls == [b"record-1", b"record-2", b"record-1", b"bad", b"bad"]
    assert check(rpc_pb2.RPC(), host, peer)  # no record: nothing to verify


def test_local_record_rebuilt_at_most_every_ttl():
    calls = []
    cache = perf._LocalRecordCache(ttl=60)
    build = cache.wrap(lambda host: calls.append(host) or (b"env", False))
    host = FakeHost()
    assert [build(host) for _ in range(5)] == [(b"env", False)] * 5
    assert len(calls) == 1
    build(FakeHost())
    assert len(calls) == 2
    cache.ttl = 0
    build(host)
    assert len(calls) == 3


def test_install_patches_both_pubsub_modules():
    import libp2p.pubsub.gossipsub as g
    import libp2p.pubsub.pubsub as p

    perf.install()
    assert hasattr(p.maybe_consume_signed_record, "__wrapped__")
    assert g.maybe_consume_signed_record is p.maybe_consume_signed_record
    assert hasattr(g.env_to_send_in_RPC, "__wrapped__") and hasattr(p.env_to_send_in_RPC, "__wrapped__")


async def _count_control(a, b, size: int, count: int = 20) -> Counter:
    counts: Counter = Counter()
    original = Pubsub.write_msg

    async def counting(self, stream, rpc):
        if rpc.HasField("control") and rpc.control.idontwant:
            counts["idontwant"] += 1
        if rpc.publish:
            counts["publish"] += 1
        return await original(self, stream, rpc)

    sub = b.gossip.subscribe(topics.TASKS)
    Pubsub.write_msg = counting
    try:
        for i in range(count):
            await a.gossip.publish(topics.TASKS, "x", {"i": i, "pad": b"\x00" * size})
            with trio.fail_after(5):
                await sub.receive()
    finally:
        Pubsub.write_msg = original
    return counts


async def test_idontwant_only_for_large_relayed_messages():
    async with running_nodes(3) as nodes:
        a, b, c = nodes
        await connect_line(nodes)
        small = await _count_control(a, c, 1000)
        assert small["idontwant"] == 0 and small["publish"] >= 40
        large = await _count_control(a, c, 20 * 1024, count=5)
        assert large["idontwant"] >= 5  # b relays: it tells its other mesh peer (c) it has the message
        for n in nodes:  # the library behaviour: one control RPC per mesh peer per message, own ones too
            n.gossip.router.IDONTWANT_MIN_BYTES = 0
        library = await _count_control(a, c, 1000)
        assert library["idontwant"] >= 40


async def _window_updates(monkeypatch, update_fn) -> int:
    monkeypatch.setattr(YamuxStream, "_auto_tune_and_send_window_update", update_fn)
    updates = Counter()
    original = YamuxStream.send_window_update

    async def counting(self, *args, **kwargs):
        updates["n"] += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(YamuxStream, "send_window_update", counting)
    async with running_nodes(2) as (a, b):
        await connect_line([a, b])
        sub = b.gossip.subscribe(topics.CHAIN)
        updates.clear()
        for i in range(50):
            await a.gossip.publish(topics.CHAIN, "x", {"i": i})
            with trio.fail_after(5):
                await sub.receive()
        # bulk data still flows: a 200 KiB body crosses several half-window updates
        await a.gossip.publish(topics.CHAIN, "big", {"blob": b"\x01" * (200 * 1024)})
        with trio.fail_after(5):
            assert len((await sub.receive()).body["blob"]) == 200 * 1024
        small_updates = updates["n"]
    monkeypatch.setattr(YamuxStream, "send_window_update", original)
    return small_updates


async def test_yamux_window_updates_are_batched(monkeypatch):
    perf.install()
    ours_fn = YamuxStream._auto_tune_and_send_window_update
    assert ours_fn is perf._go_style_window_update
    ours = await _window_updates(monkeypatch, ours_fn)
    library = await _window_updates(monkeypatch, ours_fn.__wrapped__)  # 0.8.1: an update per read
    assert ours <= 5 and library >= 50, (ours, library)


async def _push_msg_calls(monkeypatch, library: bool) -> tuple[int, int]:
    """Triangle a-b-c; a publishes 50 messages; returns (push_msg tasks at c, messages c delivered)."""
    if library:
        monkeypatch.setattr(DaiPubsub, "_is_subscribed_to_msg", Pubsub._is_subscribed_to_msg)
    async with running_nodes(3) as (a, b, c):
        await connect_line([a, b, c])
        await c.connect(a.listen_addrs()[0])
        await wait_for(lambda: all(len(n.gossip.router.mesh.get(topics.OFFERS, ())) == 2 for n in (a, b, c)))
        calls = Counter()
        original = c.gossip.pubsub.push_msg

        async def counting(*args):
            calls["n"] += 1
            return await original(*args)

        c.gossip.pubsub.push_msg = counting
        sub = c.gossip.subscribe(topics.OFFERS)
        got = set()
        for i in range(50):
            await a.gossip.publish(topics.OFFERS, "x", {"i": i})
            with trio.fail_after(5):
                got.add((await sub.receive()).body["i"])
        await trio.sleep(0.3)  # let b's copies of the last messages arrive too
        return calls["n"], len(got)


async def test_duplicates_are_dropped_before_a_task_is_spawned(monkeypatch):
    # c gets each message from a and again from b: only the first copy costs a push_msg task
    calls, delivered = await _push_msg_calls(monkeypatch, library=False)
    assert delivered == 50 and calls <= 55
    calls, delivered = await _push_msg_calls(monkeypatch, library=True)
    assert delivered == 50 and calls >= 90  # the library spawns one per copy


class ChunkedStream:
    """A stream that hands out the given chunks one per read (at most n bytes each)."""

    def __init__(self, chunks):
        self.chunks = [bytes(c) for c in chunks]
        self.reads = 0

    async def read(self, n):
        self.reads += 1
        if not self.chunks:
            return b""
        chunk, rest = self.chunks[0][:n], self.chunks[0][n:]
        if rest:
            self.chunks[0] = rest
        else:
            self.chunks.pop(0)
        return chunk


def _framed(*payloads: bytes) -> bytes:
    from libp2p.utils.varint import encode_uvarint

    return b"".join(encode_uvarint(len(p)) + p for p in payloads)


async def test_buffered_rpc_reader_handles_any_chunking():
    msgs = [b"a" * 5, b"b" * 300, b"", b"c" * 70_000, b"d"]
    wire = _framed(*msgs)
    for cut in (1, 2, 7, 301, len(wire)):  # chunk sizes: byte by byte ... everything at once
        stream = ChunkedStream(wire[i : i + cut] for i in range(0, len(wire), cut))
        got = [await perf.read_rpc_buffered(stream, 1 << 20) for _ in msgs]
        assert got == msgs
        with pytest.raises(IncompleteReadError):  # clean EOF after the last message
            await perf.read_rpc_buffered(stream, 1 << 20)
    stream = ChunkedStream([_framed(b"x" * 2000)])
    with pytest.raises(MessageTooLarge):
        await perf.read_rpc_buffered(stream, 1000)
    stream = ChunkedStream([_framed(b"x" * 100)[:50]])
    with pytest.raises(IncompleteReadError):
        await perf.read_rpc_buffered(stream, 1000)
    with pytest.raises(ParseError):
        await perf.read_rpc_buffered(ChunkedStream([b"\xff" * 11]), 1000)


async def _stream_reads_per_message(monkeypatch, library: bool) -> float:
    from libp2p.network.stream.net_stream import NetStream

    if library:
        monkeypatch.setattr(pubsub_mod, "read_varint_prefixed_bytes_limited", read_varint_prefixed_bytes_limited)
    reads = Counter()
    original = NetStream.read

    async def counting(self, n=None):
        reads["n"] += 1
        return await original(self, n)

    async with running_nodes(2) as (a, b):
        await connect_line([a, b])
        sub = b.gossip.subscribe(topics.CHAIN)
        await trio.sleep(0.3)
        monkeypatch.setattr(NetStream, "read", counting)
        for i in range(30):
            await a.gossip.publish(topics.CHAIN, "x", {"i": i, "pad": b"\x00" * 1000})
            with trio.fail_after(5):
                await sub.receive()
        monkeypatch.setattr(NetStream, "read", original)
    return reads["n"] / 30


async def test_pubsub_reads_one_stream_chunk_per_rpc(monkeypatch):
    assert await _stream_reads_per_message(monkeypatch, library=False) < 1.5
    # the library reads the 2-byte length prefix one byte at a time: 3 reads per RPC
    assert await _stream_reads_per_message(monkeypatch, library=True) >= 2.8
