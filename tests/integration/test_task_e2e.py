"""The training task across real daemons on one anvil: 1 model provider + 4 `--roles data,compute` nodes, each offering a
quarter of digits; a 4-provider, 10-round MLP task runs to the end and everyone is paid exactly what the chain credited."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.daemon import DaemonProcess, run_cli

ETH = 10**18
DATA_PRICE = ETH // 10
COMPUTE_PRICE = ETH // 20
POOL = 4 * ETH

MANIFEST = f"""
[task]
name = "digits-mlp-e2e"
rounds = 10
providers = 4
local_epochs = 1
round_window_s = 5
quorum = 4
aggregation = "fedavg"
privacy = "fl"
reward_pool_wei = "{POOL}"
max_data_price_wei = "{ETH // 2}"
max_compute_price_wei = "{ETH // 5}"
seed = 0

[model]
kind = "mlp"
layers = [64, 128, 10]
lr = 0.1
batch = 32
optimizer = "momentum"
momentum = 0.9

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


def eth(url: str, method: str, *params):
    out = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30).json()
    assert "error" not in out, out
    return out["result"]


def wait_for(what: str, fn, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not within {timeout:g} s: {what} (last: {last!r})")


def cli_json(node: DaemonProcess, *args: str, timeout: float = 300.0):
    out = run_cli(*args, "--json", "--data-dir", str(node.data_dir), timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}\n{node.log_tail()}"
    return json.loads(out.stdout)


def quarters(base: Path) -> list[Path]:
    """The train part of the manifest's digits split (features scaled to 0..1) in four files, one per provider."""
    from dainode.ml.datasets import load_builtin, stratified_split

    ds = load_builtin("digits")
    ds.x = (np.asarray(ds.x, np.float32) * np.float32(0.0625)).astype(np.float32)
    train, _ = stratified_split(ds, 0.2, 0)
    parts = np.array_split(np.random.default_rng(0).permutation(len(train.y)), 4)
    paths = []
    for i, idx in enumerate(parts):
        p = base / f"digits-q{i}.npz"
        np.savez(p, x=train.x[idx].reshape(len(idx), -1), y=train.y[idx])
        paths.append(p)
    return paths


def gas_spent(url: str, address: str, first_block: int) -> int:
    """Sum of gasUsed x effectiveGasPrice over every transaction `address` sent from `first_block` on."""
    total = 0
    head = int(eth(url, "eth_blockNumber"), 16)
    for n in range(first_block, head + 1):
        block = eth(url, "eth_getBlockByNumber", hex(n), True)
        for tx in block["transactions"]:
            if tx["from"].lower() == address.lower():
                r = eth(url, "eth_getTransactionReceipt", tx["hash"])
                total += int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16)
    return total


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    base = tmp_path_factory.mktemp("task")
    nodes: list[DaemonProcess] = []
    try:
        # the relay hosts the dev chain (it deployed the contracts, so it is their authority and every task's
        # default arbiter) and takes no part in the task
        relay = DaemonProcess(base, "relay", roles=None, chain="dev")
        nodes.append(relay)
        relay.start(timeout=120)
        url = relay.rpc("chain_info")["endpoint"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(relay.data_dir / "deployment.json")}
        a = DaemonProcess(base, "mp", roles=["model"], chain=url, bootstrap=[relay.multiaddr], env=env)
        nodes.append(a)
        a.start(timeout=120)
        out = run_cli("chain", "fund", a.info["address"], "--eth", "10", "--data-dir", str(relay.data_dir))
        assert out.returncode == 0, out.stderr
        providers = []
        for i in range(4):
            n = DaemonProcess(base, f"p{i}", roles=["data", "compute"], chain=url, bootstrap=[relay.multiaddr, a.multiaddr],
                              env=env)
            nodes.append(n)
            providers.append(n)
        for n in providers:  # started one after the other: 2 cores
            n.start(timeout=120)
            out = run_cli("chain", "fund", n.info["address"], "--eth", "10", "--data-dir", str(relay.data_dir))
            assert out.returncode == 0, out.stderr
        yield {"relay": relay, "a": a, "providers": providers, "url": url, "base": base, "files": quarters(base)}
    finally:
        for n in nodes:
            n.stop()


def test_bad_manifest_exits_2_before_the_chain(net, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MANIFEST.replace("quorum = 4", "quorum = 9"))
    out = run_cli("task", "create", str(bad), "--json", "--data-dir", str(net["a"].data_dir))
    assert out.returncode == 2, out
    assert "task.quorum" in out.stderr and "9" in out.stderr
    assert net["a"].rpc("task_list") == []


def test_four_provider_task_runs_to_the_end_and_pays_exactly(net, tmp_path):
    a, providers, url = net["a"], net["providers"], net["url"]
    for n, f in zip(providers, net["files"]):
        cli_json(n, "offer", "data", "--dataset", str(f), "--price", str(DATA_PRICE))
        cli_json(n, "offer", "compute", "--price", str(COMPUTE_PRICE))
    wait_for("the model provider indexed the 4 data offers",
             lambda: len([o for o in a.rpc("offer_list", kind="data") if o["verified"]]) >= 4, 60)
    addrs = [n.info["address"] for n in providers]
    before = {x: int(eth(url, "eth_getBalance", x, "latest"), 16) for x in addrs}
    first_block = int(eth(url, "eth_blockNumber"), 16) + 1
    manifest = tmp_path / "task.toml"
    manifest.write_text(MANIFEST)

    created = cli_json(a, "task", "create", str(manifest))
    task_id = created["task_id"]
    assert isinstance(task_id, int)

    def final():
        s = a.rpc("task_status", task_id=task_id)
        return s if s["phase"] == "abandoned" or (s["phase"] == "final" and s.get("report_dir")) else None

    status = wait_for("the task is final", final, 240, every=1.0)
    assert status["phase"] == "final", status
    assert len(status["matches"]) == 4
    assert {m["data_provider"] for m in status["matches"]} == set(addrs)
    assert all(m["data_provider"] == m["compute_provider"] for m in status["matches"]), "each node computes on its own data"
    assert all(m["updates_accepted"] == 10 and not m["updates_rejected"] for m in status["matches"]), status["matches"]
    assert [h["round"] for h in status["history"]] == list(range(10))
    final_acc = status["history"][-1]["accuracy"]
    print(f"\nfinal accuracy {final_acc:.4f}; per-round timings (ms): {json.dumps(status['timings'])}")
    assert final_acc >= 0.90, status["history"]

    # every provider withdrew what the chain credited it; its balance moved by exactly that minus its gas
    tt = a.rpc("chain_info")["contracts"]["TrainingTask"]
    wait_for("every provider withdrew its credit", lambda: all(
        int(eth(url, "eth_call", {"to": tt, "data": "0x27e235e3" + x[2:].lower().rjust(64, "0")}, "latest"), 16) == 0
        for x in addrs), 60)
    credited = {k.lower(): int(v) for k, v in status["credited_wei"].items()}
    pool = int(status["pool_wei"])
    assert pool == POOL
    for x in addrs:
        after = int(eth(url, "eth_getBalance", x, "latest"), 16)
        gas = gas_spent(url, x, first_block)
        assert after - before[x] == credited[x.lower()] - gas, (x, after - before[x], credited[x.lower()], gas)
        assert credited[x.lower()] > DATA_PRICE + COMPUTE_PRICE  # price + compute pay + a bonus share
    # the whole pool went out: providers' credits plus the model provider's refund
    refund = int(status["refund_wei"])
    assert sum(credited[x.lower()] for x in addrs) + refund == pool
    assert int(status["escrow_wei"]) == 0

    report = Path(status["report_dir"])
    doc = json.loads((report / "report.json").read_text())
    assert doc["history"][-1]["accuracy"] == pytest.approx(final_acc)
    for f in ("final_model.f32", "accuracy_loss.png", "contribution_payout.png"):
        assert (report / f).stat().st_size > 0, f
    listed = a.rpc("task_list")
    assert [t["task_id"] for t in listed] == [task_id] and listed[0]["phase"] == "final"
    (Path(net["base"]) / "timings.json").write_text(json.dumps(status["timings"]))

    # a node that took no part recomputes every round and the split from the chain's events and IPFS alone
    check = net["relay"].rpc("task_verify", task_id=task_id, timeout=300)
    assert check["ok"], check["differences"]
    assert check["history"][-1]["accuracy"] == pytest.approx(final_acc, abs=1e-6)


def test_too_few_matches_abandons_and_refunds_the_pool(net):
    """No offer fits the price cap: after the matching wait the task is abandoned, the shortfall is reported and the
    model provider gets its whole pool back (and withdraws it)."""
    a, url = net["a"], net["url"]
    cheap = MANIFEST.replace(f'max_data_price_wei = "{ETH // 2}"', f'max_data_price_wei = "{DATA_PRICE // 2}"')
    out = a.rpc("task_create", manifest_toml=cheap, matching_wait_s=3, timeout=300)
    task_id = out["task_id"]
    status = wait_for("the task is abandoned", lambda: (lambda s: s if s["phase"] == "abandoned" else None)(
        a.rpc("task_status", task_id=task_id)), 60)
    assert status["matches"] == []
    assert any("matched 0 of 4 providers" in f for f in status["failures"]), status["failures"]
    assert status["refund_wei"] == str(POOL) and status["escrow_wei"] == "0"
    tt = a.rpc("chain_info")["contracts"]["TrainingTask"]
    mp = a.info["address"]
    wait_for("the model provider withdrew its refund", lambda: int(
        eth(url, "eth_call", {"to": tt, "data": "0x27e235e3" + mp[2:].lower().rjust(64, "0")}, "latest"), 16) == 0, 30)
