"""Pure helpers of the benchmarks: per-round times, summaries, ratios and the Markdown of bench/RESULTS.md."""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable


def round_times_ms(marks: list[dict]) -> list[float]:
    """Wall time of each round from the ServerApp's marks (one per central evaluation, round 0 = before the first)."""
    marks = sorted(marks, key=lambda m: m["round"])
    return [(b["t"] - a["t"]) * 1000.0 for a, b in zip(marks, marks[1:]) if b["round"] == a["round"] + 1]


def median(xs: Iterable[float]) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else float("nan")


def summarize_flower(out: dict, wall_s: float) -> dict:
    """Figures of one Flower run from the ServerApp's JSON (marks, bytes) and the driver's submit-to-result time."""
    rounds = round_times_ms(out["marks"])
    last = max(out["marks"], key=lambda m: m["round"]) if out["marks"] else {}
    return {"rounds": len(rounds), "median_round_ms": median(rounds), "total_s": wall_s,
            "final_accuracy": last.get("accuracy"), "bytes": int(out.get("bytes_sent", 0)) + int(out.get("bytes_received", 0))}


def summarize_dainode(res: dict) -> dict:
    """Figures of one dainode run from bench/task.py's measure() result (or its {"error": ...})."""
    if "error" in res:
        return {"error": res["error"]}
    return {"rounds": res["rounds"], "median_round_ms": res["median_round_ms"], "total_s": res["submit_to_result_s"],
            "final_accuracy": res["final_accuracy"], "bytes": int(res.get("bitswap_bytes_sent", 0)),
            "parts_ms": res.get("median_parts_ms", {})}


def ratio(peer: float | None, ours: float | None) -> float:
    """peer / ours (how many times faster, or smaller, dainode is); nan when either is missing or ours is 0."""
    try:
        if peer is None or ours is None or ours == 0 or math.isnan(peer) or math.isnan(ours):
            return float("nan")
    except TypeError:
        return float("nan")
    return peer / ours


def largest_part(parts_ms: dict[str, float]) -> tuple[str, float] | None:
    """The part of the round breakdown that takes longest (the wait to attack first); `wall` is the whole round, not
    a part of it."""
    parts = {k: v for k, v in parts_ms.items() if k != "wall" and v is not None and not math.isnan(v)}
    if not parts:
        return None
    k = max(parts, key=parts.get)
    return k, parts[k]


def fmt(x: Any, digits: int = 1, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}f}{unit}"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    return f"{x}{unit}"


def fmt_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)) or (isinstance(n, float) and math.isnan(n)):
        return "–"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def comparison_rows(job: dict) -> list[list[str]]:
    """One row per system of one job: median round, total, accuracy, bytes, and the peer/dainode ratio of each."""
    ours = job.get("dainode", {})
    rows = []
    for name, label in (("dainode", "dainode (local testnet)"), ("flower_deployment", "Flower 1.42 deployment"),
                        ("flower_simulation", "Flower 1.42 simulation")):
        r = job.get(name)
        if r is None:
            continue
        if "error" in r:
            rows.append([label, f"not available: {r['error']}", "", "", "", ""])
            continue
        if name == "dainode" or "error" in ours:
            vs = "–"
        else:
            vs = (f"round {fmt(ratio(r['median_round_ms'], ours['median_round_ms']), 2)}x, "
                  f"total {fmt(ratio(r['total_s'], ours['total_s']), 2)}x, "
                  f"acc {fmt(ours['final_accuracy'] - r['final_accuracy'], 4) if None not in (ours['final_accuracy'], r['final_accuracy']) else '–'}")
        rows.append([label, fmt(r["median_round_ms"], 1, " ms"), fmt(r["total_s"], 1, " s"), fmt(r["final_accuracy"], 4),
                     fmt_bytes(r["bytes"]), vs])
    return rows


COMPARISON_HEADER = ["system", "median / round", "submit → result", "final accuracy", "bytes moved",
                     "peer ÷ dainode (time), dainode − peer (accuracy)"]


SCALE_HEADER = ["providers", "median / round", "peak RSS model provider", "peak RSS provider (median / max)",
                "peak RSS all nodes", "final accuracy", "load"]


def scale_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["providers"], f"failed: {r['error']}", "", "", "", "", r.get("load", "")])
            continue
        out.append([r["providers"], fmt(r["median_round_ms"], 1, " ms"), fmt(r["peak_rss_mp_mb"], 0, " MB"),
                    f"{fmt(r['peak_rss_provider_median_mb'], 0)} / {fmt(r['peak_rss_provider_max_mb'], 0)} MB",
                    fmt(r["peak_rss_all_mb"], 0, " MB"), fmt(r["final_accuracy"], 4), r.get("load", "")])
    return out


DAINODE_ROUND_TARGET_MS, ACCURACY_TOLERANCE = 100.0, 0.01
JOB_TITLES = {"iid": "digits MLP 64-128-10, IID shards", "label_skew": "digits MLP 64-128-10, label-skewed shards",
              "he": "breast_cancer logistic regression: dainode `he` vs Flower in the clear"}


def verdicts(job: dict) -> list[str]:
    """The issue's targets for one job, each with met / NOT met and the figures behind it."""
    ours = job.get("dainode") or {}
    if "error" in ours or not ours:
        return [f"dainode: not available ({ours.get('error', 'not run')})"]
    out = []
    med = ours["median_round_ms"]
    out.append(f"median round {fmt(med, 1)} ms vs target <= {DAINODE_ROUND_TARGET_MS:.0f} ms: "
               + ("met" if med <= DAINODE_ROUND_TARGET_MS else f"NOT met ({med / DAINODE_ROUND_TARGET_MS:.1f}x the target)"))
    peer = job.get("flower_deployment") or {}
    if peer and "error" not in peer and None not in (peer.get("final_accuracy"), ours.get("final_accuracy")):
        d = ours["final_accuracy"] - peer["final_accuracy"]
        out.append(f"accuracy {ours['final_accuracy']:.4f} vs Flower {peer['final_accuracy']:.4f} (diff {d:+.4f}, target "
                   f"within {ACCURACY_TOLERANCE}): " + ("met" if abs(d) <= ACCURACY_TOLERANCE else "NOT met"))
    top = largest_part(ours.get("parts_ms") or {})
    if top:
        out.append(f"largest part of the round: {top[0]} ({top[1]:.1f} ms median)")
    return out


def render_results(meta: dict, fl: dict | None, scale: dict | None, others: list[dict]) -> str:
    """bench/RESULTS.md from the figures gathered by bench/run_all.py (`make bench`)."""
    L = ["# dainode benchmarks (`make bench`)", "",
         f"Written by bench/run_all.py on {meta['date']} in {meta.get('wall_s', float('nan')):.0f} s. "
         "Benchmarks measure, they never assert; the 1-minute load average (`uptime`, 2 cores shared with other "
         "processes) is noted beside each figure.", "", "## Machine and versions", ""]
    L += [f"- {k}: {v}" for k, v in meta.get("machine", {}).items()]
    L += [f"- {k}: {v}" for k, v in meta.get("versions", {}).items()]
    L += ["", "## Federated learning: dainode vs Flower 1.42", ""]
    if not fl or "error" in fl:
        L += [f"not run: {(fl or {}).get('error', 'missing')}", ""]
    else:
        for job, res in fl.items():
            if not isinstance(res, dict) or "dainode" not in res:
                continue
            L += [f"### {JOB_TITLES.get(job, job)}", "",
                  f"load {res.get('load_before', '?')} → {res.get('load_after', '?')}; rounds: "
                  + ", ".join(f"{k} {res[k].get('rounds', '–')}" for k in ("dainode", "flower_deployment", "flower_simulation") if k in res), "",
                  table(COMPARISON_HEADER, comparison_rows(res)), ""]
            parts = (res.get("dainode") or {}).get("parts_ms")
            if parts:
                L += ["dainode per-round breakdown (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()), ""]
            L += [f"- {v}" for v in verdicts(res)]
            failed = (res.get("dainode") or {}).get("failed_attempts") or []
            retried = [x for x in failed if not x.startswith("(kept)")]
            if retried:
                L += [f"- dainode needed {len(retried) + 1} attempts (the failed ones: " + "; ".join(retried) + ")"]
            L += [f"- dainode: {x[len('(kept) '):]}" for x in failed if x.startswith("(kept)")]
            L += [""]
        L += ["Peers measured earlier on this machine (issue 17): Flower deployment ~9.5 s/round with every stock setting "
              "tuned (hard-coded 3 s polls), its simulation ~0.21 s/round, a bare 5-process msgpack-over-TCP FedAvg "
              "~4 ms/round (the floor).", ""]
    L += ["## Scale: 1 model provider + N data+compute daemons", ""]
    if not scale or "error" in scale:
        L += [f"not run: {(scale or {}).get('error', 'missing')}", ""]
    else:
        L += [table(SCALE_HEADER, scale_rows(scale["sizes"])), ""]
        L += [f"- {r['providers']} providers: {len(r['failed_attempts'])} failed attempt(s) before: " + "; ".join(r["failed_attempts"])
              for r in scale["sizes"] if r.get("failed_attempts")]
        L += ["", "![scale](scale.png)", ""]
        f = scale["footprint"]
        L += ["## Node footprint", "",
              table(["figure", "median", "max", "target", "verdict"], [
                  ["start-to-ready (`dainode start` → admin RPC answers)", fmt(f["start_to_ready_median_s"], 2, " s"),
                   fmt(f["start_to_ready_max_s"], 2, " s"), f"<= {f['ready_target_s']} s",
                   "met" if f["start_to_ready_median_s"] <= f["ready_target_s"] else "NOT met"],
                  ["idle RSS per node (offers indexed, before the task)", fmt(f["idle_rss_median_mb"], 0, " MB"),
                   fmt(f["idle_rss_max_mb"], 0, " MB"), f"<= {f['idle_rss_target_mb']:.0f} MB",
                   "met" if f["idle_rss_median_mb"] <= f["idle_rss_target_mb"] else "NOT met"]]),
              "", f"over {f['daemons']} daemons of the scale runs (model providers and providers; the relay, whose start "
              "includes anvil and the contracts' deployment, is left out).", ""]
    if meta.get("reused"):
        L += ["Figures reused from an earlier `make bench` run (bench/results/): " + ", ".join(meta["reused"]), ""]
    L += ["## Other layers (each script's own output, with its peer and ratio)", ""]
    for o in others:
        L += [f"### `{o['cmd']}`", "", f"{o['status']} in {o['wall_s']:.0f} s, load {o['load_before']} → {o['load_after']}", "",
              "```", o["output"].rstrip(), "```", ""]
    return "\n".join(L) + "\n"
