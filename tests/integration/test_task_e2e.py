"""The training task across real daemons on one anvil: 1 model provider + 4 `--roles data,compute` nodes, each offering a
quarter of digits; a 4-provider, 10-round MLP task runs to the end and everyone is paid exactly what the chain credited."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dainode.localnet.network import Testnet, layout
from dainode.localnet.workload import COMPUTE_PRICE_WEI, DATA_PRICE_WEI, task_manifest
from tests.integration.daemon import DaemonProcess, run_cli, wait_for

ETH = 10**18
DATA_PRICE = DATA_PRICE_WEI
COMPUTE_PRICE = COMPUTE_PRICE_WEI
POOL = 4 * ETH
MANIFEST = task_manifest(providers=4, rounds=10, name="digits-mlp-e2e", pool_wei=POOL)


def eth(url: str, method: str, *params):
    out = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30).json()
    assert "error" not in out, out
    return out["result"]


def cli_json(node: DaemonProcess, *args: str, timeout: float = 300.0):
    out = run_cli(*args, "--json", "--data-dir", str(node.data_dir), timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}\n{node.log_tail()}"
    return json.loads(out.stdout)


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
    # the relay takes no part in the task; the contracts' authority (every task's default arbiter) is anvil's dev key
    tn = Testnet(tmp_path_factory.mktemp("task"), fund_wei=10 * ETH)
    try:
        tn.up(layout("default", 5))
        yield {"tn": tn, "relay": tn.relay, "a": tn.model, "providers": tn.by_role("data"), "url": tn.url, "base": tn.root}
    finally:
        tn.down()


def test_bad_manifest_exits_2_before_the_chain(net, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(task_manifest(providers=4, name="digits-mlp-e2e", pool_wei=POOL, quorum=9))
    out = run_cli("task", "create", str(bad), "--json", "--data-dir", str(net["a"].data_dir))
    assert out.returncode == 2, out
    assert "task.quorum" in out.stderr and "9" in out.stderr
    assert net["a"].rpc("task_list") == []


def test_four_provider_task_runs_to_the_end_and_pays_exactly(net, tmp_path):
    a, providers, url = net["a"], net["providers"], net["url"]
    net["tn"].offer_all(data_price=DATA_PRICE, compute_price=COMPUTE_PRICE)  # and waits until the MP indexed them
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
    cheap = task_manifest(providers=4, name="digits-mlp-e2e", pool_wei=POOL, max_data_price_wei=DATA_PRICE // 2)
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
