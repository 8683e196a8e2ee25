"""`task verify` on tasks run by the real roles: relay + model provider + 2 `--roles data,compute` nodes.

An honest 3-round task verifies PASS on the relay, which took no part, and on the providers' own
automatic audits; the same model provider, patched by tests/integration/tampered_model.py to post
a swapped split, gets FAIL on the relay and exactly one Challenged event from its data providers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from eth_utils import keccak

from dainode.localnet.network import NodeSpec, Testnet, layout
from dainode.localnet.workload import task_manifest
from tests.integration.daemon import run_cli, wait_for

ETH = 10**18
CHALLENGED = "0x" + keccak(text="Challenged(uint256,address,bytes32,uint64)").hex()
MANIFEST = task_manifest(providers=2, rounds=3, name="digits-verify-e2e", layers=(64, 32, 10), momentum=False, pool_wei=2 * ETH)
TAMPERED_MODEL = (sys.executable, str(Path(__file__).with_name("tampered_model.py")))


def eth(url: str, method: str, *params):
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30).json()["result"]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """relay + a model provider patched by tampered_model.py (honest until its tamper-split file exists) + 2 data,compute."""
    specs = [NodeSpec("model", ("model",), argv0=TAMPERED_MODEL)] + layout("default", 3)[1:]
    tn = Testnet(tmp_path_factory.mktemp("verify-e2e"), fund_wei=10 * ETH)
    try:
        tn.up(specs)
        tn.offer_all(data_price=ETH // 10, compute_price=ETH // 20)
        tt = tn.record["chain"]["contracts"]["TrainingTask"]
        yield {"relay": tn.relay, "mp": tn.model, "providers": tn.by_role("data"), "url": tn.url, "tt": tt, "base": tn.root}
    finally:
        tn.down()


def run_task(net, tmp_path) -> int:
    manifest = tmp_path / "task.toml"
    manifest.write_text(MANIFEST)
    out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(net["mp"].data_dir), timeout=300)
    assert out.returncode == 0, out.stderr + net["mp"].log_tail()
    task_id = json.loads(out.stdout)["task_id"]
    # follow it from the relay until the key and the test set are out
    wait_for("the reveal", lambda: net["relay"].rpc("task_watch", task_id=task_id, wait_s=0)["revealed"], 300, every=1.0)
    return task_id


def challenges(net, task_id: int) -> list:
    return eth(net["url"], "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": net["tt"],
                                           "topics": [CHALLENGED, "0x" + task_id.to_bytes(32, "big").hex()]})


def audits(node, task_id):
    got = [a for a in node.rpc("task_audits") if a["task_id"] == task_id and a["status"] == "done"]
    return got[0] if got else None


def test_honest_task_verifies_pass_on_the_relay(net, tmp_path):
    task_id = run_task(net, tmp_path)
    wait_for("the task is final", lambda: net["relay"].rpc("task_watch", task_id=task_id, wait_s=0)["done"], 240, every=1.0)
    out = run_cli("task", "verify", str(task_id), "--data-dir", str(net["relay"].data_dir), timeout=600)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr + net["relay"].log_tail()
    assert f"task {task_id}: PASS  (phase final, 3 rounds, 2 matches)" in out.stdout
    for p in net["providers"]:
        a = wait_for(f"{p.name}'s own audit", lambda p=p: audits(p, task_id), 120)
        assert a["verdict"] == "PASS" and not a["challenged"], a
    assert challenges(net, task_id) == []
    status = net["mp"].rpc("task_status", task_id=task_id)
    doc = json.loads(run_cli("task", "verify", str(task_id), "--json", "--data-dir", str(net["relay"].data_dir), timeout=600).stdout)
    assert [h["round"] for h in doc["history"]] == [h["round"] for h in status["history"]] == [0, 1, 2]
    for mine, theirs in zip(doc["history"], status["history"]):
        assert abs(mine["accuracy"] - theirs["accuracy"]) <= 1.5 / 360, (mine, theirs)


def test_tampered_split_fails_and_is_challenged_once(net, tmp_path):
    (net["mp"].data_dir / "tamper-split").write_text("test-only\n")
    try:
        task_id = run_task(net, tmp_path)
    finally:
        (net["mp"].data_dir / "tamper-split").unlink()
    out = run_cli("task", "verify", str(task_id), "--data-dir", str(net["relay"].data_dir), timeout=600)
    print(out.stdout)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"task {task_id}: FAIL" in out.stdout
    assert "DIFF split match 0 share" in out.stdout and "DIFF split match 1 share" in out.stdout
    got = wait_for("a Challenged event", lambda: challenges(net, task_id), 120)
    found = [wait_for(f"{p.name}'s audit", lambda p=p: audits(p, task_id), 120) for p in net["providers"]]
    assert all(a["verdict"] == "FAIL" for a in found), found
    assert sorted(bool(a["challenged"]) for a in found) == [False, True], found
    assert len(challenges(net, task_id)) == len(got) == 1
