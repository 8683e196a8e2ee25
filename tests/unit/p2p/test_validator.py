"""The gossip validator: every rejection reason, counters per reason and per peer, replay window."""

from __future__ import annotations

import pytest
from eth_account import Account

from dainode.config import GossipConfig
from dainode.errors import GossipRejected
from dainode.p2p.envelope import seal
from dainode.p2p.validator import GossipValidator, SeenCache

TOPIC = "/dai/1/tasks"


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup():
    wall, mono = Clock(1_800_000_000.0), Clock(100.0)
    cfg = GossipConfig(max_message_size=2048, time_window_s=60, seen_ttl_s=300)
    return GossipValidator(cfg, local_peer_id="me", wall_clock=wall, mono_clock=mono), wall, mono, Account.create()


def _reject(v, data, peer="peerA") -> str:
    with pytest.raises(GossipRejected) as info:
        v.check(TOPIC, data, forwarder=peer, origin=peer)
    return info.value.reason


def test_accept_and_counts(setup):
    v, wall, _, acct = setup
    msg = v.check(TOPIC, seal(acct, TOPIC, "round", {"n": 1}, ts=int(wall.t * 1000)), forwarder="peerA", origin="peerO", msg_id="ab")
    assert (msg.type, msg.body, msg.sender, msg.peer_id, msg.msg_id) == ("round", {"n": 1}, acct.address, "peerO", "ab")
    assert msg.received_at == wall.t
    stats = v.stats()
    assert stats["accepted"] == 1 and stats["accepted_by_topic"] == {TOPIC: 1}
    assert stats["peers"]["peerA"] == {"accepted": 1, "rejected": {}}


def test_oversized_rejected_before_decoding(setup):
    v, *_ = setup
    assert _reject(v, b"\x00" * 2049) == "oversized"


def test_time_window(setup):
    v, wall, _, acct = setup
    now_ms = int(wall.t * 1000)
    assert _reject(v, seal(acct, TOPIC, "x", {}, ts=now_ms - 61_000)) == "stale"
    assert _reject(v, seal(acct, TOPIC, "x", {}, ts=now_ms + 61_000)) == "stale"
    v.check(TOPIC, seal(acct, TOPIC, "x", {}, ts=now_ms - 59_000), forwarder="p", origin="p")


def test_replay_within_ttl_then_forgotten(setup):
    v, wall, mono, acct = setup
    data = seal(acct, TOPIC, "x", {"k": 1}, ts=int(wall.t * 1000))
    v.check(TOPIC, data, forwarder="p1", origin="p1")
    assert _reject(v, data, peer="p2") == "replay"
    mono.t += 301  # seen_ttl_s elapsed: the hash is forgotten (the time window still guards it)
    v.check(TOPIC, data, forwarder="p3", origin="p3")


def test_counts_by_reason_and_peer(setup):
    v, wall, _, acct = setup
    other = Account.create()
    import msgpack

    env = msgpack.unpackb(seal(other, TOPIC, "x", {}, ts=int(wall.t * 1000)))
    env["sender"] = acct.address
    forged = msgpack.packb(env)
    assert _reject(v, forged, peer="evil") == "sender_mismatch"
    assert _reject(v, b"junk", peer="evil") == "malformed"
    assert _reject(v, b"junk", peer="other") == "malformed"
    stats = v.stats()
    assert stats["rejected"] == 3
    assert stats["rejected_by_reason"]["malformed"] == 2 and stats["rejected_by_reason"]["sender_mismatch"] == 1
    assert stats["peers"]["evil"]["rejected"] == {"sender_mismatch": 1, "malformed": 1}
    assert stats["peers"]["other"]["rejected"] == {"malformed": 1}


def test_own_messages_skip_signature_recovery_only(setup):
    v, wall, _, acct = setup
    import msgpack

    env = msgpack.unpackb(seal(acct, TOPIC, "x", {}, ts=int(wall.t * 1000)))
    env["sig"] = b"\x00" * 65
    data = msgpack.packb(env)
    v.check(TOPIC, data, forwarder="me", origin="me")  # locally published: already trusted
    assert _reject(v, data, peer="someone") == "replay"
    fresh = msgpack.unpackb(seal(acct, TOPIC, "y", {}, ts=int(wall.t * 1000)))
    fresh["sig"] = b"\x00" * 65
    assert _reject(v, msgpack.packb(fresh), peer="someone") == "bad_signature"
    with pytest.raises(GossipRejected):
        v.check(TOPIC, b"\x00" * 4096, forwarder="me", origin="me")


def test_forged_copy_does_not_poison_the_seen_cache(setup):
    v, wall, _, acct = setup
    import msgpack

    genuine = seal(acct, TOPIC, "x", {"k": 2}, ts=int(wall.t * 1000))
    forged = msgpack.unpackb(genuine)
    forged["sig"] = b"\x00" * 65
    assert _reject(v, msgpack.packb(forged), peer="evil") == "bad_signature"
    v.check(TOPIC, genuine, forwarder="good", origin="good")


def test_seen_cache_is_bounded():
    clock = Clock(0.0)
    cache = SeenCache(ttl=10, clock=clock, max_size=3)
    for i in range(5):
        assert cache.add_if_new(bytes([i]))
    assert len(cache) <= 4
    assert not cache.add_if_new(bytes([4]))
    clock.t = 11
    assert cache.add_if_new(bytes([4]))
