"""A numpy MLP / logistic regression (softmax cross-entropy) with minibatch SGD: dainode's reference model in numpy."""

from __future__ import annotations

import os

import numpy as np


def settings(run_config) -> dict:
    """Run config (deployment: `flwr run --run-config`) with the environment as fallback (simulation)."""
    env = {"data-file": "FLOWER_BENCH_DATA", "out-file": "FLOWER_BENCH_OUT", "num-rounds": "FLOWER_BENCH_ROUNDS",
           "lr": "FLOWER_BENCH_LR"}
    out = {k: run_config.get(k, "") for k in ("data-file", "out-file", "num-rounds", "lr", "batch")}
    for k, var in env.items():
        if not out.get(k) and os.environ.get(var):
            out[k] = os.environ[var]
    out["num-rounds"] = int(out["num-rounds"] or 20)
    out["lr"] = float(out["lr"] or 0.1)
    out["batch"] = int(out["batch"] or 32)
    return out


def load(path: str) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def initial(data: dict) -> list[np.ndarray]:
    """The initial layers as [w0, b0, w1, b1, ...] (drawn by dainode's init_params, so both start alike)."""
    n = int(data["n_layers"])
    return [data[f"init_{i}"].astype(np.float32) for i in range(2 * n)]


def forward(params: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    acts = [x]
    h = x
    n = len(params) // 2
    for i in range(n):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return h, acts


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_epoch(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float, batch: int, seed: int) -> list[np.ndarray]:
    """One epoch of minibatch SGD on mean cross-entropy; returns new arrays."""
    p = [a.astype(np.float32).copy() for a in params]
    n = len(p) // 2
    order = np.random.default_rng(seed).permutation(len(y))
    for s in range(0, len(y), batch):
        idx = order[s:s + batch]
        xb, yb = x[idx], y[idx]
        logits, acts = forward(p, xb)
        g = softmax(logits)
        g[np.arange(len(yb)), yb] -= 1.0
        g /= len(yb)
        for i in reversed(range(n)):
            gw = acts[i].T @ g
            gb = g.sum(axis=0)
            if i > 0:
                g = (g @ p[2 * i].T) * (acts[i] > 0)
            p[2 * i] -= lr * gw
            p[2 * i + 1] -= lr * gb
    return p


def evaluate(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    logits, _ = forward(params, x)
    prob = softmax(logits)
    loss = float(-np.mean(np.log(prob[np.arange(len(y)), y] + 1e-12)))
    return float(np.mean(prob.argmax(axis=1) == y)), loss
