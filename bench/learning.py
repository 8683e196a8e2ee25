#!/usr/bin/env python3
"""Learning benchmark: the reference digits job (4 providers, 20 rounds) in plain, CKKS-aggregated and label-skewed form.

    .venv/bin/python bench/learning.py            # table
    .venv/bin/python bench/learning.py --json     # {"plain": {...}, "ckks": {...}, "noniid": {...}}

Reference job (dainode/ml/reference.py, the one benchmarked against Flower): scikit-learn
digits / 16, stratified 80/20 split (seed 0), MLP 64-128-10 ReLU, SGD batch 32, lr 0.1,
1 local epoch per round, example-weighted FedAvg, 4 providers in one process.

round_ms is the median wall time of one round (4 local trainings + clipping/encryption +
aggregation + decryption), i.e. without evaluation, best of --repeat runs; first_round_ms is
the slowest first round over the runs (it includes JIT compilation when the process had not
compiled that shape yet). Goals (issue 6): IID accuracy >= 0.92, label-skewed
>= 0.85, CKKS within 0.005 of plain; numpy-level speed (~3 ms/round measured for plain).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dainode.ml.reference import reference_data, reference_job  # noqa: E402
from dainode.ml.simulate import run_federated  # noqa: E402


def measure(split: str, data, repeat: int, **overrides) -> dict:
    best, cold = None, 0.0
    for _ in range(repeat):
        res = run_federated(reference_job(split, data=data, eval_every=0, **overrides))
        steady = res.round_ms[1:] or res.round_ms
        row = {"accuracy": round(res.accuracy, 4), "round_ms": round(statistics.median(steady), 3),
               "loss": round(res.final["loss"], 4),
               "rounds": len(res.round_ms)}
        cold = max(cold, res.round_ms[0])
        if best is None or row["round_ms"] < best["round_ms"]:
            best = row
    return {**best, "first_round_ms": round(cold, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print exactly one JSON object")
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant; the fastest is reported (default 3)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = reference_data()
    result = {
        "plain": measure("iid", data, args.repeat),
        "ckks": measure("iid", data, args.repeat, ckks=True),
        "noniid": measure("label_skew", data, args.repeat),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"reference digits job, 4 providers, 20 rounds (best of {args.repeat}; total {time.perf_counter() - t0:.1f} s)")
    print(f"{'variant':<8} {'accuracy':>9} {'loss':>7} {'round ms':>9} {'1st round ms':>13}")
    for name, r in result.items():
        print(f"{name:<8} {r['accuracy']:>9.4f} {r['loss']:>7.4f} {r['round_ms']:>9.2f} {r['first_round_ms']:>13.1f}")
    print(f"ckks - plain accuracy: {result['ckks']['accuracy'] - result['plain']['accuracy']:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
