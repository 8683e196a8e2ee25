"""The offer market with real daemons on one dev chain: A model (--chain dev), B data, C compute, D a late relay."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from eth_utils import keccak

from tests.integration.daemon import DaemonProcess, run_cli, wait_for

OFFERS_TOPIC = "/dai/1/offers"
REGISTERED_TOPIC = "0x" + keccak(text="OfferRegistered(uint256,address,uint8,uint256,bytes32,uint64)").hex()


def cli_json(node: DaemonProcess, *args: str, timeout: float = 120.0):
    out = run_cli(*args, "--json", "--data-dir", str(node.data_dir), timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stderr}\n{node.log_tail()}"
    return json.loads(out.stdout)


def eth(url: str, method: str, *params):
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()["result"]


def registered_by(url: str, registry: str, owner: str) -> list[dict]:
    owner_topic = "0x" + owner[2:].lower().rjust(64, "0")
    return eth(url, "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": registry, "topics": [REGISTERED_TOPIC, None, owner_topic]})


class Cluster:
    def __init__(self, base):
        self.base = base
        self.nodes: list[DaemonProcess] = []

    def start(self, name, roles, chain, **kw) -> DaemonProcess:
        node = DaemonProcess(self.base, name, roles=roles, chain=chain, **kw)
        self.nodes.append(node)
        return node.start(timeout=120)

    def join(self, name, roles, *, url=None) -> DaemonProcess:
        """A node on A's chain, funded by A (`dainode chain fund`), bootstrapped to A."""
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(self.a.data_dir / "deployment.json")}
        node = self.start(name, roles, url or self.url, bootstrap=[self.a.multiaddr], env=env)
        out = run_cli("chain", "fund", node.info["address"], "--eth", "10", "--data-dir", str(self.a.data_dir))
        assert out.returncode == 0, out.stderr
        return node

    def stop(self):
        for n in self.nodes:
            n.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("offers"))
    try:
        c.a = c.start("A", ["model"], "dev")
        info = c.a.rpc("chain_info")
        c.url, c.registry = info["endpoint"], info["contracts"]["Registry"]
        c.b = c.join("B", ["data"])
        c.c = c.join("C", ["compute"])
        yield c
    finally:
        c.stop()


def listed(node, kind=None, active=True):
    return [o for o in node.rpc("offer_list") if (kind is None or o["kind"] == kind) and o["active"] == active and o["verified"]]


@pytest.fixture(scope="module")
def offers(cluster):
    """B offers digits in 4 shards, C offers compute (documented commands only)."""
    data = cli_json(cluster.b, "offer", "data", "--dataset", "digits", "--shards", "4", "--price", "1000000000000000")
    comp = cli_json(cluster.c, "offer", "compute", "--price", "2000", "--capacity", "2")
    cluster.data_id, cluster.compute_id, cluster.data_cid = data["offer_id"], comp["offer_id"], data["cid"]
    cluster.offered_at = time.monotonic()
    return data, comp


@pytest.fixture(scope="module")
def relay(cluster, offers):
    """D: relay only, started after the offers were made."""
    cluster.d_started = time.monotonic()
    cluster.d = cluster.join("D", [])
    return cluster.d


def test_nodes_waiting_with_offers_out_have_not_loaded_jax(cluster, offers):
    """JAX with its XLA client (~170 MB, ~1 s of imports) loads when a node trains: the compute offer's device list
    comes from a child process and reading a manifest does not import the trainer. Checked in each daemon's memory
    map: no jaxlib shared object is mapped."""
    for node in (cluster.a, cluster.b, cluster.c):
        maps = Path(f"/proc/{node.pid}/maps").read_text()
        assert "jaxlib" not in maps and "/jax/" not in maps, f"{node.name} ({node.roles}) has JAX loaded"


def test_offers_reach_every_node_with_their_summaries(cluster, offers):
    data, comp = offers
    assert set(data) == {"offer_id", "cid", "tx"} and set(comp) == {"offer_id", "cid", "tx"}
    for node in (cluster.a, cluster.b, cluster.c):
        t0 = time.monotonic()
        offers = wait_for(f"both offers on {node.name}", lambda: (lambda o: o if len([x for x in o if x["verified"]]) == 2 else None)(
            cli_json(node, "offer", "list")), timeout=30, every=0.2)
        by_kind = {o["kind"]: o for o in offers}
        d, c = by_kind["data"], by_kind["compute"]
        assert (d["offer_id"], d["owner"], d["peer_id"], d["cid"]) == (data["offer_id"], cluster.b.info["address"], cluster.b.info["peer_id"], data["cid"])
        assert d["price_wei"] == "1000000000000000" and d["active"] is True
        assert (d["rows"], d["features"], d["shards"]) == (1797, 64, 4) and 0 < d["quality"] <= 1
        assert (c["owner"], c["peer_id"], c["price_wei"], c["capacity"], c["backend"]) == (
            cluster.c.info["address"], cluster.c.info["peer_id"], "2000", 2, "cpu")
        print(f"{node.name} listed both offers {time.monotonic() - cluster.offered_at:.1f} s after they were made "
              f"(checked in {time.monotonic() - t0:.1f} s)")
    shown = cli_json(cluster.a, "offer", "show", str(data["offer_id"]))
    doc = shown["document"]
    assert doc["schema"] == "dainode.data-offer/1" and len(doc["shards"]) == 4
    assert all(s["digest"].startswith("sha256:") for s in doc["shards"]) and doc["quality"]["function"] == "dainode.quality/1"
    assert doc["provider"] == {"peer_id": cluster.b.info["peer_id"], "address": cluster.b.info["address"]}


def test_a_late_relay_backfills_from_the_registry(cluster, relay):
    wait_for("both offers on the late relay D", lambda: len(listed(relay)) == 2, timeout=30, every=0.2)
    print(f"D listed both offers {time.monotonic() - cluster.d_started:.1f} s after its start began")
    assert cluster.d.rpc("gossip_stats")["offers"]["chain_events"] >= 2


def test_forged_announcements_are_dropped_and_counted_everywhere(cluster, relay):
    nodes = (cluster.a, cluster.b, cluster.c, cluster.d)
    before = {n.name: n.rpc("gossip_stats")["offers"]["dropped_by_reason"] for n in nodes}
    # C claims B's data offer (owned by another address)
    cluster.c.rpc("gossip_publish", topic=OFFERS_TOPIC, type="offer",
                  body={"offer_id": cluster.data_id, "kind": "data", "cid": cluster.data_cid, "price_wei": "1"})
    # B announces its own offer with a CID the chain does not record
    other = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    cluster.b.rpc("gossip_publish", topic=OFFERS_TOPIC, type="offer",
                  body={"offer_id": cluster.data_id, "kind": "data", "cid": other, "price_wei": "1000000000000000"})
    for n in nodes:
        def counted(n=n):
            now = n.rpc("gossip_stats")["offers"]["dropped_by_reason"]
            return now["wrong_owner"] > before[n.name]["wrong_owner"] and now["cid_mismatch"] > before[n.name]["cid_mismatch"]
        wait_for(f"forgeries counted on {n.name}", counted, timeout=30, every=0.2)
        offer = n.rpc("offer_get", offer_id=cluster.data_id)
        assert offer["cid"] == cluster.data_cid and offer["owner"] == cluster.b.info["address"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = {
        "nolabel.csv": "a,b,y\n1,2,0\n3,4,1\n",
        "text.csv": "a,b,y\n1,hello,0\n3,4,1\n",
        "nan.csv": "a,b,y\n1,nan,0\n3,4,1\n",
        "inf.csv": "a,b,y\n1,inf,0\n3,4,1\n",
        "oneclass.csv": "a,b,y\n1,2,0\n3,4,0\n5,6,0\n",
        "few.csv": "a,b,y\n1,2,0\n3,4,1\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    return d


@pytest.mark.parametrize("args, message", [
    (["--dataset", "{d}/missing.csv", "--label", "y"], "no such file"),
    (["--dataset", "{d}/nolabel.csv", "--label", "target"], "label column 'target' not in header"),
    (["--dataset", "{d}/text.csv", "--label", "y"], "'hello' is not a number"),
    (["--dataset", "{d}/nan.csv", "--label", "y"], "missing value"),
    (["--dataset", "{d}/inf.csv", "--label", "y"], "not finite"),
    (["--dataset", "{d}/few.csv", "--label", "y", "--shards", "3"], "2 rows cannot make 3 non-empty shards"),
    (["--dataset", "{d}/oneclass.csv", "--label", "y"], "at least two classes"),
])
def test_bad_datasets_exit_2_and_publish_nothing(cluster, offers, bad_files, args, message):
    b = cluster.b
    published = b.rpc("gossip_stats")["published"]
    registered = len(registered_by(cluster.url, cluster.registry, b.info["address"]))
    blocks = b.rpc("store_stat")["blocks"] if "store_stat" in b.rpc("rpc_methods") else None
    argv = [a.format(d=bad_files) for a in args]
    out = run_cli("offer", "data", *argv, "--price", "1", "--data-dir", str(b.data_dir), timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr and ("fix" in out.stderr or "--" in out.stderr), out.stderr
    assert b.rpc("gossip_stats")["published"] == published
    assert len(registered_by(cluster.url, cluster.registry, b.info["address"])) == registered
    if blocks is not None:
        assert b.rpc("store_stat")["blocks"] == blocks


def test_roles_and_dev_funding_are_refused_where_they_do_not_apply(cluster, offers):
    wrong_role = run_cli("offer", "data", "--dataset", "iris", "--price", "1", "--data-dir", str(cluster.a.data_dir))
    assert wrong_role.returncode == 1 and "restart it with --roles data" in wrong_role.stderr
    not_dev = run_cli("chain", "fund", cluster.a.info["address"], "--data-dir", str(cluster.b.data_dir))
    assert not_dev.returncode == 1 and "faucet" in not_dev.stderr


def test_withdraw_is_reflected_everywhere(cluster, relay):
    out = run_cli("offer", "withdraw", str(cluster.data_id), "--data-dir", str(cluster.b.data_dir))
    assert out.returncode == 0 and "withdrawn" in out.stdout, out.stderr
    t0 = time.monotonic()
    for n in (cluster.a, cluster.b, cluster.c, cluster.d):
        wait_for(f"data offer inactive on {n.name}", lambda n=n: not listed(n, "data") and listed(n, "data", active=False),
                 timeout=30, every=0.2)
        assert len(listed(n, "compute")) == 1
    print(f"withdrawal reflected on all four nodes {time.monotonic() - t0:.1f} s after the command returned")
    again = run_cli("offer", "withdraw", str(cluster.compute_id), "--data-dir", str(cluster.b.data_dir))
    assert again.returncode == 1 and "belongs to" in again.stderr


class HoldingProxy(BaseHTTPRequestHandler):
    """JSON-RPC proxy to anvil that holds the first eth_sendRawTransaction (mode: before or after forwarding it)."""

    upstream = ""
    mode = "after"
    held = threading.Event()
    release = threading.Event()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        cls = type(self)
        sending = b"eth_sendRawTransaction" in body and not cls.held.is_set()
        if sending and cls.mode == "before":
            cls.held.set()
            cls.release.wait(60)
            return
        reply = httpx.post(cls.upstream, content=body, headers={"content-type": "application/json"}, timeout=30).content
        if sending:
            cls.held.set()
            cls.release.wait(60)
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("mode", ["after", "before"])
def test_sigkill_during_offer_data_registers_exactly_once(cluster, mode):
    handler = type(f"Proxy{mode}", (HoldingProxy,), {"upstream": cluster.url, "mode": mode,
                                                     "held": threading.Event(), "release": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = f"K{mode}"
    node = None
    try:
        node = cluster.join(name, ["data"], url=f"http://127.0.0.1:{server.server_port}")
        import subprocess
        from tests.integration.daemon import daemon_env, dainode_cmd

        client = subprocess.Popen(dainode_cmd("offer", "data", "--dataset", "iris", "--price", "7", "--data-dir", str(node.data_dir)),
                                  env=daemon_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert handler.held.wait(120), node.log_tail()
            node.kill()  # SIGKILL: after the IPFS add and the signed tx's journal entry, before the receipt
        finally:
            client.wait(60)
        assert client.returncode != 0
        handler.release.set()
        sent = len(registered_by(cluster.url, cluster.registry, node.info["address"]))
        assert sent == (1 if mode == "after" else 0)
        # restart on the direct endpoint: the step resumes (looks the tx up / re-sends the same bytes)
        node.chain = cluster.url
        node.start(timeout=120)
        def mine():
            return [o for o in listed(node, "data") if o["owner"] == node.info["address"]]

        wait_for("the resumed offer is listed", mine, timeout=30, every=0.2)
        mine = mine()
        assert len(mine) == 1 and mine[0]["rows"] == 150
        assert len(registered_by(cluster.url, cluster.registry, node.info["address"])) == 1
        time.sleep(2)  # nothing else lands later
        assert len(registered_by(cluster.url, cluster.registry, node.info["address"])) == 1
        # A learns of the offer from the chain's event and gossip; under load (two test workers) that took >10 s
        wait_for("A lists it once",
                 lambda: len([o for o in listed(cluster.a, "data") if o["owner"] == node.info["address"]]) == 1,
                 timeout=60, every=0.2)
    finally:
        if node is not None:
            node.stop()
        handler.release.set()
        server.shutdown()
        server.server_close()


def test_a_role_without_a_chain_fails_at_start_naming_the_flag(tmp_path):
    out = run_cli("start", "--data-dir", str(tmp_path / "n"), "--light-kdf", "--roles", "data", "--chain", "none",
                  "--listen", "/ip4/127.0.0.1/tcp/0", timeout=120)
    assert out.returncode == 2, out.stderr
    assert "role 'data' needs a chain" in out.stderr and "--chain dev" in out.stderr
