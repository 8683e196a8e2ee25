"""The per-peer outbox with fake host and stream: batching, one stream, no lost wake-ups."""

from __future__ import annotations

import trio
import trio.testing
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from dainode.store.bitswap import outbox, wire
from dainode.store.bitswap.engine import Stats
from dainode.store.cid import cid_of
from tests.unit.store.bitswap.helpers import MemoryBlocks


class FakeStream:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def get_protocol(self):
        return wire.PROTOCOL_120

    async def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def close(self) -> None:
        self.closed = True

    def messages(self) -> list[wire.Decoded]:
        out = []
        for frame in self.writes:
            n, start = wire.decode_uvarint(frame)
            out.append(wire.decode(frame[start : start + n]))
        return out


class FakeEngine:
    def __init__(self, blocks=None):
        self.streams: list[FakeStream] = []
        self.blocks = blocks or MemoryBlocks()
        self.stats = Stats()
        self.failed = []
        self.done = []
        engine = self

        class Host:
            async def new_stream(self, peer, protocols):
                engine.streams.append(FakeStream())
                return engine.streams[-1]

        self.host = Host()

    def _peer_failed(self, peer):
        self.failed.append(peer)

    def _outbox_done(self, box):
        self.done.append(box)


PEER = ID.from_pubkey(create_new_key_pair().public_key)


def entry(data: bytes) -> tuple[wire.WantEntry, bytes]:
    cid = cid_of(data)
    return wire.WantEntry(cid.to_bytes()), cid.multihash


async def test_a_spurious_wake_does_not_end_the_sender():
    """Regression: a wake-up whose items were already sent made the sender exit as if idle,
    and the next want queued in it was never sent."""
    engine = FakeEngine()
    box = outbox.Outbox(engine, PEER)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.run)
        box.want(*entry(b"x"))
        await trio.testing.wait_all_tasks_blocked()
        box._wake.set()  # as left behind by items consumed in the previous batch
        await trio.testing.wait_all_tasks_blocked()
        assert not box.closed
        box.want(*entry(b"y"))
        await trio.testing.wait_all_tasks_blocked()
        assert [len(m.entries) for m in engine.streams[0].messages()] == [1, 1]
        assert len(engine.streams) == 1
        nursery.cancel_scope.cancel()


async def test_idle_sender_closes_and_blocks_are_batched(autojump_clock):
    blocks = {cid_of(bytes([i]) * 300_000): bytes([i]) * 300_000 for i in range(6)}
    engine = FakeEngine(MemoryBlocks(blocks))
    box = outbox.Outbox(engine, PEER)
    for cid in blocks:
        box.block(wire.parse_cid_bytes(cid.to_bytes()), cid.multihash)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.run)
        await trio.sleep(outbox.IDLE_CLOSE_S + 1)
    msgs = engine.streams[0].messages()
    assert [len(m.blocks) for m in msgs] == [4, 2]  # ~1 MiB per message
    assert box.closed and engine.done == [box] and engine.streams[0].closed and engine.failed == []
