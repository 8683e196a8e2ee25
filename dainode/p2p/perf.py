"""CPU trims for py-libp2p 0.8.1 gossip, measured with cProfile (see docs/p2p.md, "CPU per message").

Each is small, explained, and upstreamable; `install()` is idempotent and process-wide (one node
per process; in-process test nodes share it harmlessly).
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections import OrderedDict

import libp2p.pubsub.gossipsub as _gossipsub_mod
import libp2p.pubsub.pubsub as _pubsub_mod
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.utils.varint import decode_uvarint

_installed = False
RECORD_CACHE_SIZE = 4096
READ_AHEAD = 64 * 1024
LOCAL_RECORD_TTL_S = 2.0


async def _go_style_window_update(self, *, bytes_read: int = 0) -> None:
    """Send a yamux WINDOW_UPDATE only once half the receive window is consumed (go-yamux's rule).

    0.8.1 answers nearly every read with a WINDOW_UPDATE frame (its "partial slack" branch
    fires for any read smaller than half the window, whatever PY_YAMUX_RELEASE_ON_READ
    says), so every small gossip message costs a second frame and two more wake-ups.
    """
    total = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta > 0 and delta >= self._grow_threshold():
            total = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


def batch_yamux_window_updates() -> None:
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    _go_style_window_update.__wrapped__ = YamuxStream._auto_tune_and_send_window_update  # type: ignore[attr-defined]
    YamuxStream._auto_tune_and_send_window_update = _go_style_window_update


# Bytes read past the end of the last RPC, per pubsub stream (dropped with the stream).
_read_ahead: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def read_rpc_buffered(stream, max_length: int) -> bytes:
    """Read one uvarint-length-prefixed pubsub RPC, reading ahead like go-msgio's bufio reader.

    0.8.1's `read_varint_prefixed_bytes_limited` reads the length prefix one byte per call,
    so every RPC (a 1 KB message has a 2-byte prefix) costs three stream reads, and each goes
    through NetStream's state lock, yamux's stream lock, half a dozen eagerly formatted debug
    strings and a window-update check. This reads whatever the stream has (up to READ_AHEAD)
    and keeps the surplus for the next call: usually one read per RPC. The length is still
    checked against `max_length` before the body is read.
    """
    buf = _read_ahead.pop(stream, None) or bytearray()
    end = -1
    while end < 0:
        end = next((i for i in range(min(len(buf), 10)) if not buf[i] & 0x80), -1)
        if end < 0:
            if len(buf) >= 10:
                raise ParseError("Varint decoding error: integer exceeds maximum size of 64 bits")
            buf += await _read_some(stream, READ_AHEAD, expected=1, got=0)
    length = decode_uvarint(bytes(buf[: end + 1]))
    if length > max_length:
        raise MessageTooLarge(f"Message length {length} exceeds maximum allowed {max_length}")
    del buf[: end + 1]
    while len(buf) < length:
        buf += await _read_some(stream, max(READ_AHEAD, length - len(buf)), expected=length, got=len(buf))
    if len(buf) > length:
        _read_ahead[stream] = buf[length:]
    return bytes(buf[:length])


async def _read_some(stream, n: int, *, expected: int, got: int) -> bytes:
    chunk = await stream.read(n)
    if not chunk:
        raise IncompleteReadError(f"Incomplete message: expected {expected}, got {got}", expected_bytes=expected, received_bytes=got)
    return chunk


class _RecordCache:
    """Remembers signed peer records (per receiving host and sending peer) that already verified."""

    def __init__(self, size: int = RECORD_CACHE_SIZE):
        self.size = size
        self._ok: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def wrap(self, original):
        def maybe_consume_signed_record(msg, host, peer_id) -> bool:
            # Every pubsub RPC from a peer carries the same signed peer record; 0.8.1 re-parses
            # and re-verifies it (ed25519) and rewrites the peerstore each time. The bytes are
            # immutable, so a record that verified once for this peer verifies again.
            if not msg.HasField("senderRecord"):
                return True
            key = (host.get_id().to_bytes(), peer_id.to_bytes(), hashlib.blake2b(msg.senderRecord, digest_size=16).digest())
            if key in self._ok:
                self._ok.move_to_end(key)
                self.hits += 1
                return True
            self.misses += 1
            ok = original(msg, host, peer_id)
            if ok:
                self._ok[key] = None
                if len(self._ok) > self.size:
                    self._ok.popitem(last=False)
            return ok

        maybe_consume_signed_record.__wrapped__ = original  # type: ignore[attr-defined]
        return maybe_consume_signed_record


class _LocalRecordCache:
    """Our own signed peer record, rebuilt at most every LOCAL_RECORD_TTL_S per host."""

    def __init__(self, ttl: float = LOCAL_RECORD_TTL_S):
        self.ttl = ttl
        self._by_host: dict[bytes, tuple[float, tuple[bytes, bool]]] = {}

    def wrap(self, original):
        def env_to_send_in_RPC(host):
            # 0.8.1 calls host.get_addrs() (building and filtering multiaddrs) on every outgoing
            # RPC just to check whether the cached record is still current. Listen addresses
            # change rarely; re-checking every couple of seconds is plenty.
            key = host.get_id().to_bytes()
            now = time.monotonic()
            hit = self._by_host.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
            value = original(host)
            self._by_host[key] = (now, value)
            return value

        env_to_send_in_RPC.__wrapped__ = original  # type: ignore[attr-defined]
        return env_to_send_in_RPC


record_cache = _RecordCache()
local_record_cache = _LocalRecordCache()


def install() -> None:
    global _installed
    if _installed:
        return
    batch_yamux_window_updates()
    # only pubsub's read loop (one reader per stream) uses the read-ahead version
    _pubsub_mod.read_varint_prefixed_bytes_limited = read_rpc_buffered
    # pubsub checks the record of every RPC, and gossipsub's handle_rpc checks it again.
    cached = record_cache.wrap(_pubsub_mod.maybe_consume_signed_record)
    _pubsub_mod.maybe_consume_signed_record = cached
    _gossipsub_mod.maybe_consume_signed_record = cached
    _gossipsub_mod.env_to_send_in_RPC = local_record_cache.wrap(_gossipsub_mod.env_to_send_in_RPC)
    _pubsub_mod.env_to_send_in_RPC = local_record_cache.wrap(_pubsub_mod.env_to_send_in_RPC)
    _installed = True
