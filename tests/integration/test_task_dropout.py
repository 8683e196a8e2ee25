"""Dropouts and a partition in a real task: relay (dev chain) + model provider + 4 `data,compute` nodes, quorum 3.

Task 1 (13 rounds): node p3 is cut off the network in round 3 and healed in round 6 — in its own network namespace
when this runs as root with `ip netns` (the link goes down, the process keeps running), else by SIGSTOP/SIGCONT (the
test prints which); node p2 stops answering (SIGSTOP) in round 8 and comes back (SIGCONT) in round 10. Each is left
out of the rounds it misses, is paid compute only for the rounds it submitted, and rejoins from the latest global
model (a round waits GRACE_MS for the fourth update once three are in, so a node that is back gets its update in);
the task completes with the quorum and `task verify` PASSes.
Task 2 (quorum_lost_rounds = 1): two nodes stop for good in round 2: the task is abandoned as the contract allows and
every provider is credited for the work it did (data price, accepted rounds, an equal share of the rest).
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.integration.daemon import DaemonProcess
from tests.integration.netcut import Netns, StopCut, netns_available
from tests.integration.task_net import (COMPUTE_PRICE, DATA_PRICE, compute_pay, final_status, fund, manifest,
                                        offer_all, shards, wait_for)

ROUNDS = 13
GRACE_MS = 3000


class NsDaemon(DaemonProcess):
    def __init__(self, *args, ns: Netns, **kw):
        super().__init__(*args, **kw)
        self.ns = ns

    def command(self) -> list[str]:
        return self.ns.wrap(super().command())


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    base = tmp_path_factory.mktemp("dropout")
    ok, why = netns_available()
    print(f"\npartition by {'network namespace' if ok else 'SIGSTOP/SIGCONT (' + why + ')'}")
    ns = Netns() if ok else None
    listen = f"/ip4/{ns.host_ip}/tcp/0" if ns else "/ip4/127.0.0.1/tcp/0"
    nodes: list[DaemonProcess] = []
    try:
        relay = DaemonProcess(base, "relay", roles=None, chain="dev", listen=listen)
        nodes.append(relay)
        relay.start(timeout=120)
        url = relay.rpc("chain_info")["endpoint"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(relay.data_dir / "deployment.json")}
        mp = DaemonProcess(base, "mp", roles=["model"], chain=url, bootstrap=[relay.multiaddr], env=env, listen=listen)
        nodes.append(mp)
        mp.start(timeout=120)
        fund(relay, mp)
        providers = []
        for i in range(4):
            kw = dict(roles=["data", "compute"], bootstrap=[relay.multiaddr, mp.multiaddr], env=env)
            if i == 3 and ns:
                n = NsDaemon(base, f"p{i}", chain=ns.forward(url), listen=f"/ip4/{ns.ns_ip}/tcp/0", ns=ns, **kw)
            else:
                n = DaemonProcess(base, f"p{i}", chain=url, listen=listen, **kw)
            nodes.append(n)
            providers.append(n)
        for n in providers:
            n.start(timeout=120)
            fund(relay, n)
        offer_all(providers, shards(base, 4))
        wait_for("the model provider indexed the 4 data offers",
                 lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= 4, 60)
        cut = ns if ns else StopCut(providers[3])
        yield {"relay": relay, "mp": mp, "providers": providers, "cut": cut, "netns": bool(ns)}
    finally:
        for n in nodes:
            n.signal(signal.SIGCONT)  # a stopped process would not see the SIGTERM
            n.stop()
        if ns:
            ns.close()


def chain_round(mp, task_id) -> int:
    return int(mp.rpc("task_status", task_id=task_id)["round"])


def at_round(mp, task_id, r, timeout=300):
    # polled fast: a round takes ~0.2 s when all four are in, and a cut meant for round r must land near it
    wait_for(f"round {r} is open", lambda: chain_round(mp, task_id) >= r, timeout, every=0.05)


def rounds_of(status, node):
    return next(m for m in status["matches"] if m["data_provider"] == node.info["address"])


def test_a_partitioned_node_and_a_dropout_are_left_out_not_paid_for_missed_rounds_and_rejoin(net):
    relay, mp, providers, cut = net["relay"], net["mp"], net["providers"], net["cut"]
    p2, p3 = providers[2], providers[3]
    toml = manifest(rounds=ROUNDS, providers=4, quorum=3, name="digits-partition")
    task_id = mp.rpc("task_create", manifest_toml=toml, grace_ms=GRACE_MS, timeout=300)["task_id"]
    # The schedule (cut in round 3, heal in 6, stop p2 in 8, continue in 10) is judged by the rounds seen right after
    # each cut and right before each heal: a node cut off while round k is open may still have sent round k's update,
    # and one healed while round h is open may get round h's in, but none of the rounds strictly in between.
    at_round(mp, task_id, 3)
    cut.cut()
    cut_at = chain_round(mp, task_id)
    at_round(mp, task_id, max(6, cut_at + 3))
    heal_at = chain_round(mp, task_id)
    cut.heal()
    at_round(mp, task_id, max(8, heal_at + 2))
    p2.signal(signal.SIGSTOP)
    stop_at = chain_round(mp, task_id)
    at_round(mp, task_id, max(10, stop_at + 2))
    cont_at = chain_round(mp, task_id)
    p2.signal(signal.SIGCONT)
    assert cont_at < ROUNDS - 2, f"the schedule ran past the task's end: cut {cut_at}, heal {heal_at}, stop {stop_at}, continue {cont_at}"

    status = final_status(mp, task_id, 400)
    assert status["phase"] == "final", status["failures"]
    assert [h["round"] for h in status["history"]] == list(range(ROUNDS))
    got3, got2 = rounds_of(status, p3)["rounds_accepted"], rounds_of(status, p2)["rounds_accepted"]
    print(f"cut in round {cut_at}, healed in {heal_at}, p2 stopped in {stop_at}, continued in {cont_at}; "
          f"partitioned p3 submitted rounds {got3}; dropout p2 submitted rounds {got2}")
    assert not {r for r in got3 if cut_at < r < heal_at}, got3  # cut off: left out
    assert set(range(cut_at)) <= set(got3) and max(got3) > heal_at, got3  # in before the cut, back after the heal
    assert not {r for r in got2 if stop_at < r < cont_at}, got2  # stopped: left out ...
    assert set(range(stop_at)) <= set(got2) and max(got2) > cont_at, got2  # ... and back after SIGCONT
    for n in providers:
        m = rounds_of(status, n)
        assert int(m["compute_earned_wei"]) == compute_pay(COMPUTE_PRICE, ROUNDS, set(m["rounds_accepted"])), m
    for n in providers[:2]:
        assert rounds_of(status, n)["rounds_accepted"] == list(range(ROUNDS))
    credited = {k.lower(): int(v) for k, v in status["credited_wei"].items()}
    for n in providers:  # what the chain credited: data price + compute pay of exactly its rounds + its bonus
        m = rounds_of(status, n)
        want = DATA_PRICE + compute_pay(COMPUTE_PRICE, ROUNDS, set(m["rounds_accepted"])) + int(m["bonus_wei"])
        assert credited[n.info["address"].lower()] == want, (m, credited)
    assert sum(credited[n.info["address"].lower()] for n in providers) + int(status["refund_wei"]) == int(status["pool_wei"])
    check = relay.rpc("task_verify", task_id=task_id, timeout=300)
    assert check["ok"], json.dumps(check["differences"], indent=1)
    print(f"verify caveats (updates left out as not fetched in time): {[c['where'] for c in check['caveats']]}")
    assert "rejoining at round" in p3.log_path.read_text() + p2.log_path.read_text()


def test_below_quorum_for_good_abandons_and_pays_everyone_for_the_work_done(net):
    mp, providers = net["mp"], net["providers"]
    toml = manifest(rounds=6, providers=4, quorum=3, name="digits-quorum-lost",
                    params="quorum_lost_rounds = 1")
    task_id = mp.rpc("task_create", manifest_toml=toml, grace_ms=500, timeout=300)["task_id"]
    at_round(mp, task_id, 2)
    gone = providers[:2]
    try:
        for n in gone:
            n.signal(signal.SIGSTOP)
        status = final_status(mp, task_id, 300)
    finally:
        for n in gone:
            n.signal(signal.SIGCONT)
    assert status["phase"] == "abandoned", status
    assert any("quorum_lost_rounds" in f for f in status["failures"]), status["failures"]
    credited = {k.lower(): int(v) for k, v in status["credited_wei"].items()}
    pool = int(status["pool_wei"])
    assert sum(credited.get(n.info["address"].lower(), 0) for n in providers) + int(status["refund_wei"]) == pool
    for n in providers:
        m = rounds_of(status, n)
        assert m["data_provided"], m
        # at least its data price and the compute pay of every published round it submitted
        paid = credited.get(n.info["address"].lower(), 0)
        assert paid >= DATA_PRICE + compute_pay(COMPUTE_PRICE, 6, set(m["rounds_accepted"])), (m, paid)
    assert int(status["escrow_wei"]) == 0
