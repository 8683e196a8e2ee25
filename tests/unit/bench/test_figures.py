"""bench/figures.py, bench/scale.py's summaries and bench/fl_vs_flower.py's manifests: the parts of `make bench` that
parse and aggregate results (the benchmarks themselves are not tests)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))

import figures  # noqa: E402


def marks(times, accs=None):
    return [{"round": i, "t": t, "accuracy": (accs or [0.1 * i] * len(times))[i], "loss": 1.0} for i, t in enumerate(times)]


def test_round_times_are_the_gaps_between_consecutive_evaluations():
    got = figures.round_times_ms(list(reversed(marks([0.0, 9.5, 19.5, 28.0]))))
    assert got == pytest.approx([9500.0, 10000.0, 8500.0])


def test_round_times_skip_a_missing_round():
    m = [{"round": 0, "t": 0.0}, {"round": 1, "t": 1.0}, {"round": 3, "t": 5.0}]
    assert figures.round_times_ms(m) == pytest.approx([1000.0])


def test_summarize_flower_takes_the_last_round_accuracy_and_adds_both_directions():
    out = {"marks": marks([0.0, 1.0, 3.0], [0.1, 0.5, 0.9]), "bytes_sent": 1000, "bytes_received": 24}
    s = figures.summarize_flower(out, wall_s=4.5)
    assert s == {"rounds": 2, "median_round_ms": pytest.approx(1500.0), "total_s": 4.5, "final_accuracy": 0.9, "bytes": 1024}


def test_summarize_dainode_passes_an_error_through():
    assert figures.summarize_dainode({"error": "privacy 'he' refused"}) == {"error": "privacy 'he' refused"}
    s = figures.summarize_dainode({"rounds": 3, "median_round_ms": 80.0, "submit_to_result_s": 7.0, "final_accuracy": 0.95,
                                   "bitswap_bytes_sent": 5, "median_parts_ms": {"a": 1.0}})
    assert s["total_s"] == 7.0 and s["bytes"] == 5 and s["parts_ms"] == {"a": 1.0}


@pytest.mark.parametrize("peer,ours,want", [(9500.0, 95.0, 100.0), (None, 1.0, math.nan), (1.0, 0, math.nan),
                                            (math.nan, 1.0, math.nan), ("x", 1.0, math.nan)])
def test_ratio(peer, ours, want):
    got = figures.ratio(peer, ours)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def test_median_ignores_missing_values():
    assert figures.median([3.0, None, float("nan"), 1.0, 2.0]) == 2.0
    assert math.isnan(figures.median([]))


def test_largest_part_names_the_longest_wait():
    assert figures.largest_part({"publish_ms": 30.0, "wait_updates_ms": 70.0, "x": float("nan")}) == ("wait_updates_ms", 70.0)
    assert figures.largest_part({}) is None
    # bench/task.py's breakdown starts with the whole round: RESULTS.md named "wall" as the largest part
    assert figures.largest_part({"wall": 170.5, "cp_tx": 30.7, "mp_event": 23.9}) == ("cp_tx", 30.7)


def test_fmt_bytes():
    assert figures.fmt_bytes(512) == "512 B"
    assert figures.fmt_bytes(3 * 2**20) == "3.00 MiB"
    assert figures.fmt_bytes(None) == "–"


def job():
    dn = {"rounds": 20, "median_round_ms": 200.0, "total_s": 10.0, "final_accuracy": 0.95, "bytes": 2**20,
          "parts_ms": {"wait_updates_ms": 150.0, "publish_ms": 40.0}}
    fd = {"rounds": 20, "median_round_ms": 9500.0, "total_s": 200.0, "final_accuracy": 0.955, "bytes": 2**21}
    return {"dainode": dn, "flower_deployment": fd, "flower_simulation": {"error": "ray did not start"},
            "load_before": "1.5", "load_after": "2.0"}


def test_comparison_rows_give_peer_over_dainode_and_name_a_failed_system():
    rows = figures.comparison_rows(job())
    assert rows[0][0].startswith("dainode") and rows[0][-1] == "–"
    assert "round 47.50x" in rows[1][-1] and "total 20.00x" in rows[1][-1] and "acc -0.0050" in rows[1][-1]
    assert rows[2][1] == "not available: ray did not start"


def test_verdicts_say_met_or_not_and_the_largest_part():
    v = figures.verdicts(job())
    assert "NOT met (2.0x the target)" in v[0]
    assert "diff -0.0050" in v[1] and v[1].endswith("met") and "NOT" not in v[1]
    assert "wait_updates_ms (150.0 ms median)" in v[2]
    assert figures.verdicts({"dainode": {"error": "refused"}}) == ["dainode: not available (refused)"]


def test_render_results_has_every_section_and_the_figures():
    meta = {"date": "2026-12-01 20:00 UTC", "wall_s": 1500.0, "machine": {"CPU": "x"}, "versions": {"flwr": "1.42.0"}}
    scale = {"sizes": [{"providers": 4, "median_round_ms": 210.0, "peak_rss_mp_mb": 400.0, "peak_rss_provider_median_mb": 300.0,
                        "peak_rss_provider_max_mb": 320.0, "peak_rss_all_mb": 1900.0, "final_accuracy": 0.9, "load": "2.0"},
                       {"providers": 8, "error": "TimeoutError: slow", "load": "3.0"}],
             "footprint": {"daemons": 6, "start_to_ready_median_s": 1.5, "start_to_ready_max_s": 2.5, "idle_rss_median_mb": 160.0,
                           "idle_rss_max_mb": 170.0, "ready_target_s": 2.0, "idle_rss_target_mb": 150.0}}
    others = [{"cmd": "bench/gas.py", "status": "ok", "wall_s": 30.0, "load_before": "1", "load_after": "2", "output": "gas table"}]
    md = figures.render_results(meta, {"iid": job()}, scale, others)
    for needle in ("## Machine and versions", "flwr: 1.42.0", "digits MLP 64-128-10, IID shards", "9,500.0 ms", "47.50x",
                   "| 4 | 210.0 ms | 400 MB | 300 / 320 MB |", "failed: TimeoutError: slow", "![scale](scale.png)",
                   "| 1.50 s | 2.50 s | <= 2.0 s | met |", "| 160 MB | 170 MB | <= 150 MB | NOT met |",
                   "### `bench/gas.py`", "gas table"):
        assert needle in md, needle


def test_render_results_without_fl_or_scale_says_why():
    md = figures.render_results({"date": "d"}, {"error": "exit 2"}, None, [])
    assert "not run: exit 2" in md and "not run: missing" in md


def test_scale_summary_and_footprint():
    import scale

    res = {"rounds": 5, "median_round_ms": 300.0, "final_accuracy": 0.9, "bitswap_bytes_sent": 10,
           "peak_rss_mb": {"relay": 200.0, "mp": 500.0, "p0": 300.0, "p1": 320.0, "p2": 310.0},
           "start_to_ready_s": {"relay": 9.0, "mp": 1.0, "p0": 1.2, "p1": 3.0},
           "idle_rss_mb": {"relay": 900.0, "mp": 140.0, "p0": 150.0, "p1": 130.0}}
    row = scale.summarize_size(3, res)
    assert row["peak_rss_mp_mb"] == 500.0 and row["peak_rss_provider_median_mb"] == 310.0
    assert row["peak_rss_provider_max_mb"] == 320.0 and row["peak_rss_all_mb"] == 1630.0
    f = scale.footprint([row, scale.summarize_size(8, {"error": "x"})])
    # the relay (anvil + deployment in its start) is not a node's footprint
    assert f["daemons"] == 3 and f["start_to_ready_median_s"] == 1.2 and f["start_to_ready_max_s"] == 3.0
    assert f["idle_rss_median_mb"] == 140.0 and f["idle_rss_max_mb"] == 150.0


@pytest.mark.parametrize("job,providers", [("iid", 4), ("label_skew", 16), ("he", 4)])
def test_the_benchmark_manifests_are_valid_tasks(job, providers, tmp_path):
    import tomllib

    import fl_vs_flower
    from dainode.tasks.manifest import parse_manifest

    text = fl_vs_flower.dainode_manifest(job, 20, providers, tmp_path / "test.npz")
    m = parse_manifest(tomllib.loads(text))
    assert m.task.providers == providers and m.task.quorum == providers and m.task.rounds == 20
    assert m.model.optimizer == "sgd" and m.model.batch == 32
    assert m.task.privacy == ("he" if job == "he" else "fl")
    # he: the cubic sigmoid diverges at lr 0.1 or from a random start (the he job trained nothing before)
    assert (m.model.lr, m.model.init) == ((fl_vs_flower.HE_LR, "zeros") if job == "he" else (0.1, None))
    reserved = providers * (m.task.max_data_price_wei + m.task.max_compute_price_wei)
    assert reserved <= m.task.reward_pool_wei


def test_render_results_names_failed_attempts_and_reused_steps():
    j = job()
    j["dainode"]["failed_attempts"] = ["RpcError: BlockOutOfRangeError"]
    md = figures.render_results({"date": "d", "reused": ["scale (2026-12-01 19:40)"]}, {"iid": j}, None, [])
    assert "dainode needed 2 attempts (the failed ones: RpcError: BlockOutOfRangeError)" in md
    assert "reused from an earlier `make bench` run (bench/results/): scale (2026-12-01 19:40)" in md


def test_measure_dainode_retries_a_failed_run_but_not_a_refusal(monkeypatch):
    import fl_vs_flower

    calls = []

    def fake(rounds, **kw):
        calls.append(rounds)
        if len(calls) == 1:
            raise RuntimeError("node p2 crashed")
        if len(calls) == 2:
            return {"phase": "abandoned"}
        return {"phase": "split_posted", "rounds": rounds}

    monkeypatch.setattr(fl_vs_flower.dainode_task, "measure", fake)
    res = fl_vs_flower.measure_dainode(3, "manifest", [Path("a")])
    assert res["rounds"] == 3 and res["failed_attempts"] == ["RuntimeError: node p2 crashed", "task ended in phase abandoned"]
    calls.clear()
    monkeypatch.setattr(fl_vs_flower.dainode_task, "measure", lambda r, **kw: calls.append(r) or {"error": "invalid value 'he' for task.privacy"})
    res = fl_vs_flower.measure_dainode(3, "manifest", [Path("a")])
    assert len(calls) == 1 and res["error"].startswith("invalid value") and res["failed_attempts"] == []
