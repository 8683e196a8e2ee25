"""Local training: whole epochs in one jitted lax.scan, seeded shuffling, optional FedProx term."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dainode.errors import MLError
from dainode.ml.models import example_losses
from dainode.ml.spec import ModelSpec, as_spec
from dainode.ml.trainconfig import OPTIMIZERS, TrainConfig

__all__ = ["OPTIMIZERS", "TrainConfig", "TrainResult", "batch_plan", "local_train"]


@dataclass
class TrainResult:
    params: np.ndarray  # new flat float32 parameters
    update: np.ndarray  # params - global params (what gets clipped, encrypted, aggregated)
    n_examples: int
    mean_loss: float  # mean training loss over the last epoch's batches


def _optimizer(cfg: TrainConfig):
    if cfg.optimizer == "sgd":
        return optax.sgd(cfg.learning_rate)
    if cfg.optimizer == "momentum":
        return optax.sgd(cfg.learning_rate, momentum=cfg.momentum)
    return optax.adam(cfg.learning_rate)


@functools.lru_cache(maxsize=64)
def _compiled_run(spec: ModelSpec, cfg_key: tuple):
    """One jitted function per (model, optimizer settings): scans over every batch of every epoch."""
    cfg = TrainConfig(**dict(cfg_key))
    opt = _optimizer(cfg)
    mu = cfg.prox_mu

    def batch_loss(w, w0, xb, yb, mb):
        losses = example_losses(spec, w, xb, yb)
        loss = jnp.sum(losses * mb) / jnp.maximum(jnp.sum(mb), 1.0)
        if mu > 0:
            loss = loss + 0.5 * mu * jnp.sum((w - w0) ** 2)
        return loss

    grad_fn = jax.value_and_grad(batch_loss)

    @jax.jit
    def run(w0, xs, ys, masks):
        def step(carry, batch):
            w, state = carry
            xb, yb, mb = batch
            loss, g = grad_fn(w, w0, xb, yb, mb)
            upd, state = opt.update(g, state, w)
            return (optax.apply_updates(w, upd), state), loss

        (w, _), losses = jax.lax.scan(step, (w0, opt.init(w0)), (xs, ys, masks))
        return w, losses

    return run


def batch_plan(n: int, cfg: TrainConfig, seed: int | Sequence[int]) -> np.ndarray:
    """Row indices for every step, shape (epochs * batches, batch_size); -1 marks padding.

    A fresh permutation per epoch from numpy PCG64 seeded with ``seed`` (mixed with the epoch),
    so the same seed gives the same order on every machine.
    """
    seed_seq = list(seed) if isinstance(seed, (list, tuple)) else [int(seed)]
    nb = -(-n // cfg.batch_size)
    plan = np.full((cfg.epochs, nb * cfg.batch_size), -1, np.int64)
    for e in range(cfg.epochs):
        plan[e, :n] = np.random.default_rng(seed_seq + [e]).permutation(n)
    return plan.reshape(cfg.epochs * nb, cfg.batch_size)


def local_train(spec: ModelSpec | dict, global_params: np.ndarray, x: np.ndarray, y: np.ndarray,
                cfg: TrainConfig, *, seed: int | Sequence[int] | None = None) -> TrainResult:
    """Train from ``global_params`` on (x, y); deterministic for (params, data, cfg, seed)."""
    spec = as_spec(spec)
    n = int(len(x))
    if n == 0:
        raise MLError("cannot train on an empty dataset")
    if len(y) != n:
        raise MLError(f"x has {n} rows but y has {len(y)}")
    if tuple(x.shape[1:]) != spec.feature_shape and int(np.prod(x.shape[1:])) != int(np.prod(spec.feature_shape)):
        raise MLError(f"features have shape {tuple(x.shape[1:])}, model expects {spec.feature_shape}")
    ncls = spec.n_classes
    if int(np.min(y)) < 0 or int(np.max(y)) >= ncls:
        raise MLError(f"labels must be in [0, {ncls}), got range [{int(np.min(y))}, {int(np.max(y))}]")
    plan = batch_plan(n, cfg, cfg.seed if seed is None else seed)
    mask = (plan >= 0).astype(np.float32)
    idx = np.where(plan >= 0, plan, 0)
    xs = np.asarray(x, np.float32)[idx]
    ys = np.asarray(y, np.int32)[idx]
    w0 = np.asarray(global_params, np.float32)
    # the seed only drives the numpy batch plan, so it stays out of the compile key
    run = _compiled_run(spec, tuple(sorted((k, v) for k, v in cfg.to_dict().items() if k != "seed")))
    w, losses = run(w0, xs, ys, mask)
    w = np.asarray(w, np.float32)
    nb = plan.shape[0] // cfg.epochs
    return TrainResult(params=w, update=w - w0, n_examples=n,
                       mean_loss=float(np.mean(np.asarray(losses)[-nb:])))
