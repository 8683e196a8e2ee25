"""In-process federated simulation: the same steps the roles run across nodes, in one loop.

Per round t: every provider i trains from w_t with seed [job.seed, t, i] (compute provider),
optionally clips its update, optionally CKKS-encrypts it under the model provider's public
context and serialises it; the aggregator applies the rule (homomorphically when encrypted);
the model provider decrypts the aggregate and sets w_{t+1} = w_t + aggregate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dainode.errors import MLError
from dainode.ml import aggregate as agg
from dainode.ml.contribution import RoundRecord
from dainode.ml.evaluate import evaluate
from dainode.ml.spec import ModelSpec, as_spec, init_params
from dainode.ml.train import TrainConfig, local_train

POISON_KINDS = ("sign_flip", "scale")


@dataclass
class FederatedJob:
    model: ModelSpec | dict
    providers: list[tuple[np.ndarray, np.ndarray]]  # each provider's (x, y) shard
    test: tuple[np.ndarray, np.ndarray]
    train: TrainConfig = field(default_factory=TrainConfig)
    rounds: int = 20
    rule: Any = "fedavg"  # name, dict or agg.Rule
    clip_norm: float | None = None
    ckks: Any = False  # False, True (fresh default context) or a CkksContext with the secret key
    # {"provider": i, "kind": "sign_flip" | "scale", "factor": f}: provider i sends -f*u or f*u (unclipped)
    poison: dict | None = None
    record_updates: bool = False  # keep RoundRecords for contribution measurement
    seed: int = 0
    eval_every: int = 1  # 0: only evaluate the final model


@dataclass
class FederatedResult:
    params: np.ndarray
    final: dict  # evaluate() of the final model
    history: list[dict]  # {"round", "accuracy", "loss"} at each evaluated round
    round_ms: list[float]  # wall time of train + (encrypt) + aggregate (+ decrypt) per round
    records: list[RoundRecord] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.final["accuracy"]


def _poisoned(update: np.ndarray, poison: dict) -> np.ndarray:
    kind, factor = poison.get("kind"), float(poison.get("factor", 1.0))
    if kind == "sign_flip":
        return (-factor * update).astype(np.float32)
    if kind == "scale":
        return (factor * update).astype(np.float32)
    raise MLError(f"poison kind {kind!r} is unknown; use one of {', '.join(POISON_KINDS)}")


class _CkksPath:
    """Key holder (model provider) context plus the public one the clients and aggregator get."""

    def __init__(self, ctx):
        from dainode.crypto.ckks import CkksContext, EncryptedVector

        self.EncryptedVector = EncryptedVector
        self.secret = CkksContext.create() if ctx is True else ctx
        if not self.secret.has_secret_key:
            raise MLError("job.ckks must be a CKKS context holding the secret key (the model provider's)")
        # Round-trip through bytes as a peer would receive it.
        self.public = CkksContext.from_bytes(self.secret.public().to_bytes())

    def aggregate(self, rule, updates: list[np.ndarray], weights) -> np.ndarray:
        blobs = [self.public.encrypt(u).to_bytes() for u in updates]  # clients
        evs = [self.EncryptedVector.from_bytes(self.public, b) for b in blobs]  # aggregator
        out = agg.aggregate_encrypted(rule, evs, weights).to_bytes()
        return self.secret.decrypt(self.EncryptedVector.from_bytes(self.secret, out)).astype(np.float32)


def run_federated(job: FederatedJob) -> FederatedResult:
    spec = as_spec(job.model)
    rule = agg.make_rule(job.rule)
    k = len(job.providers)
    if k == 0:
        raise MLError("a federated job needs at least one provider")
    if job.rounds < 1:
        raise MLError(f"rounds must be >= 1, got {job.rounds}")
    if job.poison is not None and not 0 <= int(job.poison.get("provider", -1)) < k:
        raise MLError(f"poison provider must be in 0..{k - 1}, got {job.poison.get('provider')!r}")
    ckks = None
    if job.ckks:
        if not rule.linear:  # fail before any training, not in round 1
            raise agg.AggregationError(f"rule {rule.name!r} is not linear; CKKS aggregation needs fedavg/fedprox")
        ckks = _CkksPath(job.ckks)
    xt, yt = job.test
    w = init_params(spec)
    history, times, records = [], [], []
    for t in range(job.rounds):
        t0 = time.perf_counter()
        updates, weights = [], []
        for i, (x, y) in enumerate(job.providers):
            res = local_train(spec, w, x, y, job.train, seed=[job.seed, t, i])
            u = res.update
            is_bad = job.poison is not None and int(job.poison["provider"]) == i
            if job.clip_norm is not None and not is_bad:
                u = agg.clip_update(u, job.clip_norm)  # honest clients clip before sending
            if is_bad:
                u = _poisoned(u, job.poison)
            updates.append(u)
            weights.append(res.n_examples)
        if ckks is not None:
            delta = ckks.aggregate(rule, updates, weights)
        else:
            # the aggregator clips again: it cannot trust clients to have done it
            delta = agg.aggregate(rule, np.stack(updates), weights, clip_norm=job.clip_norm)
        times.append((time.perf_counter() - t0) * 1000)
        if job.record_updates:
            records.append(RoundRecord(w.copy(), np.stack(updates), np.asarray(weights, np.float64)))
        w = (w + delta).astype(np.float32)
        if job.eval_every and ((t + 1) % job.eval_every == 0 or t + 1 == job.rounds):
            m = evaluate(spec, w, xt, yt)
            history.append({"round": t + 1, "accuracy": m["accuracy"], "loss": m["loss"]})
    return FederatedResult(params=w, final=evaluate(spec, w, xt, yt), history=history, round_ms=times,
                           records=records)
