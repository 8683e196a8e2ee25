"""The acceptance task on a local network: median wall time per round and a per-round breakdown.

usage: .venv/bin/python bench/task.py [--rounds N] [--json]

Starts a relay (dev chain, no roles), a model provider and 4 `--roles data,compute` daemons, each
offering a quarter of digits, runs the 4-provider MLP task of tests/integration/test_task_e2e.py and
prints, from `task_status.timings` (recorded by the model provider each round):
  wait_updates  round opened -> every update in: the CPs' event latency, model fetch (bitswap),
                envelope open, local training (JAX), update seal + put, submitUpdate tx + receipt,
                and the MP's event delivery, fetch and open of each update
  aggregate_eval  aggregation + evaluation on the test set
  publish       seal global model + IPFS put + round result + publishGlobalModel tx + confirmation
and, from each compute provider's State (slowest of the round): cp_fetch_model (event -> global model
fetched over bitswap and opened), cp_train (JAX local training), cp_submit (seal + IPFS put +
submitUpdate tx + receipt); then times `dainode task verify` on the relay. Target (issue 13): median <= 100 ms per round;
peers: Flower 1.42 deployment mode ~9.5 s/round, in-process simulation ~0.21 s, bare msgpack/TCP ~4 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.daemon import DaemonProcess, run_cli  # noqa: E402
from tests.integration.test_task_e2e import COMPUTE_PRICE, DATA_PRICE, MANIFEST, quarters  # noqa: E402

FLOWER_DEPLOYMENT_S, FLOWER_SIM_S, BARE_MS = 9.5, 0.21, 4.0
PARTS = ("wait_updates_ms", "aggregate_eval_ms", "publish_ms")
CP_PARTS = ("fetch_model_ms", "train_ms", "submit_ms")


def compute_timings(node: DaemonProcess, task_id: int) -> list[dict]:
    """The compute role's per-round timings, from its own State (read-only; they are not in task_status)."""
    import sqlite3

    con = sqlite3.connect(f"file:{node.data_dir / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT doc FROM tasks WHERE role = 'compute'").fetchall()
    finally:
        con.close()
    out = []
    for (doc,) in rows:
        d = json.loads(doc)
        if int(d.get("task_id", -1)) == task_id:
            out += d.get("timings", [])
    return out


def wait_for(fn, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError("benchmark step did not finish in time")


def peak_rss_mb(pid: int) -> float:
    """The peak resident set of a live process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(rounds: int, *, providers: int = 4, manifest_text: str | None = None, files: list[Path] | None = None,
            verify: bool = True) -> dict:
    """Run the task on a fresh local network and return its figures (bench/fl_vs_flower.py calls this with its own
    manifest, shards and provider count). Adds: per-node start-to-ready time, idle RSS before the task, peak RSS
    (VmHWM) and bitswap bytes sent, and the wall time from `task create` to the result."""
    import psutil

    base = Path(tempfile.mkdtemp(prefix="dainode-bench-task-"))
    nodes: list[DaemonProcess] = []
    try:
        relay = DaemonProcess(base, "relay", roles=None, chain="dev")
        nodes.append(relay)
        started = {}
        t_start = time.monotonic()
        relay.start(timeout=120)
        started["relay"] = time.monotonic() - t_start
        url = relay.rpc("chain_info")["endpoint"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(relay.data_dir / "deployment.json")}
        mp = DaemonProcess(base, "mp", roles=["model"], chain=url, bootstrap=[relay.multiaddr], env=env)
        nodes.append(mp)
        t_start = time.monotonic()
        mp.start(timeout=120)
        started["mp"] = time.monotonic() - t_start
        n_providers = providers
        providers = [DaemonProcess(base, f"p{i}", roles=["data", "compute"], chain=url, bootstrap=[relay.multiaddr, mp.multiaddr],
                                   env=env) for i in range(n_providers)]
        for n in [mp, *providers]:
            if n is not mp:
                nodes.append(n)
                t_start = time.monotonic()
                n.start(timeout=120)
                started[n.name] = time.monotonic() - t_start
            run_cli("chain", "fund", n.info["address"], "--eth", "10", "--data-dir", str(relay.data_dir))
        for n, f in zip(providers, files or quarters(base)):
            run_cli("offer", "data", "--dataset", str(f), "--price", str(DATA_PRICE), "--data-dir", str(n.data_dir), timeout=300)
            run_cli("offer", "compute", "--price", str(COMPUTE_PRICE), "--data-dir", str(n.data_dir), timeout=300)
        wait_for(lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= n_providers, 120)
        idle_rss = {n.name: psutil.Process(n.pid).memory_info().rss / 2**20 for n in nodes}
        manifest = base / "task.toml"
        manifest.write_text(manifest_text or MANIFEST.replace("rounds = 10", f"rounds = {rounds}"))
        t_submit = time.monotonic()
        out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(mp.data_dir), timeout=300)
        if out.returncode != 0:
            return {"error": (out.stderr.strip() or out.stdout.strip()).splitlines()[-1]}
        task_id = json.loads(out.stdout)["task_id"]
        status = wait_for(lambda: (lambda s: s if s["phase"] in ("split_posted", "final", "abandoned") else None)(
            mp.rpc("task_status", task_id=task_id)), 600, every=0.5)
        submit_to_result_s = time.monotonic() - t_submit
        timings = status["timings"]
        stats, crashed = {}, []
        for n in nodes:  # a node that crashed after the last round (its log says why) is named, not fatal here
            try:
                stats[n.name] = n.rpc("bitswap_stat")["bytes_sent"]
            except Exception:
                crashed.append(n.name)
        footprint = {"start_to_ready_s": started, "idle_rss_mb": idle_rss, "crashed_after_task": crashed,
                     "peak_rss_mb": {n.name: peak_rss_mb(n.pid) for n in nodes if n.name not in crashed},
                     "bitswap_bytes_sent": sum(stats.values())}
        verify_s, verdict = float("nan"), "not run"
        if verify:
            wait_for(lambda: relay.rpc("task_watch", task_id=task_id, wait_s=0)["revealed"], 120)
            t0 = time.monotonic()
            verify = run_cli("task", "verify", str(task_id), "--json", "--data-dir", str(relay.data_dir), timeout=900)
            verify_s = time.monotonic() - t0
            verdict = json.loads(verify.stdout)["verdict"] if verify.stdout.strip() else f"error: {verify.stderr.strip()}"
        cp = [t for n in providers for t in compute_timings(n, task_id)]
        for t in timings:  # the slowest compute provider of the round sets the pace
            mine = [c for c in cp if c["round"] == t["round"]]
            for k in CP_PARTS:
                t[f"cp_{k}"] = max((c[k] for c in mine), default=float("nan"))
        totals = [t["total_ms"] for t in timings]
        med = statistics.median(totals) if totals else float("nan")
        result = {"rounds": len(timings), "median_round_ms": med, "median_parts_ms": {p: statistics.median([t[p] for t in timings])
                                                                                        for p in PARTS + tuple(f"cp_{k}" for k in CP_PARTS) if timings},
                  "per_round": timings, "final_accuracy": status["history"][-1]["accuracy"] if status["history"] else None,
                  "verify_s": round(verify_s, 2), "verify": verdict,
                  "vs_flower_deployment": FLOWER_DEPLOYMENT_S * 1000 / med, "vs_flower_simulation": FLOWER_SIM_S * 1000 / med,
                  "vs_bare_msgpack_tcp": BARE_MS / med, "phase": status["phase"],
                  "submit_to_result_s": submit_to_result_s, **footprint}
        return result
    finally:
        for n in nodes:
            n.stop()


def run(rounds: int, as_json: bool) -> int:
    result = measure(rounds)
    if "error" in result:
        print(f"task create failed: {result['error']}", file=sys.stderr)
        return 1
    timings, med, verdict, verify_s = result["per_round"], result["median_round_ms"], result["verify"], result["verify_s"]
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{len(timings)} rounds, final accuracy {result['final_accuracy']}")
    cols = PARTS + tuple(f"cp_{k}" for k in CP_PARTS)
    print(f"{'round':>5} {'total':>9} " + " ".join(f"{p[:-3]:>16}" for p in cols))
    for t in timings:
        print(f"{t['round']:>5} {t['total_ms']:>8.1f}ms " + " ".join(f"{t[p]:>14.1f}ms" for p in cols))
    print(f"median per round: {med:.1f} ms (target <= 100 ms); parts: "
          + ", ".join(f"{p[:-3]} {v:.1f} ms" for p, v in result["median_parts_ms"].items()))
    print(f"vs Flower 1.42 deployment (~9.5 s): {result['vs_flower_deployment']:.1f}x faster; vs its simulation (~0.21 s): "
          f"{result['vs_flower_simulation']:.2f}x; vs bare msgpack/TCP FedAvg (~4 ms): {result['vs_bare_msgpack_tcp']:.3f}x")
    print(f"task verify on the relay: {verdict} in {verify_s:.1f} s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    return run(args.rounds, args.json)


if __name__ == "__main__":
    sys.exit(main())
