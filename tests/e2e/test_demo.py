"""`make demo`'s path end to end (5 rounds instead of 10): scripts/testnet up, demo, down; the task runs across the daemons, is
paid and verified PASS on the relay, and no process the demo started is left (checked by the recorded PIDs)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from dainode.localnet import daemon_env

REPO = Path(__file__).resolve().parents[2]


def alive(records: list[dict]) -> list[dict]:
    out = []
    for r in records:
        try:
            p = psutil.Process(r["pid"])
            if abs(p.create_time() - r["create_time"]) <= 1.0 and p.status() != psutil.STATUS_ZOMBIE:
                out.append(r)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_make_demo_runs_the_task_across_daemons_pays_verifies_and_stops_everything(tmp_path):
    folder = tmp_path / "testnet"
    env = daemon_env(DAINODE_TESTNET_DIR=str(folder))
    # `-o install`: the recipe exactly as `make demo` runs it, without re-running the installer of a checked-out tree
    out = subprocess.run(["make", "-s", "-o", "install", "demo", "DEMO_ARGS=--rounds 5", f"PY={sys.executable}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1100)
    text = out.stdout
    assert out.returncode == 0, text[-4000:] + out.stderr[-3000:]
    record = json.loads((folder / "testnet.json").read_text())
    assert [r["name"] for r in record["processes"]] == ["anvil", "model", "node1", "node2", "node3", "node4", "relay"]
    # the table of `up`: every node with its roles, peer id, address, 100 ETH and admin socket
    for r in record["nodes"]:
        row = next(line for line in text.splitlines() if line.startswith(r["name"] + " "))
        assert r["peer_id"] in row and r["address"] in row and "100.000000 ETH" in row and r["socket"] in row, row
    # the task: one plain line per round (stdout is not a terminal), final accuracy, payouts, verify on the relay
    assert [ln.split(" accuracy ")[0] for ln in text.splitlines() if re.match(r"round \d+/5 accuracy", ln)] == \
        [f"round {i}/5" for i in range(1, 6)], text
    acc = float(re.search(r"final accuracy (\d\.\d+)", text).group(1))
    assert acc >= 0.90, text
    for n in ("node1", "node2", "node3", "node4"):
        assert re.search(rf"^  {n} +\d+ wei  \d+\.\d+ ETH$", text, re.M), f"no payout line for {n}:\n{text}"
        assert re.search(rf"{n} data price \d+ wei \+ contribution bonus \d+ wei; {n} compute \d+ wei", text), text
    assert "task verify on relay (took no part in the task):" in text
    assert re.search(r"task \d+: PASS  \(phase final, 5 rounds, 4 matches\)", text), text
    report = Path(re.search(r"^report: (\S+)$", text, re.M).group(1))
    assert json.loads(report.read_text())["history"][-1]["accuracy"] == pytest.approx(acc, abs=1e-4)
    plots = re.findall(r"^plot: +(\S+\.png)$", text, re.M)
    assert len(plots) == 2 and all(Path(p).stat().st_size > 0 for p in plots)
    assert re.search(r"^PASS: task \d+ final, verify exit 0", text, re.M)
    assert re.search(r"^down: stopped 7 processes", text, re.M), text
    assert alive(record["processes"]) == []


@pytest.mark.slow
def test_a_failed_demo_exits_1_and_still_stops_everything(tmp_path):
    """An unreachable accuracy: the task runs and verifies, demo says FAIL, make demo exits non-zero, down still runs."""
    folder = tmp_path / "testnet"
    env = daemon_env(DAINODE_TESTNET_DIR=str(folder))
    out = subprocess.run(["make", "-s", "-o", "install", "demo", "UP_ARGS=--nodes 2", "DEMO_ARGS=--rounds 1 --min-accuracy 1.01",
                          f"PY={sys.executable}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-2000:]  # make's status for a failed recipe
    assert re.search(r"^FAIL: task \d+ final, verify exit 0, accuracy \d\.\d+ \(needs >= 1.01\)", out.stdout, re.M), out.stdout
    assert re.search(r"^down: stopped 4 processes", out.stdout, re.M), out.stdout
    assert alive(json.loads((folder / "testnet.json").read_text())["processes"]) == []
