"""The acceptance task on a local network: median wall time per round and a per-round breakdown.

usage: .venv/bin/python bench/task.py [--rounds N] [--json] [--no-push] [--profile NODE] [--http-listen none|127.0.0.1:0]

Starts the default local testnet (dainode.localnet: anvil, a relay with no roles, a model provider and 4
`--roles data,compute` daemons, each offering a quarter of digits), runs the 4-provider MLP task of tests/integration/test_task_e2e.py and
prints the median wall time per round (publishGlobalModel receipt to the next one, at the model provider)
and the round's critical path split into the parts of COLS below: the model provider's timings (task_status)
and each compute provider's (its State, read-only), joined by match id; cross-node latencies (chain event
delivery) are differences of wall-clock stamps, all taken on this one machine. Then times `dainode task verify`
on the relay. Target (issue 13): median <= 100 ms per round;
peers: Flower 1.42 deployment mode ~9.5 s/round, in-process simulation ~0.21 s, bare msgpack/TCP ~4 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dainode.localnet import DaemonProcess, run_cli  # noqa: E402
from dainode.localnet.network import Testnet, layout  # noqa: E402
from dainode.localnet.workload import COMPUTE_PRICE_WEI, DATA_PRICE_WEI, shard_files, task_manifest  # noqa: E402

FLOWER_DEPLOYMENT_S, FLOWER_SIM_S, BARE_MS = 9.5, 0.21, 4.0
#: the breakdown's columns: the round's critical path (the compute provider whose update the MP opened last), in order
COLS = (
    ("wall", "publish receipt of round t-1 -> of round t, at the MP (round 0: training start -> publish)"),
    ("cp_event", "t-1's publish tx mined (receipt seen by the MP) -> GlobalModelPublished at the CP"),
    ("cp_fetch", "CP: round result + global model by CID (pushed copy or bitswap)"),
    ("cp_open", "CP: envelope crypto, open the sealed global model"),
    ("cp_train", "CP: local training (JAX)"),
    ("cp_seal", "CP: envelope crypto, seal the update"),
    ("cp_put", "CP: hash + store (pin) the sealed update"),
    ("cp_wait", "CP: event -> the work started on the pushed model is ready (rounds worked ahead; then the five CP parts above ran before the event and are not summed)"),
    ("cp_tx", "CP: submitUpdate: gas estimate + fees, sign + journal + send, receipt"),
    ("mp_event", "CP's submitUpdate mined (receipt seen by the CP) -> UpdateSubmitted at the MP"),
    ("mp_fetch", "MP: the update by CID (pushed copy or bitswap)"),
    ("mp_open", "MP: envelope crypto + checks, open the update"),
    ("aggregate", "MP: aggregation"),
    ("evaluate", "MP: evaluation on the test set"),
    ("mp_seal", "MP: envelope crypto, seal the global model for every CP"),
    ("mp_put", "MP: hash + store (pin) global model and round result"),
    ("pub_tx", "MP: publishGlobalModel: estimate + fees, sign + journal + send, receipt"),
    ("other", "the rest: scheduling, thread hops, State writes, waiting (wall minus the parts above)"),
)
TX_PARTS = ("estimate_ms", "submit_ms", "receipt_ms")


def cpu_s(node: DaemonProcess) -> float:
    """User + system CPU seconds the node's process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):
        return float("nan")


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


def breakdown(timings: list[dict], cp: list[dict]) -> list[dict]:
    """Per round, the critical path split into COLS (ms), from the MP's and the CPs' recorded timings (wall clocks
    of one machine: cross-node latencies are differences of time.time() stamps)."""
    out, prev = [], None
    for t in timings:
        row = {"round": t["round"]}
        mined = (prev or {}).get("tx", {}).get("mined_seen_at")
        row["wall"] = (t["tx"]["mined_seen_at"] - mined) * 1000 if mined and t.get("tx") else t["total_ms"]
        ups = {int(k): u for k, u in (t.get("updates") or {}).items() if u.get("event_at")}
        mine = {c["match_id"]: c for c in cp if c["round"] == t["round"] and "match_id" in c}
        if ups:  # the update the MP had last is the one the round waited for
            mid = max(ups, key=lambda k: ups[k]["event_at"] + ((ups[k].get("fetch_ms") or 0) + (ups[k].get("open_ms") or 0)) / 1000)
            u, c = ups[mid], mine.get(mid, {})
            ctx = c.get("tx") or {}
            row["cp_event"] = (c["event_at"] - mined) * 1000 if c.get("event_at") and mined else 0.0
            row["cp_fetch"] = (c.get("fetch_result_ms") or 0) + (c.get("fetch_blob_ms") or 0)
            row["cp_open"] = c.get("open_ms", 0.0)
            row["cp_train"] = c.get("train_ms", 0.0)
            row["cp_seal"] = c.get("seal_ms", 0.0)
            row["cp_put"] = c.get("put_ms", 0.0)
            row["cp_tx"] = sum(ctx.get(k, 0) for k in TX_PARTS)
            row["mp_event"] = (u["event_at"] - ctx["mined_seen_at"]) * 1000 if ctx.get("mined_seen_at") else 0.0
            row["mp_fetch"], row["mp_open"] = u.get("fetch_ms") or 0.0, u.get("open_ms") or 0.0
            row["cp_tx_parts"] = {k: ctx.get(k) for k in TX_PARTS}
            pushed, started = c.get("push_at"), (prev or {}).get("push_start_at")
            row["push_lead_ms"] = (c["event_at"] - pushed) * 1000 if pushed and c.get("event_at") else None  # > 0: push first
            row["push_ms"] = (pushed - started) * 1000 if pushed and started else None  # MP starts the push -> CP has it
        for k in ("aggregate", "evaluate", "mp_seal", "mp_put"):
            row[k] = t.get({"mp_seal": "seal_ms", "mp_put": "put_ms"}.get(k, f"{k}_ms"), 0.0)
        row["pub_tx"] = sum((t.get("tx") or {}).get(k, 0) for k in TX_PARTS)
        row["pub_tx_parts"] = {k: (t.get("tx") or {}).get(k) for k in TX_PARTS}
        ahead = bool(ups) and bool(mine.get(mid, {}).get("ahead"))
        row["ahead"] = ahead
        row["cp_wait"] = mine.get(mid, {}).get("wait_ms", 0.0) if ahead else 0.0
        skip = {"cp_fetch", "cp_open", "cp_train", "cp_seal", "cp_put"} if ahead else {"cp_wait"}
        row["other"] = row["wall"] - sum(row.get(k, 0.0) for k, _ in COLS[1:-1] if k not in skip)
        out.append(row)
        prev = t
    return out


ENDED = ("split_posted", "final", "abandoned")  # the model provider's phases once the rounds and the split are done


def wait_phase(mp, task_id: int, phases: tuple[str, ...], every: float = 0.5) -> dict:
    """The model provider's task_status once its phase is one of `phases`, or once its run of the task stopped on an
    error (`stopped`): a driver has nothing left to wait for then."""
    return wait_for(lambda: (lambda s: s if s["phase"] in phases or s.get("stopped") else None)(
        mp.rpc("task_status", task_id=task_id)), 600, every=every)


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
        for n, f in zip(providers, files or shard_files(base, n_providers)):
            run_cli("offer", "data", "--dataset", str(f), "--price", str(DATA_PRICE_WEI), "--data-dir", str(n.data_dir), timeout=300)
            run_cli("offer", "compute", "--price", str(COMPUTE_PRICE_WEI), "--data-dir", str(n.data_dir), timeout=300)
        wait_for(lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= n_providers, 120)
        idle_rss = {n.name: psutil.Process(n.pid).memory_info().rss / 2**20 for n in nodes}
        manifest = base / "task.toml"
        manifest.write_text(manifest_text or task_manifest(providers=n_providers, rounds=rounds, name="digits-mlp-e2e",
                                                          pool_wei=n_providers * 10**18))
        t_submit = time.monotonic()
        out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(mp.data_dir), timeout=300)
        if out.returncode != 0:
            return {"error": (out.stderr.strip() or out.stdout.strip()).splitlines()[-1]}
        task_id = json.loads(out.stdout)["task_id"]
        status = wait_phase(mp, task_id, ENDED)
        submit_to_result_s = time.monotonic() - t_submit
        if status.get("stopped"):  # the model provider's run ended on an error: no need to wait out the timeout
            return {"error": f"the model provider stopped the task in round {status['round']}: {status['stopped']}",
                    "phase": status["phase"]}
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
        rows = breakdown(timings, cp)
        walls = [r["wall"] for r in rows]
        med = statistics.median(walls) if walls else float("nan")
        steady = rows[1:] or rows
        result = {"rounds": len(timings), "median_round_ms": med,
                  "median_parts_ms": {k: round(statistics.median([r.get(k, 0.0) for r in steady]), 1) for k, _ in COLS} if rows else {},
                  "per_round": timings, "final_accuracy": status["history"][-1]["accuracy"] if status["history"] else None,
                  "verify_s": round(verify_s, 2), "verify": verdict,
                  "vs_flower_deployment": FLOWER_DEPLOYMENT_S * 1000 / med, "vs_flower_simulation": FLOWER_SIM_S * 1000 / med,
                  "vs_bare_msgpack_tcp": BARE_MS / med, "phase": status["phase"],
                  "submit_to_result_s": submit_to_result_s, **footprint}
        return result
    finally:
        for n in nodes:
            n.stop()


def run(rounds: int, as_json: bool, no_push: bool = False, profile: str | None = None, http_listen: str = "127.0.0.1:0") -> int:
    net = Testnet(Path(tempfile.mkdtemp(prefix="dainode-bench-task-")), fund_wei=10 * 10**18)
    os.environ["DAINODE_HTTP_LISTEN"] = http_listen  # the daemons inherit it: "none" measures a round without the dashboard
    if no_push:
        os.environ["DAINODE_TASK_PUSH"] = "0"  # the daemons inherit it
    specs = layout("default", 5)
    if profile:  # that node runs under cProfile (stats written when it exits on SIGTERM)
        prof = str(net.root / f"{profile}.prof")
        specs = [replace(s, argv0=(sys.executable, "-m", "cProfile", "-o", prof, "-m", "dainode")) if s.name == profile else s
                 for s in specs]
    try:
        net.up(specs)
        net.offer_all()
        relay, mp, providers = net.relay, net.model, net.by_role("data")
        nodes = list(net.nodes.values())
        manifest = net.root / "task.toml"
        manifest.write_text(task_manifest(providers=4, rounds=rounds, name="digits-mlp-e2e", pool_wei=4 * 10**18))
        out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(mp.data_dir), timeout=300)
        task_id = json.loads(out.stdout)["task_id"]
        wait_for(lambda: mp.rpc("task_status", task_id=task_id)["phase"] != "matching", 300, every=0.05)
        cpu0, t_cpu0 = {n.name: cpu_s(n) for n in nodes}, time.monotonic()
        status = wait_phase(mp, task_id, ("split", *ENDED), every=0.05)
        cpu = {n.name: round((cpu_s(n) - cpu0[n.name]) * 1000) for n in nodes}  # CPU ms each node used in the rounds
        rounds_wall_ms = (time.monotonic() - t_cpu0) * 1000
        status = wait_phase(mp, task_id, ENDED)
        if status.get("stopped"):
            raise RuntimeError(f"the model provider stopped the task in round {status['round']}: {status['stopped']}")
        timings = status["timings"]
        wait_for(lambda: relay.rpc("task_watch", task_id=task_id, wait_s=0)["revealed"], 120)
        t0 = time.monotonic()
        verify = run_cli("task", "verify", str(task_id), "--json", "--data-dir", str(relay.data_dir), timeout=900)
        verify_s = time.monotonic() - t0
        verdict = json.loads(verify.stdout)["verdict"] if verify.stdout.strip() else f"error: {verify.stderr.strip()}"
        cp = [t for n in providers for t in compute_timings(n, task_id)]
        rows = breakdown(timings, cp)
        walls = [r["wall"] for r in rows]
        med = statistics.median(walls) if walls else float("nan")
        steady = rows[1:] or rows  # round 0 starts from the initial model: no fetch, a cold start
        parts = {k: round(statistics.median([r.get(k, 0.0) for r in steady]), 1) for k, _ in COLS}
        result = {"rounds": len(timings), "median_round_ms": med, "median_mp_total_ms": statistics.median([t["total_ms"] for t in timings]),
                  "median_parts_ms_rounds_1_on": parts, "columns": dict(COLS), "per_round": rows, "mp_timings": timings, "cp_timings": cp,
                  "final_accuracy": status["history"][-1]["accuracy"] if status["history"] else None,
                  "verify_s": round(verify_s, 2), "verify": verdict,
                  "vs_flower_deployment": FLOWER_DEPLOYMENT_S * 1000 / med, "vs_flower_simulation": FLOWER_SIM_S * 1000 / med,
                  "vs_bare_msgpack_tcp": BARE_MS / med, "load_average": os.getloadavg(),
                  "rounds_wall_ms": round(rounds_wall_ms), "rounds_cpu_ms_by_node": cpu}
        if as_json:
            print(json.dumps(result, indent=2))
            return 0
        print(f"task {task_id}: {len(timings)} rounds, final accuracy {result['final_accuracy']}, load average {os.getloadavg()}")
        names = [k for k, _ in COLS]
        print("round " + " ".join(f"{k:>9}" for k in names))
        for r in rows:
            print(f"{r['round']:>5} " + " ".join(f"{r.get(k, 0.0):>9.1f}" for k in names) + ("  ahead" if r.get("ahead") else ""))
        print("  med " + " ".join(f"{parts[k]:>9.1f}" for k in names) + "   (median of rounds 1.., ms)")
        pm = [r["push_ms"] for r in steady if r.get("push_ms") is not None]
        lead = [r["push_lead_ms"] for r in steady if r.get("push_lead_ms") is not None]
        if pm:
            print(f"  pushes: MP starts the round_model push -> the CP holds it: median {statistics.median(pm):.1f} ms; "
                  f"push ahead of the chain event by a median {statistics.median(lead):.1f} ms (negative: the event came first); "
                  f"{sum(1 for r in steady if r.get('ahead'))} of {len(steady)} rounds worked ahead")
        else:
            print("  pushes: none reached the critical compute provider")
        for k, what in COLS:
            print(f"  {k:>9}: {what}")
        total_cpu = sum(v for v in cpu.values() if v == v)
        print(f"CPU used by the nodes during the rounds ({rounds_wall_ms:.0f} ms wall): "
              + ", ".join(f"{k} {v} ms" for k, v in cpu.items())
              + f"; {total_cpu / max(len(timings), 1):.0f} ms of CPU per round over {os.cpu_count()} cores")
        if profile:
            prof_node = next(n for n in nodes if n.name == profile)
            prof_node.stop()
            print(f"profile of {profile} (whole run), top 30 by own time:")
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        print(f"median wall per round: {med:.1f} ms (target <= 100 ms); the MP's own round timer: "
              f"{result['median_mp_total_ms']:.1f} ms")
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
    ap.add_argument("--no-push", action="store_true", help="the nodes fetch every document by CID (DAINODE_TASK_PUSH=0)")
    ap.add_argument("--profile", metavar="NODE", help="run NODE (model, node1..node4) under cProfile and print its top functions")
    ap.add_argument("--http-listen", default="127.0.0.1:0", help="each node's dashboard address (none: off)")
    args = ap.parse_args()
    return run(args.rounds, args.json, args.no_push, args.profile, args.http_listen)


if __name__ == "__main__":
    sys.exit(main())
