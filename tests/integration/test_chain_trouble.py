"""Chain trouble: the shared anvil of a task's `--chain URL` nodes goes away for 30 s mid-round and comes back on its state."""

from __future__ import annotations

import json
import time

import trio
from eth_utils import keccak

from dainode.chain.devchain import deploy_contracts, load_deploy_spec, write_deployment
from tests.integration.chain_env import AnvilProcess, make_client
from tests.integration.daemon import run_cli, start_all, wait_for
from dainode.localnet.workload import shard_files
from tests.integration.test_task_verify_e2e import MANIFEST

OUTAGE_S = 30.0
REGISTERED_TOPIC = "0x" + keccak(text="OfferRegistered(uint256,address,uint8,uint256,bytes32,uint64)").hex()


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


TASK_MANIFEST = MANIFEST.replace("round_window_s = 5", "round_window_s = 60")  # 3 rounds, 2 providers
ETH = 10**18
PUBLISHED_TOPIC = "0x" + keccak(text="GlobalModelPublished(uint256,uint16,bytes32,uint64)").hex()
SUBMITTED_TOPIC = "0x" + keccak(text="UpdateSubmitted(uint256,uint16,uint256,address,bytes32,uint64)").hex()


def task_logs(anvil: AnvilProcess, tt: str, topic: str, task_id: int) -> list[dict]:
    return anvil.rpc("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": tt,
                                     "topics": [topic, "0x" + task_id.to_bytes(32, "big").hex()]})


def sent_by(anvil: AnvilProcess, addresses: set[str], first_block: int) -> list[tuple[dict, dict]]:
    """(transaction, receipt) of every transaction one of `addresses` sent from `first_block` on."""
    out = []
    for n in range(first_block, int(anvil.rpc("eth_blockNumber"), 16) + 1):
        for tx in anvil.rpc("eth_getBlockByNumber", hex(n), True)["transactions"]:
            if tx["from"].lower() in addresses:
                out.append((tx, anvil.rpc("eth_getTransactionReceipt", tx["hash"])))
    return out


def test_a_30_s_chain_outage_mid_round_pauses_the_nodes_and_they_catch_up(daemon_factory, tmp_path):
    """1 model provider + 2 data+compute nodes on a shared anvil, and a lone compute node `c` that no node is
    connected to (its offers reach the others only through Registry events). anvil stops for 30 s right after
    round 0 is published (round 1 in flight) and comes back on its state: a command during the outage fails with
    a clear error, the roles wait and catch up, the event index catches up from its cursor, and the task ends
    with each round published once, each update submitted once and no transaction sent twice."""
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
        tt, registry = deployment["contracts"]["TrainingTask"], deployment["contracts"]["Registry"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(tmp_path / "deployment.json")}
        mp, c = start_all(daemon_factory("mp", chain=anvil.url, roles=["model"], env=env),
                          daemon_factory("c", chain=anvil.url, roles=["compute"], env=env))
        providers = start_all(*(daemon_factory(f"p{i}", chain=anvil.url, roles=["data", "compute"], env=env,
                                               bootstrap=[mp.multiaddr]) for i in range(2)))
        nodes = [mp, *providers]
        for node in (*nodes, c):
            anvil.rpc("anvil_setBalance", node.info["address"], hex(10 * ETH))
        rc, out = offer_compute(c)
        assert rc == 0, out
        first = json.loads(out)["offer_id"]
        for n, f in zip(providers, shard_files(tmp_path, 2)):
            for args in (("offer", "data", "--dataset", str(f), "--price", str(ETH // 10)), ("offer", "compute", "--price", str(ETH // 20))):
                out = run_cli(*args, "--json", "--data-dir", str(n.data_dir), timeout=300)
                assert out.returncode == 0, out.stderr + n.log_tail()
        wait_for("the model provider indexed both data offers",
                 lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= 2, 60)
        wait_for("the model provider sees c's first offer from chain events", lambda: first in listed(mp), 60)
        first_block = int(anvil.rpc("eth_blockNumber"), 16) + 1
        manifest = tmp_path / "task.toml"
        manifest.write_text(TASK_MANIFEST)
        out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(mp.data_dir), timeout=300)
        assert out.returncode == 0, out.stderr + mp.log_tail()
        task_id = json.loads(out.stdout)["task_id"]

        wait_for("round 0 published", lambda: task_logs(anvil, tt, PUBLISHED_TOPIC, task_id), 240)
        offsets = {n.name: n.log_path.stat().st_size for n in nodes}
        anvil.stop()  # SIGTERM: anvil writes its state; round 1 is being trained and submitted
        down_at = time.monotonic()
        rc, out = offer_compute(c)
        assert rc != 0 and ("unreachable" in out or "unavailable" in out), out  # a clear error, not a hang
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        for node in (*nodes, c):
            assert node.proc.poll() is None, f"{node.name} stopped during the outage:\n{node.log_tail()}"
        anvil.start()  # same port, same state

        rc, out = offer_compute(c)
        assert rc == 0, f"{out}\n{c.log_tail()}"
        second = json.loads(out)["offer_id"]
        # At least once: the model provider's index catches up from its cursor (its retry backs off to at most 30 s).
        wait_for("the model provider sees c's offer made after the outage", lambda: second in listed(mp), 120)

        def final():
            s = mp.rpc("task_status", task_id=task_id)
            return s if s["phase"] in ("abandoned", "final") else None

        status = wait_for("the task ends", final, 420)
        assert status["phase"] == "final" and not status.get("failures"), status
        outage_logs = {n.name: n.log_path.read_bytes()[offsets[n.name]:].decode(errors="replace") for n in nodes}
        # the outage was seen (the event watchers back off; roles in a chain call wait: "chain unavailable") and survived
        assert any("ChainUnavailable" in text or "chain unavailable" in text for text in outage_logs.values()), outage_logs

        published = [int(lg["topics"][2], 16) for lg in task_logs(anvil, tt, PUBLISHED_TOPIC, task_id)]
        submitted = sorted((int(lg["topics"][2], 16), lg["topics"][3]) for lg in task_logs(anvil, tt, SUBMITTED_TOPIC, task_id))
        assert published == [0, 1, 2], published  # each round published once
        cps = sorted(lg_cp for _, lg_cp in submitted[:2])
        assert submitted == sorted((r, cp) for r in range(3) for cp in cps), submitted  # each provider's update, each round, once
        sent = sent_by(anvil, {n.info["address"].lower() for n in nodes}, first_block)
        calls = [(tx["from"].lower(), (tx["to"] or "").lower(), tx["input"]) for tx, _ in sent]
        assert len(calls) == len(set(calls)), "a transaction was sent twice"
        assert all(int(r["status"], 16) == 1 for _, r in sent), [(tx["hash"], r["status"]) for tx, r in sent]
        # No duplicate transaction: c's offer refused during the outage never landed, the one after it once.
        logs = registered_by(anvil, registry, c.info["address"])
        assert [int(lg["topics"][1], 16) for lg in logs] == [first, second], logs
        assert int(anvil.rpc("eth_getTransactionCount", c.info["address"], "latest"), 16) == 2
        for node in nodes:
            assert node.stop() == 0, node.log_tail()
        assert c.stop() == 0, c.log_tail()

        # The offer refused during the outage is not "resumed" by a restart: the user was told it
        # failed and made another; a second registration would be a duplicate they never asked for.
        offset = c.log_path.stat().st_size
        again = daemon_factory("c", chain=anvil.url, roles=["compute"], env=env).start(timeout=120)
        time.sleep(3)  # resuming interrupted publications runs as the role starts
        logs = registered_by(anvil, registry, c.info["address"])
        assert [int(lg["topics"][1], 16) for lg in logs] == [first, second], (logs, again.log_path.read_bytes()[offset:].decode())
        assert again.stop() == 0
    finally:
        anvil.stop()
