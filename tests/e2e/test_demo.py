"""`make demo` end to end: the script runs its three daemons and the training job, and cleans up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dainode.localnet import daemon_env

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def test_demo_runs_every_step_and_stops_its_nodes():
    out = subprocess.run([sys.executable, str(DEMO)], env=daemon_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for step in ("== 1. network", "== 2. offer", "== 3. fetch", "== 4. chain", "== 5. training"):
        assert step in text
    assert text.count("identical: True") == 2
    assert "TrainingTask  0x" in text
    shares = text.split("reward shares", 1)[1].splitlines()[1]
    assert "provider 3: 0.000" in shares, shares
    assert text.rstrip().endswith("demo finished: every node stopped")
