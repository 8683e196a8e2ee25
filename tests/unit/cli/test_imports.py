"""Client commands import only what they use: no Ethereum, libp2p, ML or trio stack (issue 10: ~1.6 s per command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

HEAVY = ["eth_account", "eth_keyfile", "libp2p", "web3", "jax", "tenseal", "numpy", "trio", "dainode.identity", "dainode.node",
         "prometheus_client", "hypercorn"]

# Runs in a fresh interpreter: a tiny thread-based admin socket answers every call, the real
# CLI `main` runs several client commands against it, then we report what got imported.
SCRIPT = r"""
import json, os, socket, sys, tempfile, threading

import dainode.cli

RESULTS = {"node_info": {"version": "0.1.0", "peer_id": "12D3KooWx", "roles": ["data"], "listen_addrs": [],
                         "http_url": "http://localhost:1/"},
           "p2p_peers": [], "store_pin_ls": [], "rpc_modules": {"node": "1.0"},
           "store_stat": {"blocks": 1, "bytes": 2, "pins": 0, "repo_path": "/x"}}
data_dir = tempfile.mkdtemp()
fd = os.open(os.path.join(data_dir, "http.token"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"x" * 43)
os.close(fd)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(os.path.join(data_dir, "admin.sock"))
srv.listen(16)

def serve():
    while True:
        conn, _ = srv.accept()
        with conn, conn.makefile("rb") as f:
            for line in f:
                req = json.loads(line)
                conn.sendall(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": RESULTS[req["method"]]}).encode() + b"\n")

threading.Thread(target=serve, daemon=True).start()
dainode.cli.build_parser()
codes = [dainode.cli.main(argv + ["--data-dir", data_dir]) for argv in
         (["status"], ["status", "--json"], ["rpc", "rpc_modules"], ["peers"], ["pin", "ls"], ["repo", "stat"], ["dashboard"])]
codes.append(dainode.cli.main(["status", "--data-dir", os.path.join(data_dir, "nothing-here")]))
print(json.dumps({"codes": codes, "heavy": sorted(m for m in HEAVY if m in sys.modules)}), file=sys.stderr)
"""


def test_client_commands_do_not_import_the_daemon_stack():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = f"HEAVY = {HEAVY!r}\n" + SCRIPT
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stderr.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0, 0, 0, 0, 0, 1], out
    assert report["heavy"] == [], f"client commands imported {report['heavy']}"


def test_version_does_not_import_the_daemon_stack():
    code = "import sys, dainode.cli\ntry:\n    dainode.cli.main(['--version'])\nexcept SystemExit:\n    pass\n"
    code += f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
