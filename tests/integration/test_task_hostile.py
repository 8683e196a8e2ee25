"""Hostile participants in a real task: relay (dev chain) + model provider + 3 honest `data,compute` nodes + one whose
compute role is patched (tests/integration/hostile_compute.py) to send a different bad update each round.

In the same run a bare libp2p peer floods an honest provider with negotiation requests and malformed msgpack, and
nodes gossip task announcements that do not match the chain. Every misbehaviour is rejected with a logged reason and
counted in `task status`; the rounds go on; the task completes and `task verify` PASSes on the relay; the hostile
provider is paid compute only for its accepted rounds; the sign-flipped x10 update of the last round (Multi-Krum)
does not pull the accuracy down.
"""

from __future__ import annotations

import json
import time

import pytest
import trio

from dainode.roles.negotiate import RATE_BURST, RATE_PER_S
from tests.integration.daemon import DaemonProcess
from tests.integration.raw_negotiate import frame, raw_peer
from tests.integration.task_net import (COMPUTE_PRICE, Launched, compute_pay, final_status, fund, manifest, offer_all,
                                        shards, wait_for)

PLAN = {"0": "honest", "1": "replay", "2": "wrong_shape", "3": "non_finite", "4": "wrong_key", "5": "wrong_round",
        "6": "other_cid", "7": "poison"}
ROUNDS = 8
# the reason the model provider gives for each bad round (documents.py's order of checks)
EXPECTED = {"wrong_round": 2, "wrong_shape": 1, "non_finite": 1, "undecryptable": 1, "wrong_sender": 1}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    nodes: list[DaemonProcess] = []
    try:
        relay = DaemonProcess(base, "relay", roles=None, chain="dev")
        nodes.append(relay)
        relay.start(timeout=120)
        url = relay.rpc("chain_info")["endpoint"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(relay.data_dir / "deployment.json")}
        mp = DaemonProcess(base, "mp", roles=["model"], chain=url, bootstrap=[relay.multiaddr], env=env)
        nodes.append(mp)
        mp.start(timeout=120)
        fund(relay, mp)
        providers = []
        for i in range(4):
            kw = dict(roles=["data", "compute"], chain=url, bootstrap=[relay.multiaddr, mp.multiaddr], env=env)
            n = Launched(base, "evil", launcher="hostile_compute.py", **kw) if i == 3 else DaemonProcess(base, f"p{i}", **kw)
            nodes.append(n)
            providers.append(n)
        for n in providers:
            n.start(timeout=120)
            fund(relay, n)
        (providers[3].data_dir / "hostile-plan.json").write_text(json.dumps(PLAN))
        yield {"relay": relay, "mp": mp, "providers": providers, "url": url, "files": shards(base, 4)}
    finally:
        for n in nodes:
            n.stop()


async def flood(addr: str) -> dict:
    """200 match requests from one peer, 3 frames that are not msgpack, then one request from a fresh peer."""
    out = {"replies": [], "bad": [], "fresh": None}
    req = frame({"v": 1, "type": "match_request", "task_id": 0})
    async with raw_peer(addr) as send:
        limiter = trio.CapacityLimiter(25)  # 25 streams at a time on the one connection

        async def one():
            async with limiter:
                out["replies"].append(await send(req))

        t0 = time.monotonic()
        async with trio.open_nursery() as n:
            for _ in range(200):
                n.start_soon(one)
        out["elapsed_s"] = time.monotonic() - t0
        for garbage in (b"\xc1\xc1\xc1", b"\x92\x01", b"\xde\xff\xff"):  # never-used byte, short array, short map
            out["bad"].append(await send(garbage))
    async with raw_peer(addr) as send:
        out["fresh"] = await send(req)
    return out


def test_hostile_provider_flood_and_lying_gossip_are_rejected_counted_and_the_task_completes(net):
    relay, mp, providers = net["relay"], net["mp"], net["providers"]
    offer_all(providers, net["files"])
    wait_for("the model provider indexed the 4 data offers",
             lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= 4, 60)
    toml = manifest(rounds=ROUNDS, providers=4, quorum=3, aggregation="multikrum",
                    params="[task.aggregation_params]\nf = 1", name="digits-hostile")
    created = mp.rpc("task_create", manifest_toml=toml, grace_ms=4000, timeout=300)
    task_id = created["task_id"]
    info = relay.rpc("chain_info")
    real = {"task_id": task_id, "task_address": info["contracts"]["TrainingTask"], "chain_id": info["chain_id"],
            "manifest_cid": created["manifest_cid"], "pool_wei": created["pool_wei"], "rounds": ROUNDS, "providers": 4}
    evil = providers[3]
    evil.rpc("gossip_publish", topic="/dai/1/tasks", type="task", body=real)  # not the task's model provider
    mp.rpc("gossip_publish", topic="/dai/1/tasks", type="task", body={**real, "manifest_cid": created["key_cid"]})
    evil.rpc("gossip_publish", topic="/dai/1/tasks", type="task", body={**real, "task_id": task_id + 1000})

    wait_for("round 2 is published", lambda: mp.rpc("task_status", task_id=task_id)["round"] >= 2, 240, every=1.0)
    flooded = trio.run(flood, providers[0].multiaddr)
    assert providers[0].rpc("node_info")["peer_id"], "the flooded node answers its admin socket"
    reasons = [(r or {}).get("ok", {}).get("reason") for r in flooded["replies"]]
    # the token bucket lets through its burst plus its rate over however long the flood took (a slow machine
    # takes longer); every other request is refused as rate limited
    allowed = RATE_BURST + RATE_PER_S * flooded["elapsed_s"]
    assert reasons.count("rate_limited") >= 200 - allowed - 1, (flooded["elapsed_s"], reasons)
    assert all(r is None or "error" in r for r in flooded["bad"]), flooded["bad"]
    fresh = (flooded["fresh"] or {}).get("ok", {})
    assert fresh.get("ok") is False and fresh.get("reason") == "malformed", fresh  # served, not rate limited

    status = final_status(mp, task_id, 400)
    assert status["phase"] == "final", status["failures"]
    assert [h["round"] for h in status["history"]] == list(range(ROUNDS))
    by_dp = {m["data_provider"]: m for m in status["matches"]}
    bad = by_dp[evil.info["address"]]
    assert bad["updates_accepted"] == 2, bad  # rounds 0 (honest) and 7 (poison: well-formed, left to the rule)
    assert bad["updates_rejected_by_reason"] == EXPECTED, bad["updates_rejected"]
    assert sorted(r["round"] for r in bad["updates_rejected"]) == [1, 2, 3, 4, 5, 6]
    assert int(bad["compute_earned_wei"]) == compute_pay(COMPUTE_PRICE, ROUNDS, {0, 7})
    for n in providers[:3]:
        m = by_dp[n.info["address"]]
        assert m["updates_accepted"] == ROUNDS and not m["updates_rejected"], m
        assert int(m["compute_earned_wei"]) == COMPUTE_PRICE
    rej = status["rejections"]
    assert rej["updates"] == EXPECTED, rej  # as the model provider classified them when it opened them
    assert rej["updates_on_chain"] == EXPECTED, rej
    mp_log = mp.log_path.read_text()
    for reason in EXPECTED:  # each one logged with its reason where it was refused
        assert f"rejected: {reason}: " in mp_log, reason
    hist = {h["round"]: h["accuracy"] for h in status["history"]}
    print(f"\naccuracy per round {hist}; rejections at the model provider {rej}")
    assert hist[7] >= hist[6] - 0.02, hist  # the poisoned round: Multi-Krum keeps the 3 honest updates

    neg = providers[0].rpc("task_status", task_id=task_id)["rejections"]["negotiation"]
    print(f"negotiation rejections at the flooded node {neg}")
    assert neg.get("rate_limited", 0) >= reasons.count("rate_limited") and neg.get("malformed_frame", 0) >= 3, neg
    for node in (relay, providers[0]):
        gossip = wait_for("the lying announcements are counted", lambda: (lambda g: g if sum(g.values()) >= 3 else None)(
            node.rpc("task_status", task_id=task_id)["rejections"]["gossip"]), 30)
        assert gossip == {"wrong_sender": 1, "wrong_manifest": 1, "unknown_task": 1}, gossip
    assert relay.rpc("gossip_stats")["task_announcements"]["accepted"] >= 1  # the model provider's own notice
    assert "rejected: wrong_sender" in relay.log_path.read_text()

    check = relay.rpc("task_verify", task_id=task_id, timeout=300)
    assert check["ok"], check["differences"]
