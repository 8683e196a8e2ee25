"""A `--chain dev` node keeps its chain across SIGTERM and SIGKILL restarts; an anvil left behind is stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import psutil
from eth_utils import keccak

from tests.integration.daemon import run_cli

REGISTERED_TOPIC = "0x" + keccak(text="OfferRegistered(uint256,address,uint8,uint256,bytes32,uint64)").hex()


def eth(url: str, method: str, *params):
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()["result"]


def offers_on_chain(info: dict) -> list[dict]:
    return eth(info["endpoint"], "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": info["contracts"]["Registry"],
                                                  "topics": [REGISTERED_TOPIC]})


def offer_compute(node) -> int:
    out = run_cli("offer", "compute", "--price", "1", "--json", "--data-dir", str(node.data_dir), timeout=120)
    assert out.returncode == 0, f"{out.stderr}\n{node.log_tail()}"
    return int(json.loads(out.stdout)["offer_id"])


def listed(node) -> dict[int, dict]:
    out = run_cli("offer", "list", "--json", "--data-dir", str(node.data_dir))
    assert out.returncode == 0, out.stderr
    return {int(o["offer_id"]): o for o in json.loads(out.stdout)}


def log_since(node, offset: int) -> str:
    return node.log_path.read_bytes()[offset:].decode(errors="replace")


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def wait_gone(proc: psutil.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(proc):
            return True
        time.sleep(0.1)
    return gone(proc)


def test_sigterm_restart_keeps_contracts_offers_and_head(daemon_factory):
    node = daemon_factory("keep", chain="dev", roles=["compute"]).start(timeout=120)
    offer_id = offer_compute(node)
    info = node.rpc("chain_info")
    assert node.stop() == 0, node.log_tail()

    offset = node.log_path.stat().st_size
    again = daemon_factory("keep", chain="dev", roles=["compute"]).start(timeout=120)
    info2 = again.rpc("chain_info")
    restart_log = log_since(again, offset)
    assert info2["contracts"] == info["contracts"]
    assert "deployed Registry" not in restart_log and "deploying the contracts again" not in restart_log, restart_log
    assert info2["head"] >= info["head"]
    assert [int(lg["topics"][1], 16) for lg in offers_on_chain(info2)] == [offer_id]
    assert listed(again)[offer_id]["active"] is True
    # The chain goes on from there: a second offer gets the next id.
    assert offer_compute(again) == offer_id + 1
    assert again.stop() == 0


def test_sigkill_leaves_the_chain_and_a_hung_anvil_is_stopped_by_pid_at_the_next_start(daemon_factory):
    node = daemon_factory("crash", chain="dev", roles=["compute"]).start(timeout=120)
    offer_id = offer_compute(node)
    info = node.rpc("chain_info")
    time.sleep(3)  # > the 1 s state interval: the offer's block is in anvil's periodic dump
    anvil = psutil.Process(info["anvil_pid"])
    try:
        # A hung anvil: it cannot act on the SIGTERM its dying node's PR_SET_PDEATHSIG sends.
        os.kill(anvil.pid, signal.SIGSTOP)
        node.kill()
        time.sleep(0.5)
        assert not gone(anvil), "a stopped anvil should have outlived its SIGKILLed node"
        record = json.loads((node.data_dir / "chain" / "anvil.pid").read_text())
        assert record["pid"] == anvil.pid and record["create_time"] == anvil.create_time()

        offset = node.log_path.stat().st_size
        again = daemon_factory("crash", chain="dev", roles=["compute"]).start(timeout=120)
        assert wait_gone(anvil, 5), "the left-behind anvil still runs after the node restarted"
        restart_log = log_since(again, offset)
        assert f"anvil pid {anvil.pid} from a previous run of this node is still running" in restart_log, restart_log
        info2 = again.rpc("chain_info")
        assert info2["contracts"] == info["contracts"] and info2["head"] >= info["head"]
        assert [int(lg["topics"][1], 16) for lg in offers_on_chain(info2)] == [offer_id]
        assert listed(again)[offer_id]["active"] is True
        record = json.loads((again.data_dir / "chain" / "anvil.pid").read_text())
        assert record["pid"] == info2["anvil_pid"]
    finally:
        if not gone(anvil):  # never leave it behind, also when an assertion failed
            anvil.kill()
    assert again.stop() == 0
    assert not (again.data_dir / "chain" / "anvil.pid").exists()


def test_anvil_killed_with_its_node_keeps_what_the_periodic_dump_wrote(daemon_factory):
    node = daemon_factory("oom", chain="dev", roles=["compute"]).start(timeout=120)
    offer_id = offer_compute(node)
    info = node.rpc("chain_info")
    time.sleep(3)  # > the 1 s state interval
    anvil = psutil.Process(info["anvil_pid"])
    # Both die at once (an OOM kill, a container stop): anvil never writes its exit dump.
    os.kill(anvil.pid, signal.SIGSTOP)
    node.kill()
    anvil.kill()
    assert wait_gone(anvil, 10)

    offset = node.log_path.stat().st_size
    again = daemon_factory("oom", chain="dev", roles=["compute"]).start(timeout=120)
    restart_log = log_since(again, offset)
    info2 = again.rpc("chain_info")
    assert info2["contracts"] == info["contracts"] and "deployed Registry" not in restart_log, restart_log
    assert [int(lg["topics"][1], 16) for lg in offers_on_chain(info2)] == [offer_id]
    assert listed(again)[offer_id]["active"] is True
    assert again.stop() == 0


def test_corrupt_state_file_is_refused_and_a_missing_one_is_logged_before_redeploying(daemon_factory):
    node = daemon_factory("bad", chain="dev").start(timeout=120)
    info = node.rpc("chain_info")
    assert node.stop() == 0
    state = node.data_dir / "chain" / "anvil-state.json"
    good = state.read_bytes()
    state.write_bytes(good[: len(good) // 2])  # what a SIGKILL in the middle of anvil's in-place rewrite leaves

    corrupt = daemon_factory("bad", chain="dev")
    try:
        corrupt.start(timeout=60)
        raise AssertionError("the node started over a corrupt dev chain state file")
    except RuntimeError as exc:
        assert "anvil-state.json is corrupt" in str(exc) and ".corrupt" in str(exc), str(exc)
    assert state.read_bytes() == good[: len(good) // 2]  # left for the user to inspect

    state.unlink()
    offset = node.log_path.stat().st_size
    fresh = daemon_factory("bad", chain="dev").start(timeout=120)
    assert "anvil-state.json is missing: anvil started a new, empty chain; deploying the contracts again" in log_since(fresh, offset)
    info2 = fresh.rpc("chain_info")
    for address in info2["contracts"].values():
        assert len(eth(info2["endpoint"], "eth_getCode", address, "latest")) > 2
    assert info2["head"] <= info["head"] + 1  # a new chain, not the old one
    assert fresh.stop() == 0



def test_a_task_opened_before_a_sigkill_is_found_after_the_restart(daemon_factory, tmp_path):
    """The model provider's own dev chain keeps its task: the same id, on chain and in task_list, after a SIGKILL."""
    from tests.integration.test_task_verify_e2e import MANIFEST

    node = daemon_factory("tasks", chain="dev", roles=["model", "compute"]).start(timeout=120)
    offer_id = offer_compute(node)
    manifest = tmp_path / "task.toml"
    manifest.write_text(MANIFEST)
    # this node deployed the contracts (their authority, refused as arbiter): name another arbiter
    created = node.rpc("task_create", manifest_toml=manifest.read_text(), arbiter="0x" + "11" * 20, timeout=300)
    task_id = int(created["task_id"])
    info = node.rpc("chain_info")
    anvil = psutil.Process(info["anvil_pid"])
    time.sleep(3)  # > the 1 s state interval
    node.kill()  # anvil gets SIGTERM from PR_SET_PDEATHSIG and writes its exit dump
    assert wait_gone(anvil, 20), "anvil outlived its SIGKILLed node"

    offset = node.log_path.stat().st_size
    again = daemon_factory("tasks", chain="dev", roles=["model", "compute"]).start(timeout=120)
    info2 = again.rpc("chain_info")
    assert info2["contracts"] == info["contracts"] and "deployed Registry" not in log_since(again, offset)
    tasks = {t["task_id"]: t for t in again.rpc("task_list")}
    assert task_id in tasks and tasks[task_id]["phase"] in ("matching", "abandoned"), tasks  # "none" on a new chain
    opened = eth(info2["endpoint"], "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest",
                                                    "address": info2["contracts"]["TrainingTask"]})
    assert task_id in {int(lg["topics"][1], 16) for lg in opened if len(lg["topics"]) > 1}
    assert listed(again)[offer_id]["active"] is True
    assert again.stop() == 0
