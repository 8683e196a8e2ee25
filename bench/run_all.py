#!/usr/bin/env python3
"""`make bench`: every benchmark in one run (FL vs Flower, scale + footprint, bitswap, gossip, gas, learning) -> bench/RESULTS.md.

    .venv/bin/python bench/run_all.py [--quick]

Each benchmark runs as its own process (so one failing or hanging is reported and the rest still run); figures are
printed as they come and the raw JSON goes to bench/results/. Nothing is asserted: the exit status is 0 when
RESULTS.md was written, whatever the figures say.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import figures  # noqa: E402

PY = sys.executable
FLOWER_PY = ROOT / "bench" / ".venv-flower" / "bin" / "python"
# (command, timeout s); the text output of each goes into RESULTS.md verbatim
OTHERS = [
    (["bench/bitswap.py", "--size", "64", "--runs", "3"], 420),
    (["bench/gossip.py", "--nodes", "16"], 300),
    (["bench/gas.py"], 300),
    (["bench/learning.py"], 300),
]


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def cpu_busy(sample_s: float = 2.0) -> float:
    """The share of all cores busy over `sample_s` (from /proc/stat): the load average lags by a minute."""
    def ticks():
        v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    (t0, i0), _ = ticks(), time.sleep(sample_s)
    t1, i1 = ticks()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def settle(max_s: float = 90.0, busy: float = 0.15) -> None:
    """Before each benchmark: wait (bounded) until the machine is idle, so one step's exiting processes (16 daemons
    stopping) do not load the next step's figures."""
    t0 = time.monotonic()
    while (b := cpu_busy()) > busy and time.monotonic() - t0 < max_s:
        pass
    log(f"cpu {b:.0%} busy after {time.monotonic() - t0:.0f} s of settling")


def log(msg: str) -> None:
    print(f"[make bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    import os

    return {"CPU": f"{cpu}, {os.cpu_count()} logical cores", "memory": f"{int(mem) / 2**20:.1f} GiB",
            "kernel": platform.release(), "OS": platform.platform()}


def _out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def versions() -> dict:
    from importlib import metadata

    def v(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    flower = _out([str(FLOWER_PY), "-c", "import importlib.metadata as m; print(m.version('flwr'), m.version('ray'))"]).split()
    pkg = json.loads((ROOT / "package.json").read_text())
    deps = {**pkg.get("dependencies", {}), **pkg.get("devDependencies", {})}
    anvil = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    return {"dainode": f"{v('dainode')} (git {_out(['git', 'rev-parse', '--short', 'HEAD'])}"
                       f"{', uncommitted changes' if _out(['git', 'status', '--porcelain', '--untracked-files=no']) else ''})",
            "Python": platform.python_version(), "jax": v("jax"), "numpy": v("numpy"), "libp2p (py)": v("libp2p"),
            "Flower (bench/.venv-flower)": f"flwr {flower[0] if flower else '?'}, ray {flower[1] if len(flower) > 1 else '?'}",
            "anvil": _out([str(anvil), "--version"]).splitlines()[0] if anvil.exists() else "?",
            "Helia (npm)": deps.get("helia", "?")}


def run_json(argv: list[str], timeout: float, name: str, results: Path) -> dict:
    """A benchmark that prints one JSON object on stdout (its progress on stderr, passed through)."""
    t0 = time.monotonic()
    p = subprocess.Popen([PY, *argv, "--json"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the benchmark's finally blocks stop its daemons (by PID) and it prints what it has
        p.terminate()
        try:
            stdout, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, _ = p.communicate()
        log(f"{name}: stopped after {timeout:.0f} s")
    log(f"{name}: exit {p.returncode} in {time.monotonic() - t0:.0f} s")
    try:
        out = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"exit {p.returncode}, no JSON on stdout"}
    (results / f"{name}.json").write_text(json.dumps(out, indent=2, default=str))
    return out


def run_text(argv: list[str], timeout: float) -> dict:
    t0, before = time.monotonic(), load()
    try:
        p = subprocess.run([PY, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        status, output = ("ok" if p.returncode == 0 else f"FAILED (exit {p.returncode})"), p.stdout
    except subprocess.TimeoutExpired as exc:
        status = f"did not finish within {timeout} s"
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    lines = output.rstrip().splitlines()
    if len(lines) > 60:
        lines = lines[:10] + [f"... ({len(lines) - 40} lines left out)"] + lines[-30:]
    return {"cmd": " ".join(argv), "status": status, "wall_s": time.monotonic() - t0, "load_before": before,
            "load_after": load(), "output": "\n".join(lines)}


def write(out: Path, meta: dict, t0: float, fl, scale, others) -> None:
    """RESULTS.md after every step, so a run stopped half-way still leaves what it measured (marked as partial)."""
    meta["wall_s"] = time.monotonic() - t0
    text = figures.render_results(meta, fl, scale, others)
    if not meta.get("complete"):
        text = text.replace("\n", "\n\n**Partial: `make bench` was still running when this was written.**\n", 1)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few rounds and small sizes (to try the pipeline, not for figures)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--steps", default="fl,scale,others",
                    help="the steps to run (fl, scale, others); the rest is taken from bench/results/ of an earlier run")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(), "versions": versions()}
    steps = set(args.steps.split(","))
    meta["reused"] = []

    def reuse(name: str):
        path = results / f"{name}.json"
        if not path.exists():
            return {"error": f"not run, and no {path} from an earlier run"}
        meta["reused"].append(f"{name} ({time.strftime('%Y-%m-%d %H:%M', time.localtime(path.stat().st_mtime))})")
        return json.loads(path.read_text())

    if "fl" in steps:
        log(f"load {load()}; FL vs Flower")
        fl_args = ["bench/fl_vs_flower.py"] + (["--rounds", "3", "--he-rounds", "2"] if args.quick else [])
        fl = run_json(fl_args, 1500, "fl_vs_flower", results)
    else:
        fl = reuse("fl_vs_flower")
    write(args.out, meta, t0, fl, None, [])
    if "scale" in steps:
        settle()
        log(f"load {load()}; scale")
        sc_args = ["bench/scale.py", "--plot", str(ROOT / "bench" / "scale.png")] + (["--providers", "4,8", "--rounds", "2"] if args.quick else [])
        scale = run_json(sc_args, 900, "scale", results)
    else:
        scale = reuse("scale")
    write(args.out, meta, t0, fl, scale, [])
    others = []
    if "others" in steps:
        for cmd, timeout in OTHERS:
            if args.quick and cmd[0] == "bench/bitswap.py":
                cmd = ["bench/bitswap.py", "--size", "8"]
            settle()
            log(f"load {load()}; {' '.join(cmd)}")
            others.append(run_text(cmd, timeout))
            log(f"{cmd[0]}: {others[-1]['status']} in {others[-1]['wall_s']:.0f} s")
            (results / "others.json").write_text(json.dumps(others, indent=2))
            write(args.out, meta, t0, fl, scale, others)
    else:
        others = reuse("others")
        others = others if isinstance(others, list) else []
    meta["complete"] = True
    write(args.out, meta, t0, fl, scale, others)
    log(f"wrote {args.out} in {meta['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
