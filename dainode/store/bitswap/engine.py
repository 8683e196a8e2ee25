"""The bitswap engine: serves blocks to peers and matches received blocks and presences to our wants."""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import Awaitable, Callable, Protocol

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from dainode.errors import InvalidBlock, ProtocolError, ServiceNotRunning
from dainode.service import Service
from dainode.store.bitswap import wire, yamux_wait
from dainode.store.bitswap.outbox import Outbox

log = logging.getLogger("dainode.store.bitswap")

RECENT_SIZE = 4096  # multihashes of blocks recently received: a late copy is a duplicate, not an attack
#: Verified blocks being written to the blockstore at once. Each put fsyncs (file and directory);
#: writing them one after the other inside the receive loop made the fsync latency the
#: transfer rate. The receive loop waits when all slots are busy, so memory stays bounded.
PUT_SLOTS = 16


class BlockAccess(Protocol):
    """What the engine needs from the blockstore (binary CIDs; async so disk I/O can run in a thread)."""

    async def has(self, cid: bytes) -> bool: ...
    async def get(self, cid: bytes) -> bytes | None: ...
    async def put(self, cid: bytes, data: bytes) -> None: ...
    def verify(self, cid: bytes, data: bytes) -> None: ...  # raises InvalidBlock


class Stats:
    def __init__(self) -> None:
        self.blocks_sent = self.bytes_sent = 0
        self.blocks_received = self.bytes_received = 0
        self.dup_blocks = self.dup_bytes = 0
        self.bad_blocks: Counter[str] = Counter()
        self.protocol_errors: Counter[str] = Counter()
        self.messages_received = 0
        self.put_errors = 0
        self.provider_lookups = 0
        self.providers_found = 0
        self.sent_to: Counter[str] = Counter()
        self.received_from: Counter[str] = Counter()

    def sent(self, peer: ID, blocks) -> None:
        for _, data in blocks:
            self.blocks_sent += 1
            self.bytes_sent += len(data)
        if blocks:
            self.sent_to[peer.to_base58()] += len(blocks)


class Want:
    """One block we are fetching; shared by every session that wants it."""

    def __init__(self, cid: bytes, mh: bytes):
        self.cid = cid
        self.mh = mh
        self.data: bytes | None = None
        self.done = trio.Event()
        self.changed = trio.Event()
        self.sessions: set = set()
        self.sent: dict[ID, str] = {}  # peer -> "have" | "block" (to cancel later)
        self.pending_block: dict[ID, float] = {}  # peers asked for the block, with the time asked
        self.asked: dict[ID, float] = {}  # when each peer in `sent` was last asked (a HAVE question too)
        self.haves: list[ID] = []
        self.dont_haves: set[ID] = set()
        self.refs = 0

    def signal(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class Bitswap(Service):
    """Bitswap 1.2.0 (serving also 1.1.0/1.0.0) on a running libp2p host.

    `run()` registers the stream handlers and owns the per-peer sender tasks. Sessions
    (`dainode.store.bitswap.session.Session`) do the fetching through `want_*` below.
    """

    def __init__(self, host, blocks: BlockAccess, *, find_providers: Callable[[bytes], Awaitable[list]] | None = None,
                 connect: Callable[[object], Awaitable[None]] | None = None):
        yamux_wait.install()
        self.host = host
        self.blocks = blocks
        self.find_providers = find_providers
        self.connect = connect
        self.stats = Stats()
        self.wants: dict[bytes, Want] = {}
        self.ledgers: dict[ID, OrderedDict[bytes, wire.WantEntry]] = {}
        self.outboxes: dict[ID, Outbox] = {}
        self.sessions: set = set()
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self.providers: OrderedDict[ID, None] = OrderedDict()  # peers that delivered blocks, most recent last
        self._nursery: trio.Nursery | None = None
        self._put_slots = trio.Semaphore(PUT_SLOTS)
        self._puts_idle = trio.Event()
        self._puts_idle.set()
        self._puts = 0

    # --- lifecycle ---------------------------------------------------------------------

    name = "bitswap"

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for proto in wire.PROTOCOLS:
                self.host.set_stream_handler(TProtocol(proto), self._handle_stream)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def spawn(self, fn, *args) -> None:
        """Run `fn(*args)` in the engine's nursery; ServiceNotRunning (never a silent drop) if it is not running."""
        self.require_running(f"bitswap work ({getattr(fn, '__qualname__', fn)})")
        if self._nursery is None:  # cancelled, between the nursery closing and run() returning
            raise ServiceNotRunning("the bitswap service is stopping; cannot start more work")
        self._nursery.start_soon(fn, *args)

    def likely_provider(self, exclude: set) -> ID | None:
        """The connected peer that delivered a block most recently (not in `exclude`): a new session's first want
        goes to it as want-block, saving the want-have round trip when it has the block (the model provider
        of a task serves every round's model to the same peers)."""
        connected = set(self.connected_peers())
        for peer in reversed(self.providers):
            if peer in connected and peer not in exclude:
                return peer
        return None

    def connected_peers(self) -> list[ID]:
        return [p for p, conns in list(self.host.get_network().connections.items()) if conns]

    # --- outbound ------------------------------------------------------------------------

    def outbox(self, peer: ID) -> Outbox:
        box = self.outboxes.get(peer)
        if box is None or box.closed:
            box = Outbox(self, peer)
            self.outboxes[peer] = box
            self.spawn(box.run)
        return box

    def _outbox_done(self, box: Outbox) -> None:
        if self.outboxes.get(box.peer) is box:
            del self.outboxes[box.peer]

    def _peer_failed(self, peer: ID) -> None:
        """Our stream to `peer` broke: wants waiting on it must look elsewhere."""
        self.ledgers.pop(peer, None)
        for want in list(self.wants.values()):
            if want.pending_block.pop(peer, None) is not None or peer in want.sent:
                want.sent.pop(peer, None)
                want.signal()
        for session in list(self.sessions):
            session.drop_peer(peer)

    # --- wants (used by sessions) ---------------------------------------------------------

    def want(self, cid: bytes, session) -> Want:
        mh = wire.parse_cid_bytes(cid).multihash
        w = self.wants.get(mh)
        if w is None:
            w = self.wants[mh] = Want(cid, mh)
        w.refs += 1
        w.sessions.add(session)
        return w

    def release(self, want: Want, session) -> None:
        want.refs -= 1
        want.sessions.discard(session)
        if want.refs <= 0:
            if self.wants.get(want.mh) is want:
                del self.wants[want.mh]
                # a copy still on its way (the fetch was cancelled, e.g. a pushed copy won) is a late block we
                # asked for, not a peer sending blocks nobody wanted
                self._remember(want.mh)
            self._cancel(want)

    def send_want(self, peer: ID, want: Want, *, block: bool) -> None:
        want.sent[peer] = "block" if block else "have"
        want.asked[peer] = trio.current_time()
        if block:
            want.pending_block[peer] = trio.current_time()
        entry = wire.WantEntry(want.cid, want_have=not block, send_dont_have=True)
        self.outbox(peer).want(entry, want.mh)

    def _cancel(self, want: Want, *, skip: ID | None = None) -> None:
        for peer in want.sent:
            if peer != skip:
                self.outbox(peer).want(wire.WantEntry(want.cid, cancel=True), want.mh)
        want.sent.clear()
        want.asked.clear()
        want.pending_block.clear()

    def penalise(self, peer: ID, reason: str) -> None:
        """A peer sent a block that is not what it claims: count it, drop it from every session."""
        self.stats.bad_blocks[peer.to_base58()] += 1
        log.warning("bitswap: bad block from %s (%s); excluding it from current fetches", peer, reason)
        for session in list(self.sessions):
            session.exclude(peer)
        for want in list(self.wants.values()):
            if want.pending_block.pop(peer, None) is not None:
                want.signal()

    # --- inbound -------------------------------------------------------------------------

    async def _handle_stream(self, stream) -> None:
        peer = stream.muxed_conn.peer_id
        reader = wire.MessageReader(stream)
        try:
            await yamux_wait.widen_receive_window(stream)
            while True:
                payload = await reader.read()
                if payload is None:
                    break
                self.stats.messages_received += 1
                await self.on_message(peer, wire.decode(payload))
        except ProtocolError as exc:
            self.stats.protocol_errors[peer.to_base58()] += 1
            log.info("bitswap: closing stream from %s: %s", peer, exc)
            try:
                await stream.reset()
            except Exception:
                pass
            return
        except Exception as exc:  # connection closed/reset under us: normal when a peer leaves
            log.debug("bitswap: stream from %s ended: %s: %s", peer, type(exc).__name__, exc)
        try:
            await stream.close()
        except Exception:
            pass

    async def on_message(self, peer: ID, msg: wire.Decoded) -> None:
        if msg.blocks:
            await self._on_blocks(peer, msg.blocks)
        for cid, have in msg.presences:
            self._on_presence(peer, cid, have)
        if msg.entries or msg.full:
            await self._on_wantlist(peer, msg)

    def _check_blocks(self, blocks: list[tuple[bytes | None, bytes]]) -> list[tuple]:
        """Hash and verify a message's blocks (in a worker thread: hashlib releases the GIL).

        Returns per block ("bad", reason) | ("unwanted", CidParts) | ("ok", CidParts, Want).
        The want is looked up by the multihash of the bytes, then `verify` checks the bytes
        against the CID *we asked for*, not the one the sender claims.
        """
        out: list[tuple] = []
        for prefix, data in blocks:
            if len(data) > wire.MAX_BLOCK_SIZE:
                out.append(("bad", f"block of {len(data)} bytes exceeds {wire.MAX_BLOCK_SIZE}"))
                continue
            try:
                parts = wire.cid_for_block(prefix, data)
            except ProtocolError as exc:
                out.append(("bad", str(exc)))
                continue
            want = self.wants.get(parts.multihash)  # a plain dict read: safe from a thread
            if want is None:
                out.append(("unwanted", parts))
                continue
            try:
                self.blocks.verify(want.cid, data)
            except InvalidBlock as exc:
                out.append(("bad", str(exc)))
                continue
            out.append(("ok", parts, want))
        return out

    async def _on_blocks(self, peer: ID, blocks: list[tuple[bytes | None, bytes]]) -> None:
        name = peer.to_base58()
        for _, data in blocks:
            self.stats.blocks_received += 1
            self.stats.bytes_received += len(data)
            self.stats.received_from[name] += 1
        if sum(len(d) for _, d in blocks) >= 64 * 1024:
            checked = await trio.to_thread.run_sync(self._check_blocks, blocks)
        else:  # a thread hop costs more than hashing a few small blocks
            checked = self._check_blocks(blocks)
        for (_, data), result in zip(blocks, checked):
            if result[0] == "bad":
                self.penalise(peer, result[1])
                continue
            parts = result[1]
            want = result[2] if result[0] == "ok" else None
            if want is None or want.done.is_set() or self.wants.get(want.mh) is not want:
                if parts.multihash in self._recent or await self.blocks.has(parts.to_bytes()):
                    self.stats.dup_blocks += 1
                    self.stats.dup_bytes += len(data)
                elif want is None:
                    # No want matches the hash of these bytes: a tampered block (or one nobody asked for).
                    self.penalise(peer, "block matches no wanted CID")
                continue  # (a want released while we hashed: nobody needs the block any more)
            await self._deliver(peer, want, data)

    async def _deliver(self, peer: ID, want: Want, data: bytes) -> None:
        await self._store(want.cid, data)
        if want.done.is_set():  # another copy won while we waited for a put slot (put is idempotent)
            self.stats.dup_blocks += 1
            self.stats.dup_bytes += len(data)
            return
        want.data = data
        want.done.set()
        want.pending_block.pop(peer, None)
        want.sent.pop(peer, None)
        self._remember(want.mh)
        self._cancel(want, skip=peer)
        want.signal()
        for session in list(want.sessions):
            session.delivered_by(peer)
        self.providers[peer] = None
        self.providers.move_to_end(peer)
        while len(self.providers) > 64:
            self.providers.popitem(last=False)
        self.notify_new_block(want.cid)

    async def _store(self, cid: bytes, data: bytes) -> None:
        """Write a verified block in the background (bounded by PUT_SLOTS); `flush()` waits for all."""
        if self._nursery is None:  # not running (unit tests driving on_message directly)
            await self.blocks.put(cid, data)
            return
        await self._put_slots.acquire()
        self._puts += 1
        self._puts_idle = trio.Event() if self._puts_idle.is_set() else self._puts_idle
        self._nursery.start_soon(self._put_task, cid, data)

    async def _put_task(self, cid: bytes, data: bytes) -> None:
        try:
            await self.blocks.put(cid, data)
        except Exception as exc:  # disk full, permissions: the fetch itself already has the bytes
            self.stats.put_errors += 1
            log.error("bitswap: cannot store block %s: %s", cid.hex(), exc)
        finally:
            self._put_slots.release()
            self._puts -= 1
            if self._puts == 0:
                self._puts_idle.set()

    async def flush(self) -> None:
        """Wait until every received block handed to the blockstore is written."""
        await self._puts_idle.wait()

    def _remember(self, mh: bytes) -> None:
        self._recent[mh] = None
        if len(self._recent) > RECENT_SIZE:
            self._recent.popitem(last=False)

    def _on_presence(self, peer: ID, cid: bytes, have: bool) -> None:
        try:
            mh = wire.parse_cid_bytes(cid).multihash
        except ProtocolError:
            self.stats.protocol_errors[peer.to_base58()] += 1
            return
        want = self.wants.get(mh)
        if want is None or want.done.is_set():
            return
        if have:
            want.dont_haves.discard(peer)  # it got the block since it said it had not
            if peer not in want.haves:
                want.haves.append(peer)
            for session in list(want.sessions):
                session.add_peer(peer)
        else:
            want.dont_haves.add(peer)
            want.pending_block.pop(peer, None)
        want.signal()

    async def _on_wantlist(self, peer: ID, msg: wire.Decoded) -> None:
        ledger = self.ledgers.setdefault(peer, OrderedDict())
        if msg.full:
            ledger.clear()
        for entry in msg.entries:
            try:
                parts = wire.parse_cid_bytes(entry.cid)
            except ProtocolError:
                self.stats.protocol_errors[peer.to_base58()] += 1
                continue
            mh = parts.multihash
            if entry.cancel:
                ledger.pop(mh, None)
                box = self.outboxes.get(peer)
                if box is not None:
                    box.unqueue_block(mh)
                continue
            have = await self.blocks.has(entry.cid)
            if have and not entry.want_have:
                self.outbox(peer).block(parts, mh)
                continue
            if have:
                self.outbox(peer).presence(entry.cid, mh, True)
                continue
            ledger[mh] = entry  # serve it if it arrives later
            if entry.send_dont_have:
                self.outbox(peer).presence(entry.cid, mh, False)

    def notify_new_block(self, cid: bytes) -> None:
        """A block became available locally: send it (or HAVE) to peers that asked for it."""
        parts = wire.parse_cid_bytes(cid)
        mh = parts.multihash
        for peer, ledger in list(self.ledgers.items()):
            entry = ledger.pop(mh, None)
            if entry is None:
                continue
            if entry.want_have:
                self.outbox(peer).presence(entry.cid, mh, True)
            else:
                self.outbox(peer).block(wire.parse_cid_bytes(entry.cid), mh)

    # --- introspection -------------------------------------------------------------------

    def stat(self) -> dict:
        s = self.stats
        peers = {p.to_base58() for p in self.connected_peers()} | set(s.sent_to) | set(s.received_from)
        return {
            "blocks_received": s.blocks_received,
            "bytes_received": s.bytes_received,
            "blocks_sent": s.blocks_sent,
            "bytes_sent": s.bytes_sent,
            "dup_blocks": s.dup_blocks,
            "dup_bytes": s.dup_bytes,
            "bad_blocks": sum(s.bad_blocks.values()),
            "bad_blocks_by_peer": dict(s.bad_blocks),
            "protocol_errors_by_peer": dict(s.protocol_errors),
            "messages_received": s.messages_received,
            "provider_lookups": s.provider_lookups,
            "providers_found": s.providers_found,
            "wantlist": [w.cid.hex() for w in list(self.wants.values())[:100]],
            "wantlist_size": len(self.wants),
            "peer_wantlists": {p.to_base58(): len(l) for p, l in self.ledgers.items() if l},
            "peers": sorted(peers),
            "blocks_sent_to": dict(s.sent_to),
            "blocks_received_from": dict(s.received_from),
        }
