#!/usr/bin/env python3
"""CLI latency benchmark: wall time of `dainode status` against a real running daemon, and of `dainode --version`.

    .venv/bin/python bench/cli.py             # 20 runs of each
    .venv/bin/python bench/cli.py --runs 50 --json

Each run is a fresh process (`python -m dainode ...`), as a user's shell or script would
start it, so the figure includes interpreter start-up, imports, the admin-socket round trip
and printing. Reference: `geth attach --exec` style clients and `ipfs id` answer in tens of
milliseconds; the target of issue 10 is <= 150 ms for `dainode status`. The bare
interpreter start-up (`python -c pass`) is printed too: no Python CLI can go below it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dainode.localnet import DaemonProcess, daemon_env, dainode_cmd  # noqa: E402

TARGET_MS = 150.0
REFERENCE = "geth attach / ipfs id style clients: tens of ms"


def time_runs(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Wall time in ms of `runs` fresh processes; every run must exit 0."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        times.append((time.perf_counter() - t0) * 1000.0)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {out.returncode}: {out.stderr.strip()}")
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "runs": len(times)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()

    env = daemon_env(PYTHONPATH=str(ROOT))
    # An installed dainode has .pyc files; with PYTHONDONTWRITEBYTECODE (set in some sandboxes)
    # every run would compile dainode's modules again and measure that instead.
    no_pyc = env.pop("PYTHONDONTWRITEBYTECODE", None) is not None
    with tempfile.TemporaryDirectory(prefix="dainode-bench-cli-") as tmp:
        node = DaemonProcess(Path(tmp), "a")
        try:
            node.start()
            status = ["status", "--data-dir", str(node.data_dir)]
            time_runs(dainode_cmd(*status), 2, env)  # warm the page cache and .pyc files
            results = {
                "python -c pass": summary(time_runs([sys.executable, "-c", "pass"], args.runs, env)),
                "dainode --version": summary(time_runs(dainode_cmd("--version"), args.runs, env)),
                "dainode status": summary(time_runs(dainode_cmd(*status), args.runs, env)),
            }
        finally:
            node.stop()

    if args.json:
        print(json.dumps({"target_ms": TARGET_MS, "results": results}, indent=2))
        return 0
    print(f"{'command':<20} {'median':>9} {'min':>9} {'max':>9}   ({args.runs} runs each, fresh process per run)")
    for name, r in results.items():
        print(f"{name:<20} {r['median_ms']:7.1f}ms {r['min_ms']:7.1f}ms {r['max_ms']:7.1f}ms")
    if no_pyc:
        print("(PYTHONDONTWRITEBYTECODE was unset for the runs, as on a normal install with .pyc files)")
    st = results["dainode status"]["median_ms"]
    verdict = "met" if st <= TARGET_MS else "NOT met"
    print(f"target: dainode status <= {TARGET_MS:.0f} ms ({verdict}: {st / TARGET_MS:.2f}x the target); reference: {REFERENCE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
