"""report.json, the final model file and the PNG plots; matplotlib is only imported when plotting."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from dainode.ml.spec import params_from_bytes
from dainode.tasks.report import report_document, write_report


def test_write_report(tmp_path, clean_run):
    ev = clean_run.evidence
    results = [r.result for r in ev.rounds]
    final = clean_run.outcomes[-1].params
    payouts = {m: {"data_price_wei": 10**17, "bonus_wei": b, "paid_wei": 10**17 + b} for m, b in ev.posted_bonuses.items()}
    paths = write_report(tmp_path / "tasks" / "7", ev.manifest, results, clean_run.report, payouts=payouts,
                         final_params=final, extra={"task_id": 7})
    doc = json.loads(paths["report"].read_text())
    assert doc["schema"] == "dainode.task-report/1" and doc["extra"] == {"task_id": 7}
    assert doc["history"] == [{"round": o.round, "accuracy": o.accuracy, "loss": o.loss} for o in clean_run.outcomes]
    assert doc["split"]["matches"][0]["bonus_wei"] == str(clean_run.report.matches[0]["bonus_wei"])
    assert doc["payouts"]["0"]["paid_wei"] == str(payouts[0]["paid_wei"])  # amounts as decimal strings
    assert np.array_equal(params_from_bytes(ev.manifest.model_spec, paths["model"].read_bytes()), final)
    for name in ("accuracy_plot", "payout_plot"):
        data = paths[name].read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000
    assert sorted(p.name for p in paths["report"].parent.iterdir()) == [
        "accuracy_loss.png", "contribution_payout.png", "final_model.f32", "report.json"]  # no temp files left


def test_report_without_split_or_plots(tmp_path, clean_run):
    ev = clean_run.evidence
    paths = write_report(tmp_path, ev.manifest, [r.result for r in ev.rounds], plots=False)
    assert set(paths) == {"report"}
    assert report_document(ev.manifest, [])["split"] is None


def test_matplotlib_is_imported_lazily():
    code = ("import sys, dainode.tasks.report, dainode.tasks.verify; "
            "print('matplotlib' in sys.modules, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split()[0] == "False"
