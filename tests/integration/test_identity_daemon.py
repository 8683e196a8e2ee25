"""The node's keys with real `dainode` processes: concurrent starts, a lost or exposed key file, init --force."""

from __future__ import annotations

import json
import os
import subprocess
import time

from dainode.admin.client import AdminClient, socket_path
from dainode.errors import NodeNotRunningError
from dainode.identity import ETH_KEYSTORE, LIBP2P_KEYSTORE
from tests.integration.daemon import daemon_env, dainode_cmd, run_cli


def _start_args(data_dir) -> list[str]:
    # the standard (slow) KDF on purpose: writing the two keystores then takes about a second,
    # a window two unlocked starts would both fall into
    return dainode_cmd("start", "--data-dir", str(data_dir), "--listen", "/ip4/127.0.0.1/tcp/0", "--chain", "none")


def _node_info(data_dir) -> dict | None:
    try:
        with AdminClient(socket_path(data_dir), timeout=10) as client:
            return client.call("node_info")
    except (NodeNotRunningError, OSError, ValueError):
        return None


def test_two_starts_on_a_fresh_dir_create_one_identity(tmp_path):
    d = tmp_path / "n"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs = []
    try:
        for log in logs:
            with open(log, "wb") as f:
                procs.append(subprocess.Popen(_start_args(d), env=daemon_env(), stdout=f, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        info = None
        while time.monotonic() < deadline and (info is None or all(p.poll() is None for p in procs)):
            info = info or _node_info(d)
            time.sleep(0.2)
        outputs = [log.read_text() for log in logs]
        assert info is not None, outputs
        running = [p for p in procs if p.poll() is None]
        lost = [p for p in procs if p.poll() is not None]
        assert len(running) == 1 and len(lost) == 1, outputs
        loser_out = outputs[procs.index(lost[0])]
        assert lost[0].returncode == 1 and "another dainode is running" in loser_out, loser_out
        assert "Traceback" not in loser_out
        # only one process made keys, and the running node's keys are the ones on disk
        assert sum(out.count("initialised ") for out in outputs) == 1, outputs
        eth = json.loads((d / ETH_KEYSTORE).read_text())
        p2p = json.loads((d / LIBP2P_KEYSTORE).read_text())
        assert info["address"].lower() == "0x" + eth["address"]
        assert info["peer_id"] == p2p["dainode"]["peer_id"]
        assert info["pid"] == running[0].pid
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


def test_a_lost_or_exposed_key_file_stops_start_and_init_force_backs_up(daemon_factory):
    node = daemon_factory("a").start()
    first = node.info
    node.stop()
    d = node.data_dir
    libp2p_bytes = (d / LIBP2P_KEYSTORE).read_bytes()
    start = ["start", "--data-dir", str(d), "--light-kdf", "--listen", "/ip4/127.0.0.1/tcp/0", "--chain", "none"]

    os.chmod(d / ETH_KEYSTORE, 0o644)
    out = run_cli(*start, timeout=60)
    assert out.returncode == 1 and f"chmod 600 {d / ETH_KEYSTORE}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    os.chmod(d / ETH_KEYSTORE, 0o600)

    (d / ETH_KEYSTORE).unlink()
    out = run_cli(*start, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "eth.keystore.json is missing" in out.stderr and "init --force" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert (d / LIBP2P_KEYSTORE).read_bytes() == libp2p_bytes  # not deleted, not replaced
    assert not (d / ETH_KEYSTORE).exists()

    out = run_cli("init", "--data-dir", str(d), "--light-kdf", timeout=60)
    assert out.returncode == 1 and "init --force" in out.stderr, out.stderr
    out = run_cli("init", "--force", "--data-dir", str(d), "--light-kdf", timeout=60)
    assert out.returncode == 0, out.stderr
    backup = next(line.split(None, 2)[2] for line in out.stdout.splitlines() if line.startswith("old keys"))
    assert (d / "keys" / os.path.basename(backup) / "libp2p.keystore.json").read_bytes() == libp2p_bytes
    again = daemon_factory("a").start()
    assert again.info["peer_id"] != first["peer_id"]  # a new identity, made on request only
    out = run_cli("init", "--force", "--data-dir", str(d), "--light-kdf", timeout=60)
    assert out.returncode == 1 and "another dainode is running" in out.stderr, out.stderr
    assert again.rpc("node_info")["peer_id"] == again.info["peer_id"]
