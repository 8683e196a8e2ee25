"""Crashes mid-task on real daemons and a real anvil (issue 13's restart point, issue 14's Resume): the model provider
SIGKILLed mid-aggregation, between a publish and its state write and after postSplit, and restarted; a data+compute
node SIGKILLed before provideData, and in round 4 (restarted in round 6), and in round 3 (left down). Every task
completes, each round is published once, pay follows the rounds submitted, and `task verify` passes."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.daemon import DaemonProcess, free_port, run_cli
from dainode.localnet.workload import shard_files
from tests.integration.test_task_e2e import MANIFEST, cli_json, eth, wait_for

ETH = 10**18
DATA_PRICE = ETH // 10
COMPUTE_PRICE = ETH // 20


class CrashingNode(DaemonProcess):
    """A daemon that SIGKILLs itself at the points listed in <data-dir>/crash-at (tests/integration/crashing_node.py);
    a fixed port, so a restart comes back at the same multiaddr."""

    def __init__(self, *a, **kw):
        super().__init__(*a, listen=f"/ip4/127.0.0.1/tcp/{free_port()}", **kw)

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name("crashing_node.py")), *self.args()]

    def crash_at(self, *points: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "crash-at").write_text("".join(p + "\n" for p in points))

    def dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None


@pytest.fixture
def net(tmp_path_factory):
    """A fresh network per test: the daemons a test restarts are its own children, stopped when it ends."""
    base = tmp_path_factory.mktemp("resume")
    nodes: list[DaemonProcess] = []
    try:
        relay = DaemonProcess(base, "relay", roles=None, chain="dev")
        nodes.append(relay)
        relay.start(timeout=120)
        url = relay.rpc("chain_info")["endpoint"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(relay.data_dir / "deployment.json")}
        mp = CrashingNode(base, "mp", roles=["model"], chain=url, bootstrap=[relay.multiaddr], env=env)
        nodes.append(mp)
        mp.start(timeout=120)
        providers = []
        for i in range(4):
            n = CrashingNode(base, f"p{i}", roles=["data", "compute"], chain=url, bootstrap=[relay.multiaddr, mp.multiaddr],
                             env=env)
            nodes.append(n)
            providers.append(n)
        for n in [mp, *providers]:
            if n is not mp:
                n.start(timeout=120)
            out = run_cli("chain", "fund", n.info["address"], "--eth", "10", "--data-dir", str(relay.data_dir))
            assert out.returncode == 0, out.stderr
        files = shard_files(base, 4)
        for n, f in zip(providers, files):
            cli_json(n, "offer", "data", "--dataset", str(f), "--price", str(DATA_PRICE))
            cli_json(n, "offer", "compute", "--price", str(COMPUTE_PRICE))
        wait_for("the model provider indexed the 4 data offers",
                 lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= 4, 60)
        deployment = json.loads((relay.data_dir / "deployment.json").read_text())
        yield {"relay": relay, "mp": mp, "providers": providers, "url": url, "files": files, "deployment": deployment}
    finally:
        for n in nodes:
            n.stop()


# --- chain facts, read by the test itself ------------------------------------------------------

def task_events(net, task_id: int, names: list[str]) -> list:
    from dainode.chain.contracts import load_contracts

    c = load_contracts().with_addresses(net["deployment"]["contracts"])["TrainingTask"]
    topics = {item["name"]: "0x" + t.hex() for t, item in c.events.items()}
    flt = {"fromBlock": "0x0", "toBlock": "latest", "address": c.address,
           "topics": [[topics[n] for n in names], "0x" + int(task_id).to_bytes(32, "big").hex()]}
    raw = eth(net["url"], "eth_getLogs", flt)
    raw.sort(key=lambda e: (int(e["blockNumber"], 16), int(e["logIndex"], 16)))
    return [c.decode_log(r) for r in raw]


def chain_round(net, task_id: int) -> int:
    return int(net["relay"].rpc("task_status", task_id=task_id)["round"])


def share(price: int, r: int, rounds: int) -> int:
    """TrainingTask._payRound: a match's compute pay for round r."""
    return price * (r + 1) // rounds - price * r // rounds


def check_pay(net, task_id: int, rounds: int) -> dict[int, list[int]]:
    """Each match's compute credits equal the shares of the rounds it has an UpdateSubmitted (not rejected) for;
    returns match id -> rounds submitted. No round has two updates of one match."""
    evs = task_events(net, task_id, ["MatchRecorded", "UpdateSubmitted", "UpdateRejected", "RewardCredited"])
    cps = {int(e.args["matchId"]): e.args["computeProvider"].lower() for e in evs if e.name == "MatchRecorded"}
    rejected = {(int(e.args["matchId"]), int(e.args["round"])) for e in evs if e.name == "UpdateRejected"}
    submitted: dict[int, list[int]] = {m: [] for m in cps}
    for e in evs:
        if e.name == "UpdateSubmitted":
            submitted[int(e.args["matchId"])].append(int(e.args["round"]))
    for m, rs in submitted.items():
        assert len(rs) == len(set(rs)), f"match {m} submitted a round twice: {rs}"
    credited: dict[str, int] = {}
    for e in evs:
        if e.name == "RewardCredited" and int(e.args["kind"]) == 1:  # CreditKind.COMPUTE
            credited[e.args["account"].lower()] = credited.get(e.args["account"].lower(), 0) + int(e.args["amount"])
    for m, cp in cps.items():
        want = sum(share(COMPUTE_PRICE, r, rounds) for r in submitted[m] if (m, r) not in rejected)
        assert credited.get(cp, 0) == want, (m, cp, credited.get(cp), want, submitted[m])
    return submitted


def published_rounds(net, task_id: int) -> list[int]:
    return [int(e.args["round"]) for e in task_events(net, task_id, ["GlobalModelPublished"])]


def no_failed_tx(net, addresses: list[str], first_block: int) -> None:
    """No transaction of these accounts failed on chain (a duplicate would revert: AlreadySubmitted/WrongRound/...)."""
    want = {a.lower() for a in addresses}
    head = int(eth(net["url"], "eth_blockNumber"), 16)
    for n in range(first_block, head + 1):
        for tx in eth(net["url"], "eth_getBlockByNumber", hex(n), True)["transactions"]:
            if tx["from"].lower() in want:
                r = eth(net["url"], "eth_getTransactionReceipt", tx["hash"])
                assert int(r["status"], 16) == 1, (tx["from"], tx["hash"], tx["input"][:10])


def final_status(net, task_id: int, timeout: float) -> dict:
    mp = net["mp"]

    def final():
        try:
            s = mp.rpc("task_status", task_id=task_id)
        except Exception:  # noqa: BLE001 - the model provider may be restarting
            return None
        return s if s["phase"] == "abandoned" or (s["phase"] == "final" and s.get("report_dir")) else None

    return wait_for("the task is final", final, timeout, every=1.0)


def manifest(tmp_path: Path, *, rounds: int = 10, quorum: int = 4) -> str:
    text = MANIFEST.replace("rounds = 10", f"rounds = {rounds}").replace("quorum = 4", f"quorum = {quorum}")
    return text.replace("round_window_s = 5", "round_window_s = 20")


def uninterrupted_final_model(net, status: dict, man_text: str, rounds: int) -> np.ndarray:
    """What an uninterrupted run with the same seeds ends with: every match's update every round, in-process."""
    import tomllib

    from dainode.ml.dataoffer import load_spec
    from dainode.tasks.documents import OpenedUpdate, UpdateBinding
    from dainode.tasks.manifest import parse_manifest
    from dainode.tasks.rounds import aggregate_round, compute_update, initial_params
    from dainode.tasks.sealed import TaskRef

    m = parse_manifest(tomllib.loads(man_text), source="manifest")
    by_addr = {n.info["address"].lower(): f for n, f in zip(net["providers"], net["files"])}
    data = {int(x["match_id"]): load_spec(str(by_addr[x["data_provider"].lower()])) for x in status["matches"]}
    ref = TaskRef(1, "0x" + "00" * 20, 0)
    w = initial_params(m)
    for t in range(rounds):
        ups = []
        for mid in sorted(data):
            ds = data[mid]
            res = compute_update(m, w, np.asarray(ds.x, np.float32), ds.y, round=t, match_id=mid)
            ups.append(OpenedUpdate(UpdateBinding(ref, mid, t, "0x" + "11" * 20), res.update, res.n_examples))
        w = aggregate_round(m, t, w, ups).params
    return w


def test_model_provider_killed_mid_aggregation_after_publish_and_after_split_resumes(net, tmp_path):
    """SIGKILLs in one task, each node restarted: the model provider right after its first recordMatch is mined (the
    state does not know the match), right after startTraining, before the round-5 publish is signed (mid-aggregation),
    right after the round-6 publish is mined (state not written) and right after postSplit; a data provider before its
    provideData; compute providers before their round-5 and round-8 submitUpdate (update sealed and stored). The task
    completes: 10 rounds published once each, one DataProvided per match, no failed or duplicate transaction, exact
    compute pay, verify PASS, and the final model is the one an uninterrupted run with the same seeds computes."""
    mp, (p0, p1, p2, _) = net["mp"], net["providers"]
    rounds = 10
    text = manifest(tmp_path, rounds=rounds, quorum=4)
    path = tmp_path / "task.toml"
    path.write_text(text)
    first_block = int(eth(net["url"], "eth_blockNumber"), 16) + 1
    plan = {mp: ["after:recordMatch", "after:startTraining", "before:publishGlobalModel:5", "after:publishGlobalModel:6",
                 "after:postSplit"],
            p0: ["before:provideData"], p1: ["before:submitUpdate:5"], p2: ["before:submitUpdate:8"]}
    for node, points in plan.items():
        node.crash_at(*points)
    want = {node.name: len(points) for node, points in plan.items()}
    task_id = cli_json(mp, "task", "create", str(path))["task_id"]
    kills = {name: 0 for name in want}
    deadline = time.monotonic() + 420  # inside pytest's 600 s: a stuck task fails here, with the logs
    while time.monotonic() < deadline:
        for node in plan:
            if node.dead():
                assert node.proc.returncode == -signal.SIGKILL, node.log_tail()
                kills[node.name] += 1
                node.start(timeout=120)
        try:
            s = mp.rpc("task_status", task_id=task_id, timeout=10)
        except Exception:  # noqa: BLE001 - it may be restarting
            s = {}
        if s.get("phase") == "abandoned" or (kills == want and s.get("phase") == "final" and s.get("report_dir")):
            break
        time.sleep(0.5)
    assert kills == want, (kills, mp.log_tail())
    status = final_status(net, task_id, 120)
    assert status["phase"] == "final", status
    print(f"\nresumed task {task_id}: kills {kills}, history {[round(h['accuracy'], 4) for h in status['history']]}")
    assert published_rounds(net, task_id) == list(range(rounds)), "each round published exactly once"
    provided = [int(e.args["matchId"]) for e in task_events(net, task_id, ["DataProvided"])]
    assert sorted(provided) == [0, 1, 2, 3], provided
    assert [h["round"] for h in status["history"]] == list(range(rounds))
    log = mp.log_path.read_text()
    assert log.count(f"task {task_id} resumed after a restart") == 5, log
    assert "recorded on chain but not in the state: adopted" in log
    assert "round 6: published on chain but not recorded before the restart: adopted" in log
    submitted = check_pay(net, task_id, rounds)
    short = {m: sorted(rs) for m, rs in submitted.items() if sorted(rs) != list(range(rounds))}
    assert not short, f"matches that did not submit every round: {short}\n{mp.log_tail()}"
    assert all(m["updates_accepted"] == rounds and not m["updates_rejected"] for m in status["matches"]), status["matches"]
    no_failed_tx(net, [mp.info["address"], *(n.info["address"] for n in net["providers"])], first_block)
    check = net["relay"].rpc("task_verify", task_id=task_id, timeout=300)
    assert check["ok"], json.dumps(check["differences"], indent=1)
    final = np.fromfile(Path(status["report_dir"]) / "final_model.f32", dtype="<f4")
    expected = uninterrupted_final_model(net, status, text, rounds)
    gap = float(np.max(np.abs(final.astype(np.float64) - expected)))
    print(f"final model vs an uninterrupted in-process run: max |diff| {gap:.3g}")
    assert gap <= 1e-5, gap


def test_dropped_nodes_rejoin_or_are_left_out_and_are_paid_for_the_rounds_they_submitted(net, tmp_path):
    """Quorum 3 of 4, two tasks on one network: a data+compute node SIGKILLed in round 4 and restarted in round 6
    rejoins and submits again; one SIGKILLed in round 3 and left down is left out. Both tasks complete with every
    round published once, each compute provider credited exactly the shares of the rounds it submitted (the others
    in full), no failed or duplicate transaction, and `task verify` PASS."""
    rejoin(net, tmp_path / "rejoin")
    left_down(net, tmp_path / "down")


def rejoin(net, tmp_path: Path) -> None:
    tmp_path.mkdir()
    mp, p1 = net["mp"], net["providers"][1]
    rounds = 12
    path = tmp_path / "task.toml"
    path.write_text(manifest(tmp_path, rounds=rounds, quorum=3))
    first_block = int(eth(net["url"], "eth_blockNumber"), 16) + 1
    # the rounds wait up to 6 s for the fourth update once three are in, so a restart comes back before the end
    task_id = mp.rpc("task_create", manifest_toml=path.read_text(), grace_ms=6000, timeout=300)["task_id"]
    # polled fast (a round takes ~0.2 s when all four are in); judged by the rounds seen after the kill and before
    # the restart: a node killed while round k is open may have sent round k's update, none after it
    wait_for("round 4 open", lambda: chain_round(net, task_id) >= 4, 300, every=0.05)
    p1.kill()
    killed_at = chain_round(net, task_id)
    wait_for("two rounds later", lambda: chain_round(net, task_id) >= max(6, killed_at + 2), 300, every=0.05)
    back_at = chain_round(net, task_id)
    assert back_at < rounds - 2, f"the schedule ran past the task's end: killed in {killed_at}, back in {back_at}"
    p1.start(timeout=120)
    status = final_status(net, task_id, 600)
    assert status["phase"] == "final", status
    assert published_rounds(net, task_id) == list(range(rounds))
    submitted = check_pay(net, task_id, rounds)
    mine = next(int(m["match_id"]) for m in status["matches"] if m["data_provider"].lower() == p1.info["address"].lower())
    print(f"\nrejoin: killed in round {killed_at}, restarted in round {back_at}; match {mine} submitted rounds "
          f"{sorted(submitted[mine])}")
    assert any(r >= back_at for r in submitted[mine]), ("it rejoined and submitted again", submitted[mine])
    assert not any(killed_at < r < back_at for r in submitted[mine]), submitted[mine]
    assert set(range(killed_at)) <= set(submitted[mine]), submitted[mine]
    for m, rs in submitted.items():
        if m != mine:
            assert sorted(rs) == list(range(rounds)), (m, rs)
    no_failed_tx(net, [n.info["address"] for n in net["providers"]], first_block)
    check = net["relay"].rpc("task_verify", task_id=task_id, timeout=300)
    assert check["ok"], json.dumps(check["differences"], indent=1)


def left_down(net, tmp_path: Path) -> None:
    tmp_path.mkdir()
    mp, p3 = net["mp"], net["providers"][3]
    rounds = 10
    path = tmp_path / "task.toml"
    path.write_text(manifest(tmp_path, rounds=rounds, quorum=3))
    task_id = mp.rpc("task_create", manifest_toml=path.read_text(), grace_ms=3000, timeout=300)["task_id"]
    wait_for("round 3 open", lambda: chain_round(net, task_id) >= 3, 300, every=0.05)
    p3.kill()
    killed_at = chain_round(net, task_id)
    status = final_status(net, task_id, 600)
    assert status["phase"] == "final", status
    assert published_rounds(net, task_id) == list(range(rounds))
    submitted = check_pay(net, task_id, rounds)
    dead = next(int(m["match_id"]) for m in status["matches"] if m["data_provider"].lower() == p3.info["address"].lower())
    print(f"\nleft down: killed in round {killed_at}; match {dead} submitted rounds {sorted(submitted[dead])}; others "
          f"{ {m: len(r) for m, r in submitted.items() if m != dead} }")
    assert killed_at < rounds - 1, f"killed in round {killed_at}: too late to be left out of anything"
    assert sorted(submitted[dead]) in (list(range(killed_at)), list(range(killed_at + 1))), (killed_at, submitted[dead])
    for m, rs in submitted.items():
        if m != dead:
            assert sorted(rs) == list(range(rounds)), (m, rs)  # paid in full: the whole compute price (check_pay)
    check = net["relay"].rpc("task_verify", task_id=task_id, timeout=300)
    assert check["ok"], json.dumps(check["differences"], indent=1)
