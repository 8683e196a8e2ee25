"""Chain trouble: the shared anvil of two `--chain URL` nodes goes away for 30 s and comes back on the same state."""

from __future__ import annotations

import json
import time

import trio
from eth_utils import keccak

from dainode.chain.devchain import deploy_contracts, load_deploy_spec, write_deployment
from tests.integration.chain_env import AnvilProcess, make_client
from tests.integration.daemon import run_cli

OUTAGE_S = 30.0
REGISTERED_TOPIC = "0x" + keccak(text="OfferRegistered(uint256,address,uint8,uint256,bytes32,uint64)").hex()


def wait_for(what: str, fn, timeout: float):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:g} s: {what} (last: {last!r})")


def offer_compute(node) -> tuple[int, str]:
    out = run_cli("offer", "compute", "--price", "1", "--json", "--data-dir", str(node.data_dir), timeout=180)
    return out.returncode, out.stdout + out.stderr


def listed(node) -> set[int]:
    out = run_cli("offer", "list", "--json", "--data-dir", str(node.data_dir))
    assert out.returncode == 0, out.stderr
    return {int(o["offer_id"]) for o in json.loads(out.stdout)}


def registered_by(anvil: AnvilProcess, registry: str, owner: str) -> list[dict]:
    owner_topic = "0x" + owner[2:].lower().rjust(64, "0")
    return anvil.rpc("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": registry, "topics": [REGISTERED_TOPIC, None, owner_topic]})


def test_a_30_s_endpoint_outage_pauses_the_nodes_and_they_catch_up(daemon_factory, tmp_path):
    anvil = AnvilProcess(tmp_path, state=True, extra_args=("--state-interval", "1")).start()
    try:
        async def deploy():
            client = make_client(anvil.url)
            try:
                return await deploy_contracts(client.tx, client.contracts, load_deploy_spec())
            finally:
                await client.rpc.aclose()

        deployment = trio.run(deploy)
        write_deployment(tmp_path / "deployment.json", deployment)
        registry = deployment["contracts"]["Registry"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(tmp_path / "deployment.json")}
        # Not connected over p2p: b learns c's offers only from Registry events (the path under test).
        b = daemon_factory("b", chain=anvil.url, roles=["compute"], env=env).start(timeout=120)
        c = daemon_factory("c", chain=anvil.url, roles=["compute"], env=env).start(timeout=120)
        for node in (b, c):
            anvil.rpc("anvil_setBalance", node.info["address"], hex(10**20))

        rc, out = offer_compute(c)
        assert rc == 0, out
        first = json.loads(out)["offer_id"]
        wait_for("b sees c's first offer from chain events", lambda: first in listed(b), 60)

        anvil.stop()  # SIGTERM: anvil writes its state file and the endpoint is gone
        down_at = time.monotonic()
        rc, out = offer_compute(b)
        assert rc != 0 and ("unreachable" in out or "unavailable" in out), out  # a clear error, not a hang
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        for node in (b, c):
            assert node.proc.poll() is None, f"{node.name} stopped during the outage:\n{node.log_tail()}"
        anvil.start()  # same port, same state

        rc, out = offer_compute(c)
        assert rc == 0, f"{out}\n{c.log_tail()}"
        second = json.loads(out)["offer_id"]
        assert second == first + 1  # the chain came back where it was
        # At least once: b's index catches up from its cursor (its retry backs off to at most 30 s).
        wait_for("b sees c's offer made after the outage", lambda: second in listed(b), 120)

        rc, out = offer_compute(b)
        assert rc == 0, f"{out}\n{b.log_tail()}"
        mine = json.loads(out)["offer_id"]
        # No duplicate transaction: the offer refused during the outage never landed, the new one once.
        logs = registered_by(anvil, registry, b.info["address"])
        assert [int(lg["topics"][1], 16) for lg in logs] == [mine], logs
        assert int(anvil.rpc("eth_getTransactionCount", b.info["address"], "latest"), 16) == 1
        wait_for("c sees b's offer", lambda: mine in listed(c), 120)
        info = b.rpc("chain_info")
        assert info["events"]["cursor"] is not None and info["events"]["cursor"] >= int(logs[0]["blockNumber"], 16) - 1
        assert b.stop() == 0 and c.stop() == 0

        # The offer refused during the outage is not "resumed" by a restart: the user was told it
        # failed and made another; a second registration would be a duplicate they never asked for.
        offset = b.log_path.stat().st_size
        again = daemon_factory("b", chain=anvil.url, roles=["compute"], env=env).start(timeout=120)
        assert again.rpc("chain_info")["head"] >= info["head"]
        time.sleep(3)  # resuming interrupted publications runs as the role starts
        logs = registered_by(anvil, registry, b.info["address"])
        assert [int(lg["topics"][1], 16) for lg in logs] == [mine], (logs, again.log_path.read_bytes()[offset:].decode())
        assert again.stop() == 0
    finally:
        anvil.stop()
