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

    async def run(self) -> None:
        try:
            while not self.closed:
                if not self.pending():
                    with trio.move_on_after(IDLE_CLOSE_S):
                        await self._wake.wait()
                    if not self.pending():
                        break
                self._wake = trio.Event()
                while self.pending():
                    await self._send_one()
        except trio.Cancelled:
            raise
        except Exception as exc:  # the peer went away, refused the protocol, or reset the stream
            log.debug("bitswap: sending to %s failed: %s: %s", self.peer, type(exc).__name__, exc)
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

    async def _open(self) -> None:
        with trio.fail_after(OPEN_TIMEOUT_S):
            self.stream = await self.engine.host.new_stream(self.peer, list(wire.PROTOCOLS))
        self.protocol = str(self.stream.get_protocol())

    async def _send_one(self) -> None:
        if self.stream is None:
            await self._open()
        entries = list(self.entries.values())
        self.entries.clear()
        presences = list(self.presences.values())
        self.presences.clear()
        blocks: list[tuple[wire.CidParts, bytes]] = []
        size = 0
        while self.blocks and (size < BATCH_BYTES or not blocks):
            mh, cid = self.blocks.popitem(last=False)
            data = await self.engine.blocks.get(cid.to_bytes())
            if data is None:  # collected since it was asked for
                presences.append((cid.to_bytes(), False))
                continue
            if blocks and size + len(data) > wire.MAX_MESSAGE_SIZE - 64 * 1024:
                self.blocks[mh] = cid
                self.blocks.move_to_end(mh, last=False)
                break
            blocks.append((cid, data))
            size += len(data)
        if not (entries or presences or blocks):
            return
        payload = wire.encode(entries=entries, blocks=blocks, presences=presences, protocol=self.protocol or wire.PROTOCOL_120)
        await self.stream.write(wire.frame(payload))
        self.messages_sent += 1
        self.engine.stats.sent(self.peer, blocks)
