"""The reward split: contribution shares from the recorded rounds, and integer wei bonuses that sum exactly to the bonus.

Integer split (deterministic, exact): each share is quantised to an integer weight
``round(share * SHARE_SCALE)``; with W = sum of weights (all weights 1 if W = 0), match i gets
``floor(bonus * w_i / W)`` and the wei left over go one each to the largest remainders
``bonus * w_i mod W``, ties to the lower match id. The report carries the weights, so anyone
can redo the integer step exactly from the posted report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dainode.errors import TaskError
from dainode.ml.contribution import EXACT_MAX_PROVIDERS, leave_one_out, shapley
from dainode.ml.preprocess import canonical_json
from dainode.tasks.manifest import Manifest
from dainode.tasks.rounds import RoundOutcome
from dainode.tasks.sealed import TaskRef

SCHEMA = "dainode.split-report/1"
SHARE_SCALE = 10**9
SHAPLEY_PERMUTATIONS = 64
SHAPLEY_TOL = 1e-3


def contributions(manifest: Manifest, rounds: Sequence[RoundOutcome], match_ids: Sequence[int],
                  test: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """``{"method", "params", "values": {match_id: phi}, "shares": {match_id: share}}`` over every matched data provider."""
    ids = sorted(int(m) for m in match_ids)
    if len(set(ids)) != len(ids) or not ids:
        raise TaskError(f"contribution needs distinct match ids, got {list(match_ids)}")
    index = {m: i for i, m in enumerate(ids)}
    unknown = sorted({m for r in rounds for m in r.match_ids if m not in index})
    if unknown:
        raise TaskError(f"round records name match id(s) {unknown} that are not among the task's matches {ids}")
    records = [r.record(index) for r in rounds]
    utility = manifest.task.contribution_utility
    if manifest.task.contribution == "shapley":
        params = {"utility": utility, "seed": manifest.task.seed, "permutations": SHAPLEY_PERMUTATIONS,
                  "tol": SHAPLEY_TOL, "exact_max": EXACT_MAX_PROVIDERS}
        res = shapley(manifest.model_spec, records, test[0], test[1], len(ids), **params)
    else:
        params = {"utility": utility}
        res = leave_one_out(manifest.model_spec, records, test[0], test[1], len(ids), **params)
    return {"method": res["method"], "params": params,
            "values": {m: float(res["values"][index[m]]) for m in ids},
            "shares": {m: float(res["shares"][index[m]]) for m in ids}}


def share_weights(shares: dict[int, float]) -> dict[int, int]:
    return {int(m): int(round(float(s) * SHARE_SCALE)) for m, s in shares.items()}


def integer_split(bonus_wei: int, weights: dict[int, int]) -> dict[int, int]:
    """Largest-remainder split of ``bonus_wei`` by integer ``weights``; the result sums exactly to ``bonus_wei``."""
    if isinstance(bonus_wei, bool) or not isinstance(bonus_wei, int) or bonus_wei < 0:
        raise TaskError(f"bonus must be a non-negative integer amount of wei, got {bonus_wei!r}")
    if not weights or any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights.values()):
        raise TaskError(f"split weights must be non-negative integers, one per match, got {weights!r}")
    ids = sorted(weights)
    w = {m: weights[m] for m in ids} if sum(weights.values()) > 0 else {m: 1 for m in ids}
    total = sum(w.values())
    out = {m: bonus_wei * w[m] // total for m in ids}
    left = bonus_wei - sum(out.values())
    by_remainder = sorted(ids, key=lambda m: (-(bonus_wei * w[m] % total), m))
    for m in by_remainder[:left]:
        out[m] += 1
    return out


@dataclass(frozen=True)
class SplitReport:
    """The report behind ``postSplit(taskId, bonuses[], reportCid)``: per match value, share, weight, bonus."""

    task: TaskRef
    bonus_wei: int
    method: str
    params: dict
    rounds: int
    matches: tuple[dict, ...]  # {"match_id", "value", "share", "weight", "bonus_wei" (int)}, by match id

    @property
    def bonuses(self) -> dict[int, int]:
        return {int(d["match_id"]): int(d["bonus_wei"]) for d in self.matches}

    def bonuses_list(self) -> list[int]:
        """The ``bonuses[]`` argument of postSplit, in ascending match-id order."""
        return [int(d["bonus_wei"]) for d in sorted(self.matches, key=lambda d: d["match_id"])]

    def to_document(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "task": self.task.fields(), "bonus_wei": str(self.bonus_wei), "method": self.method,
                "params": dict(self.params), "rounds": self.rounds, "share_scale": SHARE_SCALE,
                "matches": [{**d, "bonus_wei": str(d["bonus_wei"])} for d in self.matches]}

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_document())

    @classmethod
    def from_document(cls, doc: Any) -> "SplitReport":
        try:
            assert isinstance(doc, dict) and doc.get("schema") == SCHEMA and doc.get("share_scale") == SHARE_SCALE
            t = doc["task"]
            matches = tuple(sorted(({"match_id": int(d["match_id"]), "value": float(d["value"]),
                                     "share": float(d["share"]), "weight": int(d["weight"]),
                                     "bonus_wei": int(str(d["bonus_wei"]))} for d in doc["matches"]),
                                   key=lambda d: d["match_id"]))
            return cls(task=TaskRef(int(t["chain_id"]), str(t["task_address"]), int(t["task_id"])),
                       bonus_wei=int(str(doc["bonus_wei"])), method=str(doc["method"]), params=dict(doc["params"]),
                       rounds=int(doc["rounds"]), matches=matches)
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise TaskError(f"not a {SCHEMA} document (share_scale {SHARE_SCALE}): {exc!r}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> "SplitReport":
        try:
            return cls.from_document(json.loads(bytes(data).decode("utf-8")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise TaskError(f"split report is not JSON: {exc}") from None


def make_split(manifest: Manifest, task: TaskRef, bonus_wei: int, rounds: Sequence[RoundOutcome],
               match_ids: Sequence[int], test: tuple[np.ndarray, np.ndarray]) -> SplitReport:
    """Measure contributions and turn ``bonus_wei`` (pool minus guaranteed prices) into the split report."""
    c = contributions(manifest, rounds, match_ids, test)
    weights = share_weights(c["shares"])
    bonuses = integer_split(int(bonus_wei), weights)
    matches = tuple({"match_id": m, "value": c["values"][m], "share": c["shares"][m], "weight": weights[m],
                     "bonus_wei": bonuses[m]} for m in sorted(weights))
    return SplitReport(task=task, bonus_wei=int(bonus_wei), method=c["method"], params=c["params"],
                       rounds=len(rounds), matches=matches)
