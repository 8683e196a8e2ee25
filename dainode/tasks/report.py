"""The task's closing report in a directory: report.json, the final model, and PNG plots (matplotlib Agg, imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dainode.errors import TaskError
from dainode.fsutil import atomic_write
from dainode.ml.spec import params_to_bytes
from dainode.tasks.documents import RoundResult, params_digest
from dainode.tasks.manifest import Manifest
from dainode.tasks.split import SplitReport

SCHEMA = "dainode.task-report/1"
REPORT_FILE = "report.json"
MODEL_FILE = "final_model.f32"
ACCURACY_PLOT = "accuracy_loss.png"
PAYOUT_PLOT = "contribution_payout.png"
WEI_PER_ETH = 10**18


def report_document(manifest: Manifest, results: Sequence[RoundResult], split: SplitReport | None = None, *,
                    payouts: dict[int, dict] | None = None, final_params: np.ndarray | None = None,
                    extra: dict | None = None) -> dict[str, Any]:
    """The JSON of report.json: manifest, per-round history and results, split, payouts (amounts as strings)."""
    rs = sorted(results, key=lambda r: r.round)
    doc: dict[str, Any] = {
        "schema": SCHEMA, "manifest": manifest.to_document(),
        "history": [{"round": r.round, "accuracy": r.accuracy, "loss": r.loss} for r in rs],
        "rounds": [r.to_document() for r in rs],
        "split": split.to_document() if split is not None else None,
        "payouts": {str(m): {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in p.items()}
                    for m, p in sorted((payouts or {}).items())},
    }
    if final_params is not None:
        doc["final_model"] = {"file": MODEL_FILE, "params_digest": params_digest(final_params),
                              "n_params": int(np.asarray(final_params).size)}
    if extra:
        doc["extra"] = extra
    return doc


def write_report(out_dir: str | Path, manifest: Manifest, results: Sequence[RoundResult],
                 split: SplitReport | None = None, *, payouts: dict[int, dict] | None = None,
                 final_params: np.ndarray | None = None, extra: dict | None = None, plots: bool = True) -> dict[str, Path]:
    """Write report.json (+ final_model.f32, + the two PNGs) atomically into ``out_dir``; returns the paths by name.

    ``payouts``: per match id e.g. ``{"data_provider", "compute_provider", "data_price_wei", "compute_price_wei",
    "bonus_wei", "paid_wei"}`` (ints are written as decimal strings).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = report_document(manifest, results, split, payouts=payouts, final_params=final_params, extra=extra)
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False)
    except ValueError as exc:
        raise TaskError(f"report is not JSON-serialisable (NaN or infinity in a metric?): {exc}") from None
    paths = {"report": out / REPORT_FILE}
    if final_params is not None:
        paths["model"] = out / MODEL_FILE
        atomic_write(paths["model"], params_to_bytes(np.asarray(final_params, np.float32)))
    atomic_write(paths["report"], text.encode() + b"\n")
    if plots:
        paths["accuracy_plot"] = out / ACCURACY_PLOT
        _plot_history(paths["accuracy_plot"], doc["history"])
        if split is not None:
            paths["payout_plot"] = out / PAYOUT_PLOT
            _plot_payouts(paths["payout_plot"], split, payouts or {})
    return paths


def _pyplot():
    import matplotlib  # lazy: only the model provider's closing step draws

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write(path, buf.getvalue())


def _plot_history(path: Path, history: list[dict]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    try:
        rounds = [h["round"] for h in history]
        ax.plot(rounds, [h["accuracy"] for h in history], "o-", color="tab:blue", label="accuracy")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round (model after aggregating it)")
        ax.set_ylabel("test accuracy", color="tab:blue")
        ax.set_ylim(0, 1)
        ax2 = ax.twinx()
        ax2.plot(rounds, [h["loss"] for h in history], "s--", color="tab:red", label="loss")
        ax2.set_ylabel("test loss (cross-entropy)", color="tab:red")
        ax.set_title("accuracy and loss per round")
        _save(fig, path)
    finally:
        plt.close(fig)


def _plot_payouts(path: Path, split: SplitReport, payouts: dict[int, dict]) -> None:
    plt = _pyplot()
    ids = [int(d["match_id"]) for d in split.matches]
    shares = [float(d["share"]) for d in split.matches]
    pay = []
    for d in split.matches:
        p = payouts.get(int(d["match_id"]), {})
        total = int(p["paid_wei"]) if "paid_wei" in p else int(d["bonus_wei"]) + int(p.get("data_price_wei", 0))
        pay.append(total / WEI_PER_ETH)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    try:
        labels = [f"match {m}" for m in ids]
        a1.bar(labels, shares, color="tab:green")
        a1.set_ylabel("contribution share")
        a1.set_title(f"contribution ({split.method})")
        a2.bar(labels, pay, color="tab:orange")
        a2.set_ylabel("payout (ETH)")
        a2.set_title("payout per data provider (price + bonus)")
        _save(fig, path)
    finally:
        plt.close(fig)
