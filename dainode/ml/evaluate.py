"""Evaluation on a test set: accuracy, mean cross-entropy loss, per-class accuracy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dainode.errors import MLError
from dainode.ml.models import forward, predictions_and_losses
from dainode.ml.spec import ModelSpec, as_spec


@functools.lru_cache(maxsize=32)
def _compiled_eval(spec: ModelSpec):
    @jax.jit
    def run(w, x, y):
        return predictions_and_losses(spec, forward(spec, w, x), y)

    return run


@functools.lru_cache(maxsize=32)
def _compiled_eval_many(spec: ModelSpec):
    """Accuracy of a stack of parameter vectors at once (contribution measurement evaluates many)."""
    run = _compiled_eval(spec)

    @jax.jit
    def many(ws, x, y):
        pred, loss = jax.vmap(lambda w: run(w, x, y))(ws)
        return jnp.mean((pred == y[None, :]).astype(jnp.float32), axis=1), jnp.mean(loss, axis=1)

    return many


def _check_labels(spec: ModelSpec, x, y) -> None:
    # jnp.take_along_axis clamps out-of-range indices silently: a label >= n_classes would give
    # a plausible-looking but wrong loss, so labels are checked here.
    if len(x) == 0 or len(x) != len(y):
        raise MLError(f"test set needs as many labels as rows and at least one row (x {len(x)}, y {len(y)})")
    y = np.asarray(y)
    if y.min() < 0 or y.max() >= spec.n_classes:
        raise MLError(f"test labels must be in [0, {spec.n_classes}), got range [{int(y.min())}, {int(y.max())}]")


def predict(spec: ModelSpec | dict, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Predicted class per row."""
    spec = as_spec(spec)
    pred, _ = _compiled_eval(spec)(np.asarray(params, np.float32), np.asarray(x, np.float32),
                                   np.zeros(len(x), np.int32))
    return np.asarray(pred)


def evaluate(spec: ModelSpec | dict, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict:
    """``{"n", "accuracy", "loss", "per_class_accuracy": {label: acc or None}}`` (None: class absent)."""
    spec = as_spec(spec)
    _check_labels(spec, x, y)
    y = np.asarray(y, np.int32)
    pred, loss = _compiled_eval(spec)(np.asarray(params, np.float32), np.asarray(x, np.float32), y)
    pred, loss = np.asarray(pred), np.asarray(loss, np.float64)
    per_class = {}
    for c in range(spec.n_classes):
        sel = y == c
        per_class[c] = float(np.mean(pred[sel] == c)) if sel.any() else None
    return {"n": int(len(y)), "accuracy": float(np.mean(pred == y)), "loss": float(np.mean(loss)),
            "per_class_accuracy": per_class}


def evaluate_many(spec: ModelSpec | dict, stacked_params: np.ndarray, x: np.ndarray,
                  y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, mean loss) of each row of ``stacked_params`` (shape (k, n_params)) on (x, y)."""
    spec = as_spec(spec)
    _check_labels(spec, x, y)
    acc, loss = _compiled_eval_many(spec)(np.asarray(stacked_params, np.float32),
                                          np.asarray(x, np.float32), np.asarray(y, np.int32))
    return np.asarray(acc, np.float64), np.asarray(loss, np.float64)


def predictor(spec: ModelSpec | dict, params: np.ndarray):
    """``x -> predicted labels`` for a fixed model: the ``reference`` of the quality score."""
    spec = as_spec(spec)
    params = np.asarray(params, np.float32)
    return lambda x: predict(spec, params, x)
