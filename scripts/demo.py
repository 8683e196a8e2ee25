#!/usr/bin/env python3
"""`make demo`: a local three-node dainode network that exercises every layer, then the reference training job.

What runs, in order (every node is a real `dainode start` process, stopped by PID at the end):

1. network   a model provider (with a private dev chain: anvil + the three contracts), a data
             provider bootstrapping to it, and a computation provider bootstrapping to the data
             provider only; the DHT makes every node find every other;
2. offer     the data provider shards scikit-learn's digits, scores their quality, writes the
             schema document to its IPFS store and announces the CID on gossip (/dai/1/offers);
3. fetch     the computation and model providers see the offer and fetch the document over
             bitswap by CID (verified block by block);
4. chain     the model provider's contracts and balance, read through the light client;
5. training  the learning core runs the reference job (4 providers, MLP 64-128-10, 20 rounds)
             with plain and with CKKS-encrypted aggregation, then measures each provider's
             contribution (Shapley) for the reward split, with one careless provider.

Step 5 runs in this process: the roles that run it across the nodes (matching, encrypted
rounds, rewards on chain) are the next milestone.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dainode.localnet import DaemonProcess  # noqa: E402

OFFERS = "/dai/1/offers"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def wait_for(what: str, check, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"demo: timed out after {timeout:.0f} s waiting for {what}")


def start_network(base: Path) -> list[DaemonProcess]:
    step("1. network: three nodes as separate processes")
    model = DaemonProcess(base, "model-provider", roles=["model"], chain="dev")
    nodes = [model]
    model.start(timeout=120)
    # the data and compute roles need a chain: they join the model provider's dev chain
    chain = {"chain": model.rpc("chain_info")["endpoint"], "env": {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(model.data_dir / "deployment.json")}}
    data = DaemonProcess(base, "data-provider", roles=["data"], bootstrap=[model.multiaddr], **chain)
    nodes.append(data)
    data.start()
    compute = DaemonProcess(base, "compute-provider", roles=["compute"], bootstrap=[data.multiaddr], **chain)
    nodes.append(compute)
    compute.start()
    for node in nodes:
        print(f"  {node.name:<17} peer {node.info['peer_id']}  account {node.info['address']}")
        if node.info.get("http_url"):  # the same URL `dainode dashboard` prints
            print(f"  {'':<17} dashboard {node.info['http_url']}?token={(node.data_dir / 'http.token').read_text().strip()}")
    wait_for("every node to see both others", lambda: all(len(n.rpc("p2p_peers")) >= 2 for n in nodes))
    print("  every node is connected to both others (the compute provider found the model provider through the DHT)")
    return nodes


def publish_offer(data: DaemonProcess, base: Path) -> str:
    step("2. offer: the data provider shards its data, scores it and publishes the schema on IPFS + gossip")
    from dainode.ml.datasets import load_builtin
    from dainode.ml.preprocess import canonical_json, schema_document, shard_iid

    ds = load_builtin("digits")
    shards = shard_iid(len(ds.y), 4, seed=0)
    doc = schema_document(ds, shards, label_classes=list(range(10)), metadata={"offer": "demo", "price_wei": 10**15})
    path = base / "schema.json"
    path.write_bytes(canonical_json(doc))
    added = data.rpc("store_add", path=str(path))
    print(f"  {len(shards)} shards, quality score {doc['quality']['score']:.3f}, schema {added['size']} bytes -> {added['cid']}")
    data.rpc("gossip_publish", OFFERS, {"schema_cid": added["cid"], "price_wei": 10**15})
    print(f"  offer announced on {OFFERS}")
    return added["cid"]


def fetch_offer(nodes: list[DaemonProcess], cid: str, base: Path) -> None:
    step("3. fetch: the other providers hear the offer and fetch the schema over bitswap")
    original = (base / "schema.json").read_bytes()
    for node in nodes:
        offer = wait_for(f"the offer at {node.name}", lambda: _offer_seen(node, cid))
        out = base / f"schema-at-{node.name}.json"
        got = node.rpc("store_get", cid, str(out), timeout=120)
        same = out.read_bytes() == original
        print(f"  {node.name:<17} heard it from {offer['sender']}, fetched {got['size']} bytes in {got['elapsed_s']} s, identical: {same}")
        if not same:
            raise SystemExit("demo: fetched bytes differ from the original")


def _offer_seen(node: DaemonProcess, cid: str) -> dict | None:
    for msg in node.rpc("gossip_recent", OFFERS, 20):
        if msg.get("body", {}).get("schema_cid") == cid:
            return msg
    return None


def show_chain(model: DaemonProcess) -> None:
    step("4. chain: the model provider's dev chain, read through the light client")
    info = model.rpc("chain_info")
    balance = model.rpc("chain_balance")
    print(f"  chain id {info['chain_id']}, head block {info['head']}, endpoint {info['endpoint']}")
    for name, address in sorted(info["contracts"].items()):
        print(f"  {name:<13} {address}")
    print(f"  model provider balance: {json.dumps(balance)}")


def train() -> None:
    step("5. training: the reference federated job (in this process; the roles come next)")
    import numpy as np

    from dainode.ml.contribution import shapley
    from dainode.ml.reference import reference_data, reference_job
    from dainode.ml.simulate import run_federated

    data = reference_data()
    for label, overrides in (("plain FedAvg", {}), ("CKKS-encrypted FedAvg", {"ckks": True})):
        job = reference_job("iid", data=data, **overrides)
        t0 = time.perf_counter()
        result = run_federated(job)
        print(f"  {label:<22} accuracy {result.accuracy:.4f} after {job.rounds} rounds ({time.perf_counter() - t0:.1f} s)")

    # Rewards: provider 3 is careless (its labels are shuffled); its contribution should show it.
    job = reference_job("iid", data=data, record_updates=True)
    x3, y3 = job.providers[3]
    job.providers[3] = (x3, np.random.default_rng(0).permutation(y3))
    result = run_federated(job)
    shares = shapley(job.model, result.records, *job.test, len(job.providers), seed=0)["shares"]
    print(f"  with provider 3's labels shuffled: accuracy {result.accuracy:.4f}; reward shares (Shapley over the round updates):")
    print("    " + ", ".join(f"provider {i}: {share:.3f}" for i, share in sorted(shares.items())))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dainode-demo-") as tmp:
        base = Path(tmp)
        nodes: list[DaemonProcess] = []
        try:
            nodes = start_network(base)
            model, data, compute = nodes
            cid = publish_offer(data, base)
            fetch_offer([compute, model], cid, base)
            show_chain(model)
        except BaseException:
            for node in nodes:
                print(f"\n--- log of {node.name} ---\n{node.log_tail(30)}", file=sys.stderr)
            raise
        finally:
            for node in nodes:
                node.stop()
        train()
    print("\ndemo finished: every node stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
