"""`dainode start --chain dev` as a real daemon: anvil spawned, contracts deployed, CLI, and anvil gone after stop."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import psutil

from tests.integration.daemon import raw_request, run_cli


def eth(url: str, method: str, *params):
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()["result"]


def test_dev_chain_daemon_deploys_and_cleans_up(daemon_factory):
    started = time.monotonic()
    node = daemon_factory("dev", chain="dev").start(timeout=90)
    out = run_cli("chain", "info", "--json", "--data-dir", str(node.data_dir))
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["chain_id"] == 31337 and info["account"] == node.info["address"]
    assert sorted(info["contracts"]) == ["DataTransfer", "Registry", "TrainingTask"]
    for name, address in info["contracts"].items():
        assert len(eth(info["endpoint"], "eth_getCode", address, "latest")) > 2, f"no code at {name}"
    deployment = json.loads((node.data_dir / "deployment.json").read_text())
    assert deployment["contracts"] == info["contracts"] and deployment["chain_id"] == 31337
    anvil = psutil.Process(info["anvil_pid"])
    assert anvil.ppid() == node.pid and "anvil" in anvil.name()

    human = run_cli("chain", "info", "--data-dir", str(node.data_dir))
    assert human.returncode == 0 and info["contracts"]["Registry"] in human.stdout
    acct = run_cli("account", "--json", "--data-dir", str(node.data_dir))
    assert acct.returncode == 0, acct.stderr
    bal = json.loads(acct.stdout)
    assert bal["address"] == node.info["address"] and int(bal["wei"]) > 0  # funded by the dev chain

    # Verified state over admin RPC: the Registry's code is proven against the header's stateRoot.
    proven = node.rpc("chain_verify_state", address=info["contracts"]["Registry"], slots=[0])
    assert proven["verified"] and proven["account"]["has_code"]
    bad_slot = raw_request(node.socket, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_verify_state", "params": {
        "address": info["contracts"]["Registry"], "slots": ["0xzz"]}}).encode())
    assert bad_slot["error"]["code"] == -32602 and "0xzz" in bad_slot["error"]["message"]
    bad = run_cli("rpc", "chain_balance", '{"address": "0x123"}', "--data-dir", str(node.data_dir))
    assert bad.returncode == 1 and "not an Ethereum address" in bad.stderr

    # Regression: anvil must outlive trio's idle worker threads (10 s); PR_SET_PDEATHSIG is
    # bound to the thread that forked it, so it has to be spawned from the main thread.
    time.sleep(max(0.0, 12.5 - (time.monotonic() - started)))
    assert anvil.is_running() and node.rpc("chain_info")["head"] >= 3

    assert node.stop() == 0, node.log_tail()
    assert not anvil.is_running() or anvil.status() == psutil.STATUS_ZOMBIE

    # A restart reuses the chain state and the deployment instead of deploying again.
    again = daemon_factory("dev", chain="dev").start(timeout=90)
    info2 = again.rpc("chain_info")
    assert info2["contracts"] == info["contracts"] and info2["anvil_pid"] != info["anvil_pid"]
    again.stop()
    assert not psutil.pid_exists(info2["anvil_pid"]) or psutil.Process(info2["anvil_pid"]).status() == psutil.STATUS_ZOMBIE


def test_dev_chain_death_stops_the_node_and_node_death_stops_anvil(daemon_factory):
    node = daemon_factory("crash", chain="dev").start(timeout=90)
    anvil = psutil.Process(node.rpc("chain_info")["anvil_pid"])
    os.kill(anvil.pid, signal.SIGKILL)  # our test's grandchild, by PID
    assert node.wait(timeout=30) == 1
    assert "exited unexpectedly" in node.log_tail()

    again = daemon_factory("crash", chain="dev").start(timeout=90)
    anvil = psutil.Process(again.rpc("chain_info")["anvil_pid"])
    again.kill()  # SIGKILL: no finally block runs in the node; the kernel must stop anvil
    try:
        anvil.wait(timeout=15)
    except psutil.TimeoutExpired:
        anvil.kill()
        raise AssertionError("anvil outlived a SIGKILLed node")


def test_unreachable_chain_endpoint_stops_the_node_with_a_clear_error(daemon_factory):
    from tests.integration.daemon import free_port

    node = daemon_factory("down", chain=f"http://127.0.0.1:{free_port()}")
    try:
        node.start(timeout=30)
        raise AssertionError("the node started although its chain endpoint is down")
    except RuntimeError as exc:
        assert "unreachable" in str(exc) and "chain.endpoint" in str(exc)


def test_url_endpoint_with_a_deployment_file(daemon_factory, tmp_path):
    import trio

    from tests.integration.chain_env import AnvilProcess, deploy_all, make_client
    from dainode.chain.devchain import write_deployment

    anvil = AnvilProcess(tmp_path).start()
    try:
        async def deploy():
            client = make_client(anvil.url)
            try:
                deployed = await deploy_all(client)
            finally:
                await client.rpc.aclose()
            return {"chain_id": 31337, "block": 1, "contracts": {n: deployed[n].address for n in deployed.names()}}

        deployment = trio.run(deploy)
        missing = daemon_factory("nofile", chain=anvil.url, env={"DAINODE_CHAIN_DEPLOYMENT_FILE": str(tmp_path / "absent.json")})
        try:
            missing.start(timeout=30)
            raise AssertionError("started without a deployment file")
        except RuntimeError as exc:
            assert "absent.json does not exist" in str(exc)

        write_deployment(tmp_path / "deployment.json", deployment)
        node = daemon_factory("url", chain=anvil.url, env={"DAINODE_CHAIN_DEPLOYMENT_FILE": str(tmp_path / "deployment.json")}).start()
        info = node.rpc("chain_info")
        assert info["contracts"] == deployment["contracts"] and info["dev"] is False and info["endpoint"] == anvil.url
        assert int(node.rpc("chain_balance")["wei"]) == 0  # a fresh node account on a real endpoint is not funded
        node.stop()

        plain = daemon_factory("nochain").start()
        out = run_cli("account", "--data-dir", str(plain.data_dir))
        assert out.returncode == 1 and "--chain none" in out.stderr
    finally:
        anvil.stop()
