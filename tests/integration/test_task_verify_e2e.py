"""`task verify` on tasks run by the real roles: relay (dev chain) + model provider + 2 `--roles data,compute` nodes.

An honest 3-round task verifies PASS on the relay, which took no part, and on the providers' own
automatic audits; the same model provider, patched by tests/integration/tampered_model.py to post
a swapped split, gets FAIL on the relay and exactly one Challenged event from its data providers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from eth_utils import keccak

from tests.integration.daemon import DaemonProcess, run_cli

ETH = 10**18
CHALLENGED = "0x" + keccak(text="Challenged(uint256,address,bytes32,uint64)").hex()
MANIFEST = f"""
[task]
name = "digits-verify-e2e"
rounds = 3
providers = 2
local_epochs = 1
round_window_s = 5
quorum = 2
aggregation = "fedavg"
privacy = "fl"
reward_pool_wei = "{2 * ETH}"
max_data_price_wei = "{ETH // 2}"
max_compute_price_wei = "{ETH // 5}"
seed = 0

[model]
kind = "mlp"
layers = [64, 32, 10]
lr = 0.1
batch = 32

[data]
features = 64
label_classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
min_rows = 100
min_quality = 0.5

[test]
dataset = "digits"
feature_scale = 0.0625

[test.split]
fraction = 0.2
seed = 0
part = "test"
"""


class TamperableModel(DaemonProcess):
    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name("tampered_model.py")), *self.args()]


def eth(url: str, method: str, *params):
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30).json()["result"]


def wait_for(what: str, fn, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not within {timeout:g} s: {what} (last: {last!r})")


def halves(base: Path) -> list[Path]:
    from dainode.ml.datasets import load_builtin, stratified_split

    ds = load_builtin("digits")
    ds.x = (np.asarray(ds.x, np.float32) * np.float32(0.0625)).astype(np.float32)
    train, _ = stratified_split(ds, 0.2, 0)
    out = []
    for i, idx in enumerate(np.array_split(np.random.default_rng(0).permutation(len(train.y)), 2)):
        p = base / f"digits-h{i}.npz"
        np.savez(p, x=train.x[idx].reshape(len(idx), -1), y=train.y[idx])
        out.append(p)
    return out


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    base = tmp_path_factory.mktemp("verify-e2e")
    nodes: list[DaemonProcess] = []
    try:
        relay = DaemonProcess(base, "relay", roles=None, chain="dev")
        nodes.append(relay)
        relay.start(timeout=120)
        url = relay.rpc("chain_info")["endpoint"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(relay.data_dir / "deployment.json")}
        mp = TamperableModel(base, "mp", roles=["model"], chain=url, bootstrap=[relay.multiaddr], env=env)
        nodes.append(mp)
        mp.start(timeout=120)
        providers = []
        for i in range(2):
            n = DaemonProcess(base, f"p{i}", roles=["data", "compute"], chain=url, bootstrap=[relay.multiaddr, mp.multiaddr], env=env)
            nodes.append(n)
            providers.append(n)
        for n in [mp, *providers]:
            if n is not mp:
                n.start(timeout=120)
            out = run_cli("chain", "fund", n.info["address"], "--eth", "10", "--data-dir", str(relay.data_dir))
            assert out.returncode == 0, out.stderr
        for n, f in zip(providers, halves(base)):
            for args in (("offer", "data", "--dataset", str(f), "--price", str(ETH // 10)), ("offer", "compute", "--price", str(ETH // 20))):
                out = run_cli(*args, "--json", "--data-dir", str(n.data_dir), timeout=300)
                assert out.returncode == 0, out.stderr
        wait_for("the model provider indexed both data offers",
                 lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= 2, 60)
        tt = relay.rpc("chain_info")["contracts"]["TrainingTask"]
        yield {"relay": relay, "mp": mp, "providers": providers, "url": url, "tt": tt, "base": base}
    finally:
        for n in nodes:
            n.stop()


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
