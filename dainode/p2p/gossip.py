"""Signed gossip over py-libp2p gossipsub: join topics, publish envelopes, deliver typed messages to subscribers."""

from __future__ import annotations

import math
import statistics
import time
from collections import OrderedDict, deque
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.tools.anyio_service import background_trio_service

from dainode.config import GossipConfig
from dainode.errors import GossipRejected, P2PError
from dainode.p2p import perf
from dainode.p2p.envelope import GossipMessage, seal
from dainode.p2p.topics import TopicRegistry, check_topic_name
from dainode.service import Service

# js-libp2p gossipsub 17 speaks 1.2/1.1/1.0; py-libp2p's 1.3+ extensions are not needed here.
PROTOCOLS = [PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID]
RECENT_PER_TOPIC = 256
SUBSCRIBER_BUFFER = 1024
# py-libp2p 0.8.1 drops silently beyond 32 queued RPCs per peer (go-libp2p's default, but go
# drains its queue far faster). A burst of publishes then loses messages; see test_gossip_burst.
OUTBOUND_QUEUE_SIZE = 1024
MAX_PENDING_DECODED = 4096


def score_params() -> ScoreParams:
    """Peer scoring fed by our validator's rejections (P4, invalid messages).

    Each rejection costs 10 points, decaying 10% per heartbeat. Below -50 a peer's
    messages are ignored and (py-libp2p applies the gossip threshold to mesh forwarding
    too) nothing is forwarded to it; below -80 it is graylisted. A few rejections from an
    honest peer (say clock skew) therefore cost nothing; a stream of junk isolates the
    sender within a handful of messages. IP colocation (P7) stays off: tests and small
    clusters run many peers on one address.
    """
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=10.0, cap=100.0, decay=0.9),
        publish_threshold=-50.0,
        gossip_threshold=-50.0,
        graylist_threshold=-80.0,
        accept_px_threshold=0.0,
    )


class DaiGossipSub(GossipSub):
    """GossipSub with go-libp2p's IDONTWANT and opportunistic-grafting rules.

    IDONTWANT: 0.8.1 sends an IDONTWANT control RPC to every v1.2 mesh peer for every message,
    including the ones we publish ourselves. go-libp2p skips own messages and messages below
    1 KiB. In py-libp2p one control RPC costs about as much CPU as the duplicate it prevents
    (noise + yamux frame, signed record, wake-ups), so we send it only for messages of at
    least IDONTWANT_MIN_BYTES, and never for our own.

    Opportunistic grafting: 0.8.1 runs it on *every* heartbeat and grafts up to two
    non-mesh peers whose score is >= half the mesh median, i.e. any peer when all scores are
    0 (the normal case). The mesh then grows by two peers a second until it exceeds D_high
    and is pruned back to D, so it averages ~D_high*3/4 instead of ~D, and every extra mesh
    peer is one more duplicate copy of every message, for every node. go-libp2p grafts
    opportunistically only every OPPORTUNISTIC_GRAFT_TICKS heartbeats and only when the
    median mesh score is below a threshold (the mesh is doing badly); we apply that gate.
    """

    IDONTWANT_MIN_BYTES = 16 * 1024
    OPPORTUNISTIC_GRAFT_TICKS = 60  # go-libp2p GossipSubOpportunisticGraftTicks
    # Our scores are never positive (only P4 penalties), so a median below 0 means mesh
    # peers have been sending invalid messages: then look for better ones.
    OPPORTUNISTIC_GRAFT_THRESHOLD = 0.0

    _send_idontwant = True
    _graft_ticks = 0

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        own = self.pubsub is not None and msg_forwarder == self.pubsub.my_id
        # Read by _emit_idontwant_for_message below, which the library calls before its
        # first checkpoint in publish(), so no other publish can interleave.
        self._send_idontwant = not own and len(pubsub_msg.data) >= self.IDONTWANT_MIN_BYTES
        await super().publish(msg_forwarder, pubsub_msg)

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids) -> None:
        if self._send_idontwant:
            await super()._emit_idontwant_for_message(msg_id, topic_ids)

    def mesh_heartbeat(self):
        self._graft_ticks += 1
        return super().mesh_heartbeat()

    def _perform_opportunistic_grafting(self, topic: str, peers_to_graft) -> int:
        if self._graft_ticks % self.OPPORTUNISTIC_GRAFT_TICKS != 0 or self.scorer is None:
            return 0
        scores = [self.scorer.score(p, [topic]) for p in self.mesh.get(topic, ())]
        if not scores or statistics.median(scores) >= self.OPPORTUNISTIC_GRAFT_THRESHOLD:
            return 0
        return super()._perform_opportunistic_grafting(topic, peers_to_graft)


class _SizedQueues(dict):
    """`Pubsub.peer_queues` that enlarges each per-peer RpcQueue as the library inserts it.

    0.8.1 builds `RpcQueue()` with the 32-entry default inside `_handle_new_peer` and offers
    no parameter; this is the smallest hook that changes it (upstreamable as a constructor arg).
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def __setitem__(self, key, queue) -> None:
        inner = getattr(queue, "_queue", None)
        if inner is not None:
            inner.max_size = self.size
        super().__setitem__(key, queue)


class DaiPubsub(Pubsub):
    """Pubsub that hands accepted messages straight to the Gossip layer, and drops duplicates early.

    The library delivers to subscribers through a 32-slot channel and drops (with a log
    line) when a reader is slow; we deliver synchronously to our own dispatcher instead,
    which has per-subscriber buffers and counts what it cannot deliver.
    """

    def __init__(self, host: IHost, router: GossipSub, *, on_message, outbound_queue_size: int, **kwargs):
        super().__init__(host, router, **kwargs)
        self._on_message = on_message
        self.peer_queues = _SizedQueues(outbound_queue_size)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        self._on_message(publish_message)

    def _is_subscribed_to_msg(self, msg: rpc_pb2.Message) -> bool:
        # 0.8.1's read loop asks this for every message of every incoming RPC and then spawns
        # a service task (push_msg) per message, whose first real step is the seen-cache
        # lookup. About D-1 of the D copies the mesh delivers are duplicates, and the task
        # spawn is their largest cost, so answer the lookup here. push_msg would drop the
        # copy at that lookup anyway (before signature checks, validation and scoring).
        return super()._is_subscribed_to_msg(msg) and not self._is_msg_seen(msg)


class Subscription:
    """Typed messages of one topic. Use as `with gossip.subscribe(t) as sub: async for msg in sub: ...`."""

    def __init__(self, gossip: "Gossip", topic: str, buffer: int):
        self.topic = topic
        self._gossip = gossip
        self._send, self._receive = trio.open_memory_channel[GossipMessage](buffer)
        self.dropped = 0

    def _deliver(self, msg: GossipMessage) -> None:
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            self.dropped += 1
            self._gossip.undelivered += 1
            self._gossip.log.warning("subscriber of %s is too slow: dropped a message (%d so far)", self.topic, self.dropped)
        except trio.ClosedResourceError:
            pass

    async def receive(self) -> GossipMessage:
        return await self._receive.receive()

    def __aiter__(self):
        return self

    async def __anext__(self) -> GossipMessage:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._gossip._unsubscribe(self)
        self._send.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()


class Gossip(Service):
    """The node's gossip: joins registered topics, validates, signs, publishes, dispatches."""

    name = "p2p"

    def __init__(self, host: IHost, account, config: GossipConfig, validator, topics: TopicRegistry | None = None):
        perf.install()
        self.host = host
        self.account = account
        self.config = config
        self.validator = validator
        self.topics = topics or TopicRegistry()
        self.router = DaiGossipSub(
            protocols=PROTOCOLS,
            # go-libp2p defaults to D=6, D_lo=5, D_hi=12. Each node receives about |mesh| copies
            # of every message and in Python each copy costs ~0.5-1 ms of CPU (both ends), so
            # small, CPU-bound clusters may prefer a lower D (bench/gossip.py --degree). With
            # the mesh kept near D (DaiGossipSub), D_hi = D+2 measured no cheaper than 2D.
            degree=config.mesh_degree,
            degree_low=max(1, config.mesh_degree - 2),
            degree_high=2 * config.mesh_degree,
            # 0.8.1 defaults to 120 s (go-libp2p: 1 s); mesh repair after a restart waits for it.
            heartbeat_interval=config.heartbeat_s,  # type: ignore[arg-type]
            heartbeat_initial_delay=0.1,
            # Library default: 10 msgs/s per peer and topic, *including our own publishes*,
            # silently dropped. Rate abuse is handled by our validator + peer scoring instead.
            spam_protection_enabled=False,
            # 0.8.1's "adaptive gossip" rates network health from scores that are never
            # positive here, finds it poor, and then sets the heartbeat to 30-60 s (whatever
            # heartbeat_interval says) and D_low/D_high up to +3/+4: mesh repair stalls and
            # meshes only grow. go-libp2p has no such mode; keep the configured values.
            adaptive_gossip_enabled=False,
            score_params=score_params(),
            do_px=False,
        )
        self.pubsub = DaiPubsub(
            host,
            self.router,
            on_message=self._on_accepted,
            outbound_queue_size=OUTBOUND_QUEUE_SIZE,
            strict_signing=True,  # js-libp2p's StrictSign default; binds each message to its origin peer id
            seen_ttl=max(1, math.ceil(config.seen_ttl_s)),
            # Frames up to 4 x the message limit still reach the validator (and get counted);
            # only absurd frames are cut off by the library at the stream level.
            max_inbound_rpc_size=max(1 << 20, 4 * config.max_message_size),
        )
        self._joined: set[str] = set()
        self._subs: dict[str, list[Subscription]] = {}
        self._decoded: OrderedDict[bytes, GossipMessage] = OrderedDict()
        self.recent: dict[str, deque[GossipMessage]] = {}
        self.peer_addresses: dict[str, str] = {}  # libp2p peer id -> eth address, from signed gossip
        self.published = 0
        self._last_ts = 0
        self._local_pending: dict[bytes, GossipMessage | None] = {}
        self.undelivered = 0
        self.stats_hooks: dict[str, Any] = {}  # name -> () -> dict: checks done above this layer (e.g. the offer index)
        self._nursery: trio.Nursery | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.pubsub), background_trio_service(self.router):
            await self.pubsub.wait_until_ready()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for topic in self.topics.names():
                    await self.join(topic)
                task_status.started()
                await trio.sleep_forever()

    async def join(self, topic: str) -> None:
        """Subscribe the node to `topic` (validator installed first, so nothing unvalidated gets in)."""
        check_topic_name(topic)
        if topic in self._joined:
            return
        self.topics.register(topic)
        self.pubsub.set_topic_validator(topic, self._validate, False)
        self._joined.add(topic)
        self.recent.setdefault(topic, deque(maxlen=RECENT_PER_TOPIC))
        await self.pubsub.subscribe(topic)
        self.log.debug("joined gossip topic %s", topic)

    # --- API for roles ------------------------------------------------------------------

    def subscribe(self, topic: str, *, buffer: int = SUBSCRIBER_BUFFER) -> Subscription:
        """Typed messages on `topic` from now on (the node's own publishes included, as in go-libp2p)."""
        check_topic_name(topic)
        if topic not in self._joined:
            if self._nursery is None:
                raise P2PError(f"gossip is not running yet; cannot subscribe to {topic}")
            self._nursery.start_soon(self.join, topic)
        sub = Subscription(self, topic, buffer)
        self._subs.setdefault(topic, []).append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.topic, [])
        if sub in subs:
            subs.remove(sub)

    async def publish(self, topic: str, type_: str, body: dict[str, Any]) -> GossipMessage:
        """Sign `body` as a `type_` message and publish it on `topic`; returns the message as peers see it."""
        await self.join(topic)
        # Strictly increasing timestamps: the same body published twice within one millisecond
        # would otherwise be byte-identical and rejected as a replay.
        ts = max(int(time.time() * 1000), self._last_ts + 1)
        self._last_ts = ts
        try:
            data = seal(self.account, topic, type_, body, ts=ts)
        except (TypeError, ValueError) as exc:
            raise P2PError(f"cannot publish on {topic}: {exc}") from exc
        if len(data) > self.config.max_message_size:
            raise P2PError(
                f"message of {len(data)} bytes exceeds gossip.max_message_size ({self.config.max_message_size}); "
                "put large data on IPFS and gossip its CID"
            )
        self._local_pending[data] = None
        try:
            await self.pubsub.publish(topic, data)
            accepted = self._local_pending.get(data)
        finally:
            del self._local_pending[data]
        if accepted is None:
            raise P2PError(f"message on {topic} was not accepted locally (see gossip_stats)")
        self.published += 1
        return accepted

    # --- pubsub hooks -------------------------------------------------------------------

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        topic = msg.topicIDs[0] if len(msg.topicIDs) == 1 else ""
        fwd = forwarder.to_base58()
        try:
            origin = ID(msg.from_id).to_base58()
        except Exception:
            origin = "?"
        try:
            if not topic:
                raise GossipRejected("malformed", f"expected one topic per message, got {len(msg.topicIDs)}")
            decoded = self.validator.check(topic, msg.data, forwarder=fwd, origin=origin, msg_id=msg_id_hex(self.pubsub, msg))
        except GossipRejected:
            return False
        key = self.pubsub.get_message_id(msg)
        self._decoded[key] = decoded
        if len(self._decoded) > MAX_PENDING_DECODED:
            self._decoded.popitem(last=False)
        return True

    def _on_accepted(self, msg: rpc_pb2.Message) -> None:
        decoded = self._decoded.pop(self.pubsub.get_message_id(msg), None)
        if decoded is None:  # validated long ago and evicted; cannot happen under normal load
            return
        self.peer_addresses[decoded.peer_id] = decoded.sender
        if msg.data in self._local_pending:
            self._local_pending[msg.data] = decoded
        recent = self.recent.setdefault(decoded.topic, deque(maxlen=RECENT_PER_TOPIC))
        recent.append(decoded)
        for sub in list(self._subs.get(decoded.topic, ())):
            sub._deliver(decoded)

    def mesh_peers(self) -> set[ID]:
        """Peers in our gossipsub mesh on any topic (the connections most worth keeping)."""
        out: set[ID] = set()
        for peers in self.router.mesh.values():
            out |= peers
        return out

    # --- diagnostics --------------------------------------------------------------------

    def recent_messages(self, topic: str, limit: int) -> list[GossipMessage]:
        items = list(self.recent.get(topic, ()))
        return items[-limit:] if limit > 0 else []

    def stats(self) -> dict:
        out = self.validator.stats()
        topics = sorted(self._joined)
        scorer = self.router.scorer
        for peer_id, entry in out["peers"].items():
            try:
                entry["score"] = round(scorer.score(ID.from_base58(peer_id), topics), 3) if scorer else None
            except Exception:
                entry["score"] = None
        out["published"] = self.published
        out["undelivered_to_subscribers"] = self.undelivered
        out["topics"] = {t: len(self.pubsub.peer_topics.get(t, ())) for t in topics}
        out["mesh"] = {t: len(self.router.mesh.get(t, ())) for t in topics}
        out["time"] = time.time()
        for name, fn in self.stats_hooks.items():
            out[name] = fn()
        return out


def msg_id_hex(pubsub: Pubsub, msg: rpc_pb2.Message) -> str:
    try:
        return pubsub.get_message_id(msg).hex()
    except Exception:
        return ""
