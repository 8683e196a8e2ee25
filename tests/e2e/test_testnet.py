"""scripts/testnet on real daemons: up (split layout) prints its table, status, logs, every admin RPC method is in the
README, down; and `down` after a `kill -9` of the script in the middle of `up` still stops every daemon and anvil."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dainode.localnet import daemon_env
from tests.e2e.test_demo import alive

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "testnet"


def run_testnet(folder: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--dir", str(folder), *args], env=daemon_env(), capture_output=True,
                          text=True, timeout=timeout)


def in_folder(folder: Path) -> list[psutil.Process]:
    """Processes whose command line names the testnet folder (what a leak would look like)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(folder) in a for a in p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
def test_up_status_logs_down_on_the_split_layout(tmp_path):
    folder = tmp_path / "tn"
    try:
        up = run_testnet(folder, "up", "--nodes", "3", "--layout", "split")
        assert up.returncode == 0, up.stdout + up.stderr
        rows = {line.split()[0]: line.split() for line in up.stdout.splitlines() if line.split() and
                line.split()[0] in ("model", "data1", "compute1", "relay")}
        assert {n: r[1] for n, r in rows.items()} == {"model": "model", "data1": "data", "compute1": "compute", "relay": "relay"}
        record = json.loads((folder / "testnet.json").read_text())
        st = run_testnet(folder, "status")
        assert st.returncode == 0, st.stdout + st.stderr
        assert st.stdout.count(" running  roles ") == 4 and "peers 3 " in st.stdout, st.stdout
        logs = run_testnet(folder, "logs", "relay")
        relay_id = next(n["peer_id"] for n in record["nodes"] if n["name"] == "relay")
        assert logs.returncode == 0 and f"libp2p host {relay_id} listening" in logs.stdout, logs.stdout[-2000:]
        bad = run_testnet(folder, "logs", "nobody")
        assert bad.returncode == 1 and "no node 'nobody'" in bad.stderr and "relay" in bad.stderr
        again = run_testnet(folder, "up")
        assert again.returncode == 1 and "already running" in again.stderr
        # the README documents every admin RPC method a node of any role serves
        from dainode.localnet.network import Testnet

        net = Testnet.attach(folder)
        methods = set()
        for node in net.nodes.values():
            methods |= set(node.rpc("rpc_methods"))
        readme = (REPO / "README.md").read_text()
        missing = sorted(m for m in methods if not re.search(rf"`{m}[`(]", readme))  # `name` or `name(params)`
        assert not missing, f"README.md does not document these admin RPC methods: {missing}"
    finally:
        down = run_testnet(folder, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "down: stopped 5 processes" in down.stdout, down.stdout
    assert alive(record["processes"]) == [] and in_folder(folder) == []


@pytest.mark.slow
def test_down_after_kill_9_of_the_script_during_up_stops_everything(tmp_path):
    folder = tmp_path / "tn"
    script = subprocess.Popen([sys.executable, str(SCRIPT), "--dir", str(folder), "up", "--nodes", "2"], env=daemon_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # anvil and the 3 daemons launched: the script is waiting for them
            try:
                record = json.loads((folder / "testnet.json").read_text())
                if len(record["processes"]) == 4:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert record and len(record["processes"]) == 4, record
        script.send_signal(signal.SIGKILL)
        assert script.wait(10) == -9
        assert len(alive(record["processes"])) == 4  # the script died; what it started runs on
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
        down = run_testnet(folder, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "down: stopped 4 processes" in down.stdout, down.stdout
    assert alive(record["processes"]) == [] and in_folder(folder) == []
