"""bench/gas.py on a real anvil: its --json shape, and the gas targets from the paper's Table I."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gas_bench_json_meets_the_targets():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gas.py"), "--json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert set(out) == {"functions", "trade_total", "task_total"}
    fns = out["functions"]
    for name in ("initTransaction", "provideData", "verifiedData", "cancel", "requestForcefulRefund",
                 "requestForcefulSettle", "executeForcefulRefund", "executeForcefulSettle", "settleAfterTimeout",
                 "registerOffer", "updateOffer", "withdrawOffer",
                 "openTask", "recordMatch", "TrainingTask.provideData", "startTraining", "submitUpdate",
                 "rejectUpdate", "publishGlobalModel", "postSplit", "revealKey", "revealTestSet", "challenge",
                 "upholdSplit", "replaceSplit", "finalize", "abandon", "TrainingTask.withdraw", "withdrawTo"):
        assert set(fns[name]) == {"gas_used", "paper"}, name
        assert fns[name]["gas_used"] > 21000, name
    # Table I rows: DataTransfer's own, and the TrainingTask functions that do the same job.
    assert fns["initTransaction"]["paper"] == 81112 and fns["openTask"]["paper"] == 81112
    assert fns["TrainingTask.provideData"]["paper"] == 61061 and fns["recordMatch"]["paper"] is None
    assert out["trade_total"] == sum(fns[n]["gas_used"] for n in ("initTransaction", "provideData", "verifiedData"))
    assert fns["initTransaction"]["gas_used"] <= 81112
    assert fns["provideData"]["gas_used"] <= 61061
    assert out["trade_total"] <= 163173
    # The whole 4-provider, 10-round task: more than its 72 transactions' base cost, less than one block.
    assert 72 * 21000 < out["task_total"] < 30_000_000
