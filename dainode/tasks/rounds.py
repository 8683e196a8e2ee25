"""Deterministic round steps: the compute provider's local update and the model provider's aggregation + evaluation.

Determinism (what ``verify`` relies on): updates are ordered by match id before aggregation;
the rule is the manifest's, except that multikrum with fewer than f + 3 updates falls back to
the coordinate median (recorded as ``{"name": "median", "fallback_from": {...}}``); a round with
no accepted update keeps the global model unchanged (``{"name": "none"}``). The next global
model is ``float32(w_t + rule(clip(updates), n_examples))``. The same inputs on the same
numpy/JAX build give bit-identical parameters; across machines see ``verify``'s tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dainode.errors import TaskError
from dainode.ml import aggregate as agg
from dainode.ml.contribution import RoundRecord
from dainode.ml.spec import init_params
from dainode.tasks.documents import OpenedUpdate, RoundResult, params_digest
from dainode.tasks.manifest import Manifest


def initial_params(manifest: Manifest) -> np.ndarray:
    """Global model of round 0: the seeded init of the manifest's model (numpy PCG64, any node derives it), or zeros
    when ``[model] init = "zeros"`` (a linear model trained with the cubic sigmoid of the he mode needs small logits)."""
    if manifest.model.init == "zeros":
        return np.zeros(manifest.model_spec.n_params, np.float32)
    return init_params(manifest.model_spec)


def train_seed(manifest: Manifest, round: int, match_id: int) -> list[int]:
    """Batch-order seed of one compute job: [task seed, round, match id]."""
    return [manifest.task.seed, int(round), int(match_id)]


def compute_update(manifest: Manifest, global_params: np.ndarray, x: np.ndarray, y: np.ndarray, *,
                   round: int, match_id: int):
    """The compute provider's step: train from the round's global model, clip (if the manifest says so).

    Returns ``dainode.ml.train.TrainResult`` (``update``, ``n_examples``, ``mean_loss``).
    """
    from dainode.ml.train import local_train  # JAX: only where training happens

    res = local_train(manifest.model_spec, np.asarray(global_params, np.float32), x, y, manifest.train_config,
                      seed=train_seed(manifest, round, match_id))
    if manifest.task.clip_norm is not None:
        res.update = agg.clip_update(res.update, manifest.task.clip_norm)
        res.params = (np.asarray(global_params, np.float32) + res.update).astype(np.float32)
    return res


@dataclass
class RoundOutcome:
    """One aggregated round: its inputs (for contribution and verify) and the next global model."""

    round: int
    global_params: np.ndarray = field(repr=False)  # w_t, the model the round trained from
    match_ids: list[int]  # of the accepted updates, ascending
    updates: np.ndarray = field(repr=False)  # (k, d) as aggregated (after clipping)
    weights: np.ndarray = field(repr=False)  # (k,) example counts
    rule: dict
    params: np.ndarray = field(repr=False)  # w_{t+1}
    accuracy: float = float("nan")
    loss: float = float("nan")
    n_test: int = 0

    def record(self, index: dict[int, int]) -> RoundRecord:
        """The contribution module's RoundRecord, provider rows numbered by ``index`` (match id -> 0..n-1)."""
        return RoundRecord(self.global_params, self.updates, self.weights, providers=[index[m] for m in self.match_ids])

    def result(self, cids: dict[int, str], excluded: Sequence[dict] = (), *, model_cid: str | None = None) -> RoundResult:
        """The round-result document; ``cids`` maps each accepted match id to its update CID."""
        missing = [m for m in self.match_ids if m not in cids]
        if missing:
            raise TaskError(f"round {self.round}: no update CID given for match(es) {missing}")
        inc = tuple({"match_id": m, "cid": str(cids[m]), "n_examples": int(w)} for m, w in zip(self.match_ids, self.weights))
        exc = tuple(sorted(({"match_id": int(d["match_id"]), "cid": str(d["cid"]), "reason": str(d["reason"]),
                             "detail": str(d.get("detail", ""))} for d in excluded), key=lambda d: (d["match_id"], d["cid"])))
        return RoundResult(round=self.round, included=inc, excluded=exc, rule=dict(self.rule),
                           params_digest=params_digest(self.params), accuracy=self.accuracy, loss=self.loss,
                           n_test=self.n_test, model_cid=model_cid)


def round_rule(manifest: Manifest, k: int) -> tuple[agg.Rule | None, dict]:
    """The rule applied to ``k`` accepted updates and its recorded form (see the module docstring)."""
    if k == 0:
        return None, {"name": "none"}
    rule = manifest.rule
    if isinstance(rule, agg.MultiKrum) and k < rule.f + 3:
        return agg.CoordinateMedian(), {"name": "median", "fallback_from": rule.to_dict()}
    d = rule.to_dict()
    if manifest.task.aggregation == "fedprox":
        d["name"] = "fedprox"  # FedAvg on the server; kept under the manifest's name
    return rule, d


def aggregate_round(manifest: Manifest, round: int, global_params: np.ndarray, updates: Sequence[OpenedUpdate],
                    test: tuple[np.ndarray, np.ndarray] | None = None) -> RoundOutcome:
    """w_{t+1} from w_t and the accepted updates of round ``round``; evaluated on ``test`` if given."""
    spec = manifest.model_spec
    w = np.asarray(global_params, np.float32)
    if w.shape != (spec.n_params,):
        raise TaskError(f"round {round}: global model has shape {w.shape}, the manifest's model needs ({spec.n_params},)")
    ups = sorted(updates, key=lambda u: u.match_id)
    ids = [u.match_id for u in ups]
    if len(set(ids)) != len(ids):
        raise TaskError(f"round {round}: more than one accepted update for match(es) "
                        f"{sorted({m for m in ids if ids.count(m) > 1})}; accept one per match and round")
    wrong = [u.match_id for u in ups if u.binding.round != round]
    if wrong:
        raise TaskError(f"round {round}: update(s) of match(es) {wrong} are bound to another round")
    rule, rule_doc = round_rule(manifest, len(ups))
    if rule is None:
        u = np.zeros((0, spec.n_params), np.float32)
        weights = np.zeros(0, np.float64)
        new = w.copy()
    else:
        u = np.stack([np.asarray(x.update, np.float32) for x in ups])
        if manifest.task.clip_norm is not None:
            u = agg.clip_updates(u, manifest.task.clip_norm)  # the aggregator cannot trust clients to clip
        weights = np.asarray([x.n_examples for x in ups], np.float64)
        new = (w + rule.aggregate(u, weights)).astype(np.float32)
    out = RoundOutcome(round=round, global_params=w, match_ids=ids, updates=u, weights=weights, rule=rule_doc, params=new)
    if test is not None:
        evaluate_outcome(manifest, out, test)
    return out


def evaluate_params(manifest: Manifest, params: np.ndarray, test: tuple[np.ndarray, np.ndarray]) -> dict:
    """``dainode.ml.evaluate.evaluate`` of ``params`` on the test set: n, accuracy, loss, per-class accuracy."""
    from dainode.ml.evaluate import evaluate  # JAX: only where evaluation happens

    return evaluate(manifest.model_spec, params, test[0], test[1])


def evaluate_outcome(manifest: Manifest, out: RoundOutcome, test: tuple[np.ndarray, np.ndarray]) -> RoundOutcome:
    m = evaluate_params(manifest, out.params, test)
    out.accuracy, out.loss, out.n_test = m["accuracy"], m["loss"], m["n"]
    return out
