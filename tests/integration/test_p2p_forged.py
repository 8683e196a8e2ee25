"""A raw py-libp2p peer injects bad gossip into a real daemon: each defect is rejected, counted, scored; nothing crashes."""

from __future__ import annotations

import contextlib
import time

import msgpack
import multiaddr
import trio
from eth_account import Account
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from dainode.p2p.envelope import seal
from dainode.p2p.gossip import PROTOCOLS
from dainode.p2p.host import build_host

TOPIC = "/dai/1/offers"


@contextlib.asynccontextmanager
async def raw_peer(daemon_addr: str):
    """A bare libp2p host + gossipsub (no dainode validation), meshed with the daemon on TOPIC."""
    host = build_host(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"])
    router = GossipSub(protocols=PROTOCOLS, degree=6, degree_low=4, degree_high=12, heartbeat_interval=1, spam_protection_enabled=False)
    pubsub = Pubsub(host, router, strict_signing=True)
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            sub = await pubsub.subscribe(TOPIC)
            info = info_from_p2p_addr(multiaddr.Multiaddr(daemon_addr))
            await host.connect(info)
            with trio.fail_after(10):
                while info.peer_id not in router.mesh.get(TOPIC, set()):
                    await trio.sleep(0.05)
            pubsub.dainode_sub = sub
            yield pubsub


async def rpc(node, method, **params):
    return await trio.to_thread.run_sync(lambda: node.rpc(method, **params))


async def stats_when(node, predicate, timeout=5.0):
    with trio.fail_after(timeout):
        while True:
            stats = await rpc(node, "gossip_stats")
            if predicate(stats):
                return stats
            await trio.sleep(0.05)


def forged_sender(victim, signer) -> bytes:
    env = msgpack.unpackb(seal(signer, TOPIC, "data_offer", {"price": 0}))
    env["sender"] = victim.address  # valid msgpack, signed by someone else
    return msgpack.packb(env)


def garbage_sig(acct) -> bytes:
    env = msgpack.unpackb(seal(acct, TOPIC, "data_offer", {"price": 1}))
    env["sig"] = bytes(64) + b"\x09"
    return msgpack.packb(env)


async def test_bad_gossip_is_rejected_counted_and_scored(daemon_factory):
    node = await trio.to_thread.run_sync(lambda: daemon_factory("victim").start())
    victim, mallory, honest = Account.create(), Account.create(), Account.create()
    now_ms = int(time.time() * 1000)
    async with raw_peer(node.multiaddr) as evil, raw_peer(node.multiaddr) as other:
        evil_id, other_id = evil.my_id.to_base58(), other.my_id.to_base58()
        # positive control: a genuine envelope from a raw peer is accepted
        genuine = seal(honest, TOPIC, "data_offer", {"price": 5})
        await other.publish(TOPIC, genuine)
        await stats_when(node, lambda s: s["peers"].get(other_id, {}).get("accepted") == 1)

        for data in (
            forged_sender(victim, mallory),
            garbage_sig(mallory),
            seal(mallory, TOPIC, "blob", {"x": b"\x00" * (300 * 1024)}),  # > 256 KiB default
            b"\x93\x01\x02",  # msgpack, but not an envelope
        ):
            await evil.publish(TOPIC, data)
        s = await stats_when(node, lambda s: sum(s["peers"].get(evil_id, {}).get("rejected", {}).values()) == 4)
        assert s["peers"][evil_id]["rejected"] == {"sender_mismatch": 1, "bad_signature": 1, "oversized": 1, "malformed": 1}

        stale = seal(honest, TOPIC, "x", {}, ts=now_ms - 3600_000)
        future_version = msgpack.unpackb(seal(honest, TOPIC, "x", {}))
        future_version["v"] = 99
        for data in (stale, msgpack.packb(future_version), genuine):  # `genuine` again: a replay
            await other.publish(TOPIC, data)
        s = await stats_when(node, lambda s: sum(s["peers"].get(other_id, {}).get("rejected", {}).values()) == 3)
        assert s["peers"][other_id]["rejected"] == {"stale": 1, "unknown_version": 1, "replay": 1}
        reasons = s["rejected_by_reason"]
        assert {k: reasons[k] for k in ("sender_mismatch", "bad_signature", "oversized", "malformed", "stale", "unknown_version", "replay")} == dict.fromkeys(
            ("sender_mismatch", "bad_signature", "oversized", "malformed", "stale", "unknown_version", "replay"), 1
        )
        assert s["accepted"] == 1
        # rejections feed gossipsub peer scoring (P4)
        assert s["peers"][evil_id]["score"] < s["peers"][other_id]["score"] < 0

        # keep misbehaving: below the publish threshold (-50) even valid messages are ignored
        for _ in range(4):
            await evil.publish(TOPIC, b"junk")
        await trio.sleep(0.5)
        await evil.publish(TOPIC, seal(honest, TOPIC, "x", {"late": 1}))
        await other.publish(TOPIC, seal(honest, TOPIC, "x", {"still": 1}))
        s = await stats_when(node, lambda s: s["peers"][other_id]["accepted"] == 2)
        # the score as the valid messages arrived (it decays back toward the threshold afterwards: read half a
        # second later it was once -48.6 on a slow machine)
        score_then = s["peers"][evil_id]["score"]
        await trio.sleep(0.5)
        s = await rpc(node, "gossip_stats")
        assert s["peers"][evil_id]["accepted"] == 0 and score_then < -50, (score_then, s["peers"][evil_id])
        recent = await rpc(node, "gossip_recent", topic=TOPIC)
        assert [m["body"] for m in recent] == [{"price": 5}, {"still": 1}]

        # nothing crashed: the daemon answers and its own gossip still reaches the raw peers
        assert (await rpc(node, "node_info"))["peer_id"] == node.info["peer_id"]
        await rpc(node, "gossip_publish", topic=TOPIC, body={"alive": True})
        with trio.fail_after(5):
            while True:
                msg = await other.dainode_sub.get()
                if msgpack.unpackb(msg.data)["body"] == {"alive": True}:
                    break
    assert node.proc.poll() is None
