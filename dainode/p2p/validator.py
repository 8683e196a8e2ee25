"""Gossip topic validation: size, envelope, signature, time window and replay checks, with counters per reason and peer."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, OrderedDict
from typing import Callable

from dainode import metrics
from dainode.config import GossipConfig
from dainode.errors import GossipRejected
from dainode.p2p.envelope import GossipMessage, open_envelope, signing_payload, verify_envelope

log = logging.getLogger("dainode.p2p")

REASONS = (
    "oversized",
    "malformed",
    "unknown_version",
    "bad_signature",
    "sender_mismatch",
    "stale",
    "replay",
)
MAX_TRACKED_PEERS = 1024
MAX_SEEN = 200_000


class SeenCache:
    """Content hashes of accepted envelopes, remembered for `ttl` seconds (insertion-ordered, so expiry is O(expired))."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_size: int = MAX_SEEN):
        self.ttl = ttl
        self.clock = clock
        self.max_size = max_size
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def _expire(self) -> None:
        now = self.clock()
        while self._entries:
            key, expiry = next(iter(self._entries.items()))
            if expiry > now and len(self._entries) <= self.max_size:
                break
            self._entries.popitem(last=False)

    def __contains__(self, key: bytes) -> bool:
        self._expire()
        return key in self._entries

    def add(self, key: bytes) -> None:
        self._expire()
        self._entries[key] = self.clock() + self.ttl

    def add_if_new(self, key: bytes) -> bool:
        if key in self:
            return False
        self.add(key)
        return True

    def __len__(self) -> int:
        return len(self._entries)


class PeerStats:
    __slots__ = ("accepted", "rejected")

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected: Counter[str] = Counter()


class GossipValidator:
    """Turns raw pubsub payloads into GossipMessages or GossipRejected, counting both.

    The checks are ordered cheapest first, so a flood of junk costs little: size,
    decode, version, time window, replay, and only then the signature recovery.
    """

    def __init__(
        self,
        config: GossipConfig,
        *,
        local_peer_id: str = "",
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.local_peer_id = local_peer_id
        self.wall_clock = wall_clock
        if config.seen_ttl_s < 2 * config.time_window_s:
            # A replay older than the seen-cache but still inside the time window would pass.
            log.warning(
                "gossip.seen_ttl_s (%s) is shorter than 2 x gossip.time_window_s (%s): old replays may be accepted",
                config.seen_ttl_s,
                config.time_window_s,
            )
        self.seen = SeenCache(config.seen_ttl_s, mono_clock)
        self.accepted: Counter[str] = Counter()  # by topic
        self.rejected: Counter[str] = Counter()  # by reason
        self.peers: OrderedDict[str, PeerStats] = OrderedDict()

    def _peer(self, peer_id: str) -> PeerStats:
        stats = self.peers.get(peer_id)
        if stats is None:
            stats = self.peers[peer_id] = PeerStats()
            if len(self.peers) > MAX_TRACKED_PEERS:
                self.peers.popitem(last=False)
        else:
            self.peers.move_to_end(peer_id)
        return stats

    def check(self, topic: str, data: bytes, *, forwarder: str, origin: str, msg_id: str = "") -> GossipMessage:
        """Validate one message; `forwarder` is the peer that sent it to us, `origin` the peer that published it."""
        try:
            msg = self._check(topic, data, forwarder=forwarder, origin=origin, msg_id=msg_id)
        except GossipRejected as exc:
            self.rejected[exc.reason] += 1
            metrics.gossip(topic, exc.reason)
            self._peer(forwarder).rejected[exc.reason] += 1
            log.debug("rejected gossip on %s from %s: %s", topic, forwarder, exc)
            raise
        self.accepted[topic] += 1
        metrics.gossip(topic, "accepted")
        self._peer(forwarder).accepted += 1
        return msg

    def _check(self, topic: str, data: bytes, *, forwarder: str, origin: str, msg_id: str) -> GossipMessage:
        limit = self.config.max_message_size
        if len(data) > limit:
            raise GossipRejected("oversized", f"{len(data)} bytes > gossip.max_message_size {limit}")
        # Our own publishes were signed a moment ago by this process: skip the recovery.
        local = bool(self.local_peer_id) and forwarder == self.local_peer_id and origin == self.local_peer_id
        env = open_envelope(topic, data, verify=False)
        now = self.wall_clock()
        skew = abs(now * 1000 - env["ts"]) / 1000
        if skew > self.config.time_window_s:
            raise GossipRejected("stale", f"timestamp {skew:.0f} s from local time (window {self.config.time_window_s} s)")
        # Content identity (not the signature bytes: ECDSA signatures are malleable). Looked up
        # before the (costlier) signature check, but recorded only after it, so a forged copy
        # cannot poison the cache against the genuine message.
        key = hashlib.sha256(signing_payload(topic, env["v"], env["type"], env["body"], env["raw_sender"], env["ts"])).digest()
        if key in self.seen:
            raise GossipRejected("replay", "this envelope was already accepted")
        if not local:
            verify_envelope(topic, env)
        self.seen.add(key)
        return GossipMessage(
            topic=topic,
            v=env["v"],
            type=env["type"],
            body=env["body"],
            sender=env["sender"],
            ts=env["ts"],
            peer_id=origin,
            msg_id=msg_id,
            received_at=now,
        )

    def stats(self) -> dict:
        return {
            "accepted": sum(self.accepted.values()),
            "accepted_by_topic": dict(self.accepted),
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": {r: self.rejected.get(r, 0) for r in REASONS},
            "peers": {
                pid: {"accepted": s.accepted, "rejected": dict(s.rejected)} for pid, s in self.peers.items()
            },
            "seen_cache_size": len(self.seen),
        }
