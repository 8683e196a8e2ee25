#!/usr/bin/env python3
"""The digits task with 4, 8 and 16 providers (1 model provider + N data+compute daemons + a relay): time per round,
peak RSS per node, and each node's footprint (start-to-ready time, idle RSS); a PNG plot in bench/.

    .venv/bin/python bench/scale.py                       # 4, 8, 16 providers, 5 rounds each
    .venv/bin/python bench/scale.py --providers 4,8 --rounds 3 --json --plot bench/scale.png

Each size is a fresh network from bench/task.py's measure() with the job of bench/fl_vs_flower.py (IID digits shards,
MLP 64-128-10, plain SGD), cut into N shards. Peak RSS is each daemon's VmHWM when the task is done; idle RSS is read
after every offer is indexed, before the task. Footprint targets (issue 17): start-to-ready <= 2 s, idle RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import figures  # noqa: E402
from fl_vs_flower import dainode_manifest, digits_files, measure_dainode  # noqa: E402

READY_TARGET_S, IDLE_RSS_TARGET_MB = 2.0, 150.0


def summarize_size(n: int, res: dict) -> dict:
    """One size's row: median round, RSS peaks (model provider, providers' median and max), footprint."""
    if "error" in res:
        return {"providers": n, "error": res["error"]}
    peak = res["peak_rss_mb"]
    prov = [v for k, v in peak.items() if k.startswith("p")]
    return {"providers": n, "rounds": res["rounds"], "median_round_ms": res["median_round_ms"],
            "final_accuracy": res["final_accuracy"], "peak_rss_mp_mb": peak.get("mp"),
            "peak_rss_provider_median_mb": figures.median(prov), "peak_rss_provider_max_mb": max(prov, default=float("nan")),
            "peak_rss_all_mb": sum(peak.values()), "start_to_ready_s": res["start_to_ready_s"], "idle_rss_mb": res["idle_rss_mb"],
            "bytes": res.get("bitswap_bytes_sent"), "parts_ms": res.get("median_parts_ms", {})}


def footprint(rows: list[dict]) -> dict:
    """Start-to-ready and idle RSS over the model provider and providers of every size (a daemon: one `dainode start`).

    The relay is left out: its start includes a dev chain (anvil) and the contracts' deployment."""
    ready = [v for r in rows if "error" not in r for k, v in r["start_to_ready_s"].items() if k != "relay"]
    idle = [v for r in rows if "error" not in r for k, v in r["idle_rss_mb"].items() if k != "relay"]
    return {"daemons": len(ready), "start_to_ready_median_s": figures.median(ready), "start_to_ready_max_s": max(ready, default=float("nan")),
            "idle_rss_median_mb": figures.median(idle), "idle_rss_max_mb": max(idle, default=float("nan")),
            "ready_target_s": READY_TARGET_S, "idle_rss_target_mb": IDLE_RSS_TARGET_MB}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    n = [r["providers"] for r in ok]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(n, [r["median_round_ms"] for r in ok], "o-")
    a.set(xlabel="providers (data+compute daemons)", ylabel="median time per round (ms)", title="dainode: time per round")
    a.set_xticks(n)
    for key, label in (("peak_rss_mp_mb", "model provider"), ("peak_rss_provider_median_mb", "provider (median)"),
                       ("peak_rss_provider_max_mb", "provider (max)")):
        b.plot(n, [r[key] for r in ok], "o-", label=label)
    b.set(xlabel="providers", ylabel="peak RSS per node (MB)", title="dainode: peak RSS per node")
    b.set_xticks(n)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--providers", default="4,8,16")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--plot", type=Path, default=ROOT / "bench" / "scale.png")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _sizes(args, rows)
    except KeyboardInterrupt:  # SIGTERM/SIGINT: the daemons of the size under way were stopped; report the others
        rows.append({"providers": getattr(args, "current", "?"), "error": "stopped (time budget) before it finished"})
    if any("error" not in r for r in rows):
        plot(rows, args.plot)
    out = {"sizes": rows, "footprint": footprint(rows), "plot": str(args.plot)}
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    print(figures.table(figures.SCALE_HEADER, figures.scale_rows(rows)))
    f = out["footprint"]
    print(f"footprint over {f['daemons']} daemons: start-to-ready median {f['start_to_ready_median_s']:.2f} s "
          f"(max {f['start_to_ready_max_s']:.2f}; target <= {READY_TARGET_S} s), idle RSS median {f['idle_rss_median_mb']:.0f} MB "
          f"(max {f['idle_rss_max_mb']:.0f}; target <= {IDLE_RSS_TARGET_MB:.0f} MB); plot: {args.plot}")
    return 0


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _sizes(args, rows: list[dict]) -> None:
    for n in [int(x) for x in args.providers.split(",")]:
        args.current = n
        work = Path(tempfile.mkdtemp(prefix=f"dainode-bench-scale{n}-"))
        _, files = digits_files("iid", work, clients=n)
        t0 = time.monotonic()
        print(f"[scale] {n} providers, {args.rounds} rounds, load {Path('/proc/loadavg').read_text().split()[0]}",
              file=sys.stderr, flush=True)
        res = measure_dainode(args.rounds, dainode_manifest("iid", args.rounds, n), files)  # one size failing: the others still run
        row = summarize_size(n, res)
        row["failed_attempts"] = res["failed_attempts"]
        row["wall_s"] = time.monotonic() - t0
        row["load"] = Path("/proc/loadavg").read_text().split()[0]
        rows.append(row)
        print(f"[scale] {n}: {json.dumps({k: v for k, v in row.items() if k not in ('start_to_ready_s', 'idle_rss_mb')})}",
              file=sys.stderr, flush=True)

if __name__ == "__main__":
    sys.exit(main())
