"""The acceptance task on a local network: median wall time per round and a per-round breakdown.

usage: .venv/bin/python bench/task.py [--rounds N] [--json]

Starts the default local testnet (dainode.localnet: anvil, a relay with no roles, a model provider and 4
`--roles data,compute` daemons, each offering a quarter of digits), runs the 4-provider MLP task of
tests/integration/test_task_e2e.py and
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

from dainode.localnet import DaemonProcess, run_cli  # noqa: E402
from dainode.localnet.network import Testnet, layout  # noqa: E402
from dainode.localnet.workload import task_manifest  # noqa: E402

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


def run(rounds: int, as_json: bool) -> int:
    net = Testnet(Path(tempfile.mkdtemp(prefix="dainode-bench-task-")), fund_wei=10 * 10**18)
    try:
        net.up(layout("default", 5))
        net.offer_all()
        relay, mp, providers = net.relay, net.model, net.by_role("data")
        manifest = net.root / "task.toml"
        manifest.write_text(task_manifest(providers=4, rounds=rounds, name="digits-mlp-e2e", pool_wei=4 * 10**18))
        out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(mp.data_dir), timeout=300)
        task_id = json.loads(out.stdout)["task_id"]
        status = wait_for(lambda: (lambda s: s if s["phase"] in ("split_posted", "final", "abandoned") else None)(
            mp.rpc("task_status", task_id=task_id)), 600, every=0.5)
        timings = status["timings"]
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
                  "vs_bare_msgpack_tcp": BARE_MS / med}
        if as_json:
            print(json.dumps(result, indent=2))
            return 0
        print(f"task {task_id}: {len(timings)} rounds, final accuracy {result['final_accuracy']}")
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
    finally:
        net.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    return run(args.rounds, args.json)


if __name__ == "__main__":
    sys.exit(main())
