"""Contribution measurement for rewards: per-round leave-one-out and Shapley values from stored round updates.

No retraining: the model of a sub-coalition S in round t is rebuilt from the round's stored
updates as ``w_t + FedAvg(u_S, n_S)``. Definitions (so a third party can recompute them after
the key reveal, from the per-round global models, updates and example counts, the test set
and the seed) are in docs/ml.md and in the docstrings below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dainode.errors import MLError
from dainode.ml.spec import ModelSpec, as_spec

EXACT_MAX_PROVIDERS = 8  # 2^8 = 256 coalitions per round: exact Shapley is cheaper than sampling


@dataclass
class RoundRecord:
    """What a round leaves behind for the reward computation."""

    global_params: np.ndarray  # w_t, the model the providers trained from
    updates: np.ndarray  # (k, d): the updates as aggregated (after clipping)
    weights: np.ndarray  # (k,): example counts n_i
    providers: list[int] = field(default_factory=list)  # provider index of each row (default 0..k-1)

    def provider_ids(self) -> list[int]:
        return self.providers or list(range(len(self.weights)))


def _coalition_params(rec: RoundRecord, masks: np.ndarray) -> np.ndarray:
    """w_t + example-weighted mean of the members' updates, one row per coalition mask; w_t for the empty one."""
    w = masks * np.asarray(rec.weights, np.float64)[None, :]
    tot = w.sum(axis=1, keepdims=True)
    coef = np.divide(w, tot, out=np.zeros_like(w), where=tot > 0)
    return (np.asarray(rec.global_params, np.float64)[None, :] + coef @ np.asarray(rec.updates, np.float64)).astype(np.float32)


def _shares(total: dict[int, float], n_providers: int) -> dict[int, float]:
    """Clip negatives to 0 and normalise to sum 1; equal shares when nothing is positive."""
    pos = {i: max(0.0, total.get(i, 0.0)) for i in range(n_providers)}
    s = sum(pos.values())
    if s <= 0:
        return {i: 1.0 / n_providers for i in range(n_providers)}
    return {i: v / s for i, v in pos.items()}


UTILITIES = ("loss", "accuracy")


class _Utility:
    """v_t(S) = minus the mean test cross-entropy ("loss") or the test accuracy of the coalition model."""

    def __init__(self, spec: ModelSpec, x, y, rec: RoundRecord, utility: str):
        if utility not in UTILITIES:
            raise MLError(f"utility {utility!r} is unknown; use one of {', '.join(UTILITIES)}")
        self.spec, self.x, self.y, self.rec, self.utility = spec, x, y, rec, utility
        self.k = len(rec.weights)
        self.cache: dict[int, float] = {}

    def many(self, bitsets: Sequence[int]) -> list[float]:
        todo = sorted({b for b in bitsets if b not in self.cache})
        if todo:
            # Imported here: evaluation needs JAX, and every daemon imports this module (via the audit service)
            # while most of them never evaluate a coalition.
            from dainode.ml.evaluate import evaluate_many

            masks = np.array([[(b >> i) & 1 for i in range(self.k)] for b in todo], np.float64)
            acc, loss = evaluate_many(self.spec, _coalition_params(self.rec, masks), self.x, self.y)
            self.cache.update(zip(todo, (acc if self.utility == "accuracy" else -loss).tolist()))
        return [self.cache[b] for b in bitsets]


def _round_shapley_exact(u: _Utility) -> np.ndarray:
    k = u.k
    full = (1 << k) - 1
    vals = dict(zip(range(full + 1), u.many(range(full + 1))))
    sv = np.zeros(k)
    for i in range(k):
        for b in range(full + 1):
            if b >> i & 1:
                continue
            s = bin(b).count("1")
            wgt = math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k)
            sv[i] += wgt * (vals[b | 1 << i] - vals[b])
    return sv


def _round_shapley_mc(u: _Utility, rng: np.random.Generator, permutations: int, tol: float) -> np.ndarray:
    """Truncated Monte-Carlo (GTG-Shapley's within-round truncation): walk seeded permutations,
    stop a walk once the prefix is within ``tol`` of v(N) (remaining marginals count as 0)."""
    k = u.k
    full = (1 << k) - 1
    v_full, = u.many([full])
    sv = np.zeros(k)
    for _ in range(permutations):
        perm = rng.permutation(k)
        prefix, prev = 0, u.many([0])[0]
        for i in perm:
            if abs(v_full - prev) < tol:
                break
            prefix |= 1 << int(i)
            cur, = u.many([prefix])
            sv[i] += cur - prev
            prev = cur
    return sv / permutations


def shapley(spec: ModelSpec | dict, rounds: Sequence[RoundRecord], x_test, y_test, n_providers: int, *,
            seed: int = 0, permutations: int = 64, tol: float = 1e-3, utility: str = "loss",
            exact_max: int = EXACT_MAX_PROVIDERS) -> dict:
    """Round-wise Shapley values summed over rounds, and reward shares.

    Utility v_t(S): ``"loss"`` (default) = minus the mean test cross-entropy of the coalition
    model w_t + FedAvg(u_S, n_S), v_t(empty) using w_t; ``"accuracy"`` = its test accuracy
    (coarser: one test row is 1/n, which makes shares of similar providers noisy).

    Per round t with participants N_t: exact Shapley over all 2^|N_t| coalitions when
    |N_t| <= exact_max (default EXACT_MAX_PROVIDERS), else truncated Monte-Carlo with ``permutations`` permutations
    drawn from numpy PCG64 seeded with [seed, t]; rounds with |v_t(N) - v_t(empty)| < tol are
    skipped (all 0) in that case. phi_i = sum_t SV_t,i. By efficiency, sum_i phi_i telescopes to
    v(final model) - v(initial model) for exact rounds. Shares: max(phi_i, 0) normalised to
    sum 1 (all equal if no phi_i is positive).
    """
    spec = as_spec(spec)
    x, y = np.asarray(x_test, np.float32), np.asarray(y_test, np.int32)
    total: dict[int, float] = {}
    per_round = []
    for t, rec in enumerate(rounds):
        u = _Utility(spec, x, y, rec, utility)
        if u.k == 0:
            per_round.append({})
            continue
        if u.k <= exact_max:
            sv = _round_shapley_exact(u)
        else:
            v0, vn = u.many([0, (1 << u.k) - 1])
            sv = np.zeros(u.k) if abs(vn - v0) < tol else \
                _round_shapley_mc(u, np.random.default_rng([seed, t]), permutations, tol)
        ids = rec.provider_ids()
        per_round.append({ids[j]: float(sv[j]) for j in range(u.k)})
        for j, i in enumerate(ids):
            total[i] = total.get(i, 0.0) + float(sv[j])
    _check_ids(total, n_providers)
    return {"method": "shapley-roundwise/1", "values": {i: total.get(i, 0.0) for i in range(n_providers)},
            "shares": _shares(total, n_providers), "per_round": per_round}


def leave_one_out(spec: ModelSpec | dict, rounds: Sequence[RoundRecord], x_test, y_test, n_providers: int, *,
                  utility: str = "loss") -> dict:
    """phi_i = sum_t [v_t(N_t) - v_t(N_t minus i)]; shares as for ``shapley``."""
    spec = as_spec(spec)
    x, y = np.asarray(x_test, np.float32), np.asarray(y_test, np.int32)
    total: dict[int, float] = {}
    for rec in rounds:
        u = _Utility(spec, x, y, rec, utility)
        full = (1 << u.k) - 1
        vals = u.many([full] + [full & ~(1 << j) for j in range(u.k)])
        for j, i in enumerate(rec.provider_ids()):
            total[i] = total.get(i, 0.0) + vals[0] - vals[1 + j]
    _check_ids(total, n_providers)
    return {"method": "loo-roundwise/1", "values": {i: total.get(i, 0.0) for i in range(n_providers)},
            "shares": _shares(total, n_providers)}


def _check_ids(total: dict[int, float], n: int) -> None:
    bad = [i for i in total if not 0 <= i < n]
    if bad:
        raise MLError(f"round records name provider(s) {bad} outside 0..{n - 1}")


__all__ = ["RoundRecord", "shapley", "leave_one_out", "EXACT_MAX_PROVIDERS"]
