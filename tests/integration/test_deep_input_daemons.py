"""Deeply nested input from a client, a chain endpoint and a peer gets an error; the daemon never segfaults (issue 10)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dainode.chain.devchain import CONTRACT_NAMES, write_deployment
from dainode.limits import MAX_DAG_DEPTH, MAX_JSON_DEPTH, RECURSION_LIMIT
from dainode.store.blockstore import Blockstore
from tests.integration.daemon import raw_request, run_cli
from tests.unit.store.deep_dag import deep_chain

SEGFAULT = -11  # Popen.returncode of a process killed by SIGSEGV (a shell shows 139)
DEEP = 100_000  # levels: a 200 KB line of brackets, far past what the C stack survives at recursion limit 100,000


def assert_alive(node) -> dict:
    assert node.proc.poll() is None, f"daemon {node.name} exited with {node.proc.returncode}:\n{node.log_tail()}"
    info = node.rpc("node_info")
    assert info["pid"] == node.pid
    return info


# --- (a) the admin socket -----------------------------------------------------------------


def test_deep_admin_request_gets_an_error_and_the_limit_stays_restored_with_the_chain_up(daemon_factory):
    node = daemon_factory("admin", chain="dev").start(timeout=120)
    assert "chain" in assert_alive(node)["services"]  # the eth stack is imported and its service is up
    line = b"[" * DEEP + b"]" * DEEP
    assert len(line) >= 200_000
    reply = raw_request(node.socket, line, timeout=30)
    assert reply["error"]["code"] == -32600
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in reply["error"]["message"]
    # nesting inside a real request's params too, and an object that never closes
    params = b'{"jsonrpc":"2.0","id":7,"method":"gossip_publish","params":{"topic":"/dai/1/offers","body":{"x":' + b"[" * DEEP + b"}}}"
    assert raw_request(node.socket, params, timeout=30)["error"]["code"] == -32600
    info = assert_alive(node)
    assert info["recursion_limit"] == RECURSION_LIMIT  # py_ecc raises it to 100,000 at import; restored and kept


# --- lesser defects: huge integers and NaN in a gossip body --------------------------------


@pytest.mark.parametrize(
    "body, why",
    [
        (b'{"n": 1180591620717411303424}', "64-bit"),
        (b'{"n": -9223372036854775809}', "64-bit"),
        (b'{"x": NaN}', "not a finite number"),
        (b'{"x": [1, {"y": -Infinity}]}', "not a finite number"),
    ],
    ids=["2**70", "-2**63-1", "NaN", "-Infinity"],
)
def test_gossip_body_with_huge_int_or_nan_is_invalid_params(daemon_factory, body, why):
    node = daemon_factory("gossip").start()
    line = b'{"jsonrpc":"2.0","id":1,"method":"gossip_publish","params":{"topic":"/dai/1/offers","body":' + body + b"}}"
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(node.socket))
        s.sendall(line + b"\n")
        raw = s.makefile("rb").readline()
    reply = json.loads(raw, parse_constant=lambda c: pytest.fail(f"the reply holds non-JSON {c}: {raw!r}"))
    assert reply["error"]["code"] == -32602 and why in reply["error"]["message"], reply
    assert node.rpc("gossip_recent", "/dai/1/offers") == []  # nothing was published
    assert_alive(node)


# --- (b) a chain endpoint answering deeply nested JSON --------------------------------------


class DeepChain(ThreadingHTTPServer):
    """A tiny Ethereum JSON-RPC endpoint that answers `eth_chainId` (unless `all_deep`) and nests everything else deeply."""

    daemon_threads = True

    def __init__(self, all_deep: bool):
        self.all_deep = all_deep
        self.calls: list[str] = []
        super().__init__(("127.0.0.1", 0), _DeepHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(10)


class _DeepHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        method = req["method"] if isinstance(req, dict) else "batch"
        self.server.calls.append(method)
        if method == "eth_chainId" and not self.server.all_deep:
            body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0x7a69"}).encode()
        else:
            rid = req["id"] if isinstance(req, dict) else 1
            body = b'{"jsonrpc":"2.0","id":%d,"result":' % rid + b"[" * DEEP + b"]" * DEEP + b"}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def deep_chain_server(request):
    server = DeepChain(all_deep=request.param)
    yield server
    server.close()


@pytest.mark.parametrize("deep_chain_server", [True], indirect=True)
def test_chain_endpoint_answering_deep_json_at_start_is_a_clear_error(daemon_factory, deep_chain_server):
    node = daemon_factory("deepstart", chain=deep_chain_server.url)
    with pytest.raises(RuntimeError) as err:
        node.start(timeout=60)
    assert node.proc.returncode == 1, f"exit {node.proc.returncode} (a segfault is {SEGFAULT}):\n{node.log_tail()}"
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in str(err.value)
    assert "eth_chainId" in deep_chain_server.calls


@pytest.mark.parametrize("deep_chain_server", [False], indirect=True)
def test_chain_endpoint_answering_deep_json_later_leaves_the_node_up(daemon_factory, deep_chain_server, tmp_path):
    deployment = tmp_path / "deployment.json"
    write_deployment(deployment, {"chain_id": 31337, "block": 0, "contracts": {n: "0x" + f"{i + 1:040x}" for i, n in enumerate(CONTRACT_NAMES)}})
    node = daemon_factory("deeplater", chain=deep_chain_server.url, env={"DAINODE_CHAIN_DEPLOYMENT_FILE": str(deployment)})
    node.start(timeout=60)
    out = run_cli("rpc", "--data-dir", str(node.data_dir), "chain_balance")
    assert out.returncode == 1 and f"nested deeper than {MAX_JSON_DEPTH} levels" in out.stderr, out
    # the event watcher keeps polling and keeps getting deep answers: the node stays up through several
    deadline = time.monotonic() + 30
    while sum(m not in ("eth_chainId", "eth_getBalance") for m in deep_chain_server.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    polls = [m for m in deep_chain_server.calls if m not in ("eth_chainId", "eth_getBalance")]
    assert len(polls) >= 3, deep_chain_server.calls
    assert_alive(node)
    assert node.stop() == 0


# --- (c) a peer serving a 25,000-deep DAG over bitswap -------------------------------------


def test_get_of_a_25000_deep_dag_from_a_real_peer_fails_with_a_depth_error(daemon_factory, tmp_path):
    root, blocks = deep_chain(25_000)
    assert sum(map(len, blocks.values())) > 1_000_000  # over 1 MB of tiny blocks (the report: about 2 MB)
    server = daemon_factory("server", env={"DAINODE_STORE_FETCH_TIMEOUT_S": "20"}).start()
    getter = daemon_factory("getter", env={"DAINODE_STORE_FETCH_TIMEOUT_S": "20"}).start()
    store = Blockstore(server.data_dir / "blocks", sync=False)  # the serving daemon reads its blockstore from disk
    for cid, block in blocks.items():
        store.put(cid, block)
    assert server.rpc("store_stat")["blocks"] >= len(blocks)

    out_path = tmp_path / "deep.bin"
    got = run_cli("get", str(root), "-o", str(out_path), "--peer", server.multiaddr, "--data-dir", str(getter.data_dir), timeout=120)
    assert got.returncode == 1, got
    assert f"nested deeper than {MAX_DAG_DEPTH} levels" in got.stderr, got.stderr
    assert not out_path.exists() and not list(tmp_path.glob(".deep.bin.*"))  # no output, no temp file left
    stat = getter.rpc("bitswap_stat")
    assert stat["blocks_received"] <= MAX_DAG_DEPTH + 2  # it stopped at the limit, not after 25,000 fetches
    # a recursive pin walks the same DAG: refused at the same depth
    pinned = run_cli("pin", "add", str(root), "--data-dir", str(getter.data_dir), timeout=120)
    assert pinned.returncode == 1 and f"nested deeper than {MAX_DAG_DEPTH} levels" in pinned.stderr, pinned
    assert getter.rpc("store_pin_ls") == []
    assert_alive(getter)
    assert_alive(server)


# --- numeric config values: refused at start ------------------------------------------------


@pytest.mark.parametrize(
    "toml, key, shown",
    [
        ("[gossip]\nheartbeat_s = nan\n", "gossip.heartbeat_s", "0.05 to 60.0"),
        ("[gossip]\ntime_window_s = inf\n", "gossip.time_window_s", "1.0 to 86400.0"),
        ("[store]\nchunk_size = 5000000\n", "store.chunk_size", "1 to 1048576"),
    ],
)
def test_start_refuses_nan_inf_and_out_of_range_config_with_status_2(tmp_path, toml, key, shown):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    out = run_cli("start", "--config", str(config), "--data-dir", str(tmp_path / "node"), "--chain", "none", "--light-kdf", timeout=60)
    assert out.returncode == 2, out
    assert key in out.stderr and f"allowed range is {shown}" in out.stderr, out.stderr
    assert not (tmp_path / "node" / "admin.sock").exists()
