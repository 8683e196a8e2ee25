"""`dainode task verify` / `task watch` on real daemons and a real anvil, and the data providers' automatic challenge.

M hosts the task's documents (no roles; the chain is the testnet's anvil); D1, D2 run --roles data and are the
matched data providers (their accounts); R is a relay that took no part. The task itself is
driven by tests/integration/task_driver.py with the TrainingTask binding (test-only), so a
tampered split can be posted on purpose.
"""

from __future__ import annotations

import base64
import json
import time
from types import SimpleNamespace

import httpx
import pytest
from eth_utils import keccak

from dainode.identity import load_identity
from dainode.localnet.network import NodeSpec, Testnet
from tests.integration.daemon import PASSWORD, DaemonProcess, run_cli, wait_for
from tests.integration.task_driver import TaskDriver, daemon_put

CHALLENGED = "0x" + keccak(text="Challenged(uint256,address,bytes32,uint64)").hex()


def eth(url: str, method: str, *params):
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()["result"]


def challenged(url: str, address: str, task_id: int) -> list[dict]:
    return eth(url, "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": address,
                                    "topics": [CHALLENGED, "0x" + task_id.to_bytes(32, "big").hex()]})


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    tn = Testnet(tmp_path_factory.mktemp("verify"), fund_wei=10 * 10**18)
    try:
        tn.up([NodeSpec("M", ()), NodeSpec("D1", ("data",)), NodeSpec("D2", ("data",)), NodeSpec("R", ())])
        n = SimpleNamespace(tn=tn, url=tn.url, task_address=tn.record["chain"]["contracts"]["TrainingTask"])
        n.m, n.d1, n.d2, n.r = (tn.nodes[k] for k in ("M", "D1", "D2", "R"))
        deployment = json.loads(tn.deployment_file.read_text())
        dps = [load_identity(d.data_dir, PASSWORD).account for d in (n.d1, n.d2)]
        n.driver = TaskDriver(n.url, deployment, daemon_put(n.m), dps)
        yield n
    finally:
        tn.down()


def verify(node: DaemonProcess, task_id: int, *extra: str):
    return run_cli("task", "verify", str(task_id), *extra, "--data-dir", str(node.data_dir), timeout=600)


def audit_of(node: DaemonProcess, task_id: int) -> dict | None:
    done = [a for a in node.rpc("task_audits") if a["task_id"] == task_id and a["status"] == "done"]
    return done[0] if done else None


def test_honest_task_passes_on_a_relay_and_watch_prints_each_round(net):
    run = net.driver.run(finalize=True)
    out = verify(net.r, run.task_id)
    assert out.returncode == 0, out.stdout + out.stderr + net.r.log_tail()
    assert f"task {run.task_id}: PASS" in out.stdout
    doc = json.loads(verify(net.r, run.task_id, "--json").stdout)
    assert doc["ok"] and doc["differences"] == [] and doc["phase"] == "final"
    assert [h["round"] for h in doc["history"]] == [0, 1]
    # data prices, compute shares and the bonuses: every RewardCredited checked and present (no refund:
    # every provider provided and updated, so the whole rest of the pool is bonus)
    assert sorted({c["kind"] for c in doc["credits"]}) == [0, 1, 2]
    assert sum(int(c["amount_wei"]) for c in doc["credits"]) == 2 * 10**18
    assert [int(b) for b in doc["posted_bonuses_wei"]] == run.bonuses
    # the data providers verified it themselves after the reveal and did not challenge
    for d in (net.d1, net.d2):
        a = wait_for(f"{d.name} audits task {run.task_id}", lambda: audit_of(d, run.task_id), timeout=180)
        assert a["verdict"] == "PASS" and not a["challenged"], a
    assert challenged(net.url, net.task_address, run.task_id) == []
    # watch, stdout not a terminal: one plain line per round, then the end
    w = run_cli("task", "watch", str(run.task_id), "--data-dir", str(net.r.data_dir), timeout=120)
    assert w.returncode == 0, w.stderr
    lines = w.stdout.strip().splitlines()
    assert [ln.split(" accuracy ")[0] for ln in lines[:2]] == ["round 1/2", "round 2/2"], lines
    assert lines[-1].startswith(f"task {run.task_id} final: 2/2 rounds"), lines
    assert "\r" not in w.stdout and "#" not in w.stdout


def test_tampered_split_fails_and_the_data_providers_challenge_it(net):
    run = net.driver.run(tamper_split=True)
    assert run.bonuses != run.honest_bonuses
    out = verify(net.r, run.task_id)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"task {run.task_id}: FAIL" in out.stdout
    diffs = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("DIFF")]
    where = {ln.split(":")[0].strip() for ln in diffs}
    assert {"DIFF split match 0 share", "DIFF split match 1 share"} <= where, out.stdout
    # the first data provider's challenge lands; the second is refused (the task is already Challenged)
    events = wait_for("a Challenged event", lambda: challenged(net.url, net.task_address, run.task_id), timeout=180)
    audits = [wait_for(f"{d.name} audit", lambda d=d: audit_of(d, run.task_id), timeout=180) for d in (net.d1, net.d2)]
    assert all(a["verdict"] == "FAIL" and a["differences"] >= 2 and a["evidence_cid"] for a in audits), audits
    assert sorted(bool(a["challenged"]) for a in audits) == [False, True], audits
    assert len(challenged(net.url, net.task_address, run.task_id)) == len(events) == 1
    challenger = "0x" + events[0]["topics"][2][-40:]
    winner = net.d1 if audits[0]["challenged"] else net.d2
    assert challenger.lower() == winner.info["address"].lower()
    # the evidence document lists the differences, readable by anyone (here: the relay, over bitswap)
    cid = [a for a in audits if a["challenged"]][0]["evidence_cid"]
    ev_doc = json.loads(base64.b64decode(net.r.rpc("store_cat", cid=cid, timeout=120)["data"]))
    assert ev_doc["schema"] == "dainode.challenge-evidence/1" and ev_doc["task"]["task_id"] == run.task_id
    assert {"split match 0 share", "split match 1 share"} <= {d["where"] for d in ev_doc["differences"]}
    # a restart neither repeats nor forgets the audit (stopped again here: a process a test starts, it stops)
    winner.stop()
    winner.start(timeout=180)
    try:
        wait_for("the restarted node's chain subscription", lambda: winner.rpc("chain_info")["events"]["cursor"] is not None,
                 timeout=180)
        time.sleep(3)  # room for a (wrong) second challenge from the replayed reveal events
        a = audit_of(winner, run.task_id)
        assert a is not None and a["challenged"] and a["verdict"] == "FAIL"
        assert len(challenged(net.url, net.task_address, run.task_id)) == 1
    finally:
        winner.stop()
