"""Per-peer outbound queue: ONE stream that we open to the peer, kept and reused for every message.

Bitswap peers read only the streams the *other* side opened (go-bitswap, Helia, kubo), so
replies - blocks and HAVE/DONT_HAVE - must go out on our own stream, never back on the
requester's. py-libp2p 0.8.1 wrote them on the requester's stream: Helia never saw them.
Blocks are loaded from the blockstore only when a message is built, so a long queue of
wanted blocks costs CIDs, not block bytes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

import trio
from libp2p.peer.id import ID

from dainode.store.bitswap import wire

if TYPE_CHECKING:
    from dainode.store.bitswap.engine import Bitswap

log = logging.getLogger("dainode.store.bitswap")

#: Stop the sender (and close its stream) after this long without anything to send.
IDLE_CLOSE_S = 60.0
#: Aim for messages about this big: several 256 KiB blocks per write, well under the 4 MiB cap.
BATCH_BYTES = 1024 * 1024
OPEN_TIMEOUT_S = 10.0
OPEN_ATTEMPTS = 2


class Outbox:
    def __init__(self, engine: "Bitswap", peer: ID):
        self.engine = engine
        self.peer = peer
        self.entries: OrderedDict[bytes, wire.WantEntry] = OrderedDict()  # by multihash; the latest state wins
        self.presences: OrderedDict[bytes, tuple[bytes, bool]] = OrderedDict()
        self.blocks: OrderedDict[bytes, wire.CidParts] = OrderedDict()
        self._wake = trio.Event()
        self.stream = None
        self.protocol: str | None = None
        self.closed = False
        self.messages_sent = 0
        self._block_size_guess = 256 * 1024

    # --- queueing (synchronous; the sender task does the I/O) ---------------------------

    def want(self, entry: wire.WantEntry, mh: bytes) -> None:
        self.entries[mh] = entry
        self.entries.move_to_end(mh)
        self._wake.set()

    def presence(self, cid: bytes, mh: bytes, have: bool) -> None:
        self.presences[mh] = (cid, have)
        self._wake.set()

    def block(self, cid: wire.CidParts, mh: bytes) -> None:
        self.presences.pop(mh, None)  # the block says HAVE by itself
        self.blocks[mh] = cid
        self._wake.set()

    def unqueue_block(self, mh: bytes) -> None:
        self.blocks.pop(mh, None)
        self.presences.pop(mh, None)

    def pending(self) -> bool:
        return bool(self.entries or self.presences or self.blocks)

    # --- the sender task -----------------------------------------------------------------
    # Two tasks: this one builds the next message (reading blocks from disk) while `_writer`
    # pushes the previous one through noise/yamux, so the link never waits for the disk.

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                send, recv = trio.open_memory_channel(1)
                nursery.start_soon(self._writer, recv)
                async with send:
                    while not self.closed:
                        if not self.pending():
                            with trio.move_on_after(IDLE_CLOSE_S) as idle:
                                await self._wake.wait()
                            if idle.cancelled_caught and not self.pending():
                                # closed before any await: from here on outbox() makes a new box
                                self.closed = True
                                break
                        self._wake = trio.Event()
                        while self.pending():
                            if self.stream is None:
                                await self._open()
                            built = await self._build()
                            if built is not None:
                                await send.send(built)
        except trio.Cancelled:
            raise
        except Exception as exc:  # the peer went away, refused the protocol, or reset the stream
            log.debug("bitswap: sending to %s failed: %s: %s", self.peer, type(exc).__name__, exc, exc_info=exc)
            self.engine._peer_failed(self.peer)
        finally:
            self.closed = True
            self.engine._outbox_done(self)
            if self.stream is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    try:
                        await self.stream.close()
                    except Exception:
                        pass

    async def _writer(self, recv) -> None:
        async with recv:
            async for frame, blocks in recv:
                await self._write(frame)
                self.messages_sent += 1
                self.engine.stats.sent(self.peer, blocks)

    async def _write(self, frame: bytes) -> None:
        """Write `frame` on our stream; on a fresh one if the old stream's connection is gone.

        A peer that restarted (same peer ID) dials back and asks again while this box still holds the stream of
        the dead connection: the reply must go out on the new connection, not be dropped with the old one."""
        if self._stream_dead():
            await self._reopen()
        try:
            await self.stream.write(frame)
        except Exception:
            if not self._peer_connected():
                raise
            await self._reopen()
            await self.stream.write(frame)  # a second failure is the peer's: run() reports it

    def _stream_dead(self) -> bool:
        stream = self.stream
        if stream is None:
            return False
        conn = getattr(stream, "muxed_conn", None)
        return bool(getattr(stream, "is_closed", False)) or bool(getattr(conn, "is_closed", False))

    def _peer_connected(self) -> bool:
        return self.peer in self.engine.connected_peers()

    async def _reopen(self) -> None:
        # the new stream replaces the old one only once it is open: the builder task never sees no stream (and
        # never opens a second one meanwhile)
        old = self.stream
        await self._open()
        if old is not None:
            with trio.move_on_after(1):
                try:
                    await old.reset()
                except Exception:  # it is already gone; nothing to tell the peer
                    pass

    async def _open(self) -> None:
        for attempt in range(OPEN_ATTEMPTS):
            try:
                with trio.fail_after(OPEN_TIMEOUT_S):
                    self.stream = await self.engine.host.new_stream(self.peer, list(wire.PROTOCOLS))
                break
            except Exception:
                # 0.8.1 occasionally fails a protocol handshake on a busy connection; one
                # retry saves the wants queued here (the caller reports the peer failed otherwise)
                if attempt + 1 == OPEN_ATTEMPTS:
                    raise
                await trio.sleep(0.1)
        self.protocol = str(self.stream.get_protocol())

    async def _load(self, cids: list[wire.CidParts]) -> list[bytes | None]:
        get_many = getattr(self.engine.blocks, "get_many", None)
        if get_many is not None:  # one thread hop for the whole batch
            return await get_many([c.to_bytes() for c in cids])
        return [await self.engine.blocks.get(c.to_bytes()) for c in cids]

    async def _build(self) -> tuple[bytes, list] | None:
        entries = list(self.entries.values())
        self.entries.clear()
        presences = list(self.presences.values())
        self.presences.clear()
        # take blocks for about BATCH_BYTES (sizes unknown until read: assume the last size seen)
        take: list[wire.CidParts] = []
        while self.blocks and (len(take) * self._block_size_guess < BATCH_BYTES or not take):
            take.append(self.blocks.popitem(last=False)[1])
        blocks: list[tuple[wire.CidParts, bytes]] = []
        size = 0
        for cid, data in zip(take, await self._load(take)) if take else ():
            if data is None:  # collected since it was asked for
                presences.append((cid.to_bytes(), False))
                continue
            if blocks and size + len(data) > wire.MAX_MESSAGE_SIZE - 64 * 1024:
                self.blocks[cid.multihash] = cid  # next message
                self.blocks.move_to_end(cid.multihash, last=False)
                continue
            blocks.append((cid, data))
            size += len(data)
            self._block_size_guess = max(len(data), 1)
        if not (entries or presences or blocks):
            return None
        payload = wire.encode(entries=entries, blocks=blocks, presences=presences, protocol=self.protocol or wire.PROTOCOL_120)
        return wire.frame(payload), blocks
