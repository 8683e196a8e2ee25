"""JAX forward passes and losses that work directly on the flat float32 parameter vector."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dainode.ml.spec import ModelSpec


def _split(spec: ModelSpec, flat):
    """Static slices of the flat vector (shapes are Python ints, so this traces to cheap slices)."""
    out, off = {}, 0
    for name, shape in spec.layout():
        size = 1
        for s in shape:
            size *= s
        out[name] = flat[off:off + size].reshape(shape)
        off += size
    return out


def forward(spec: ModelSpec, flat, x):
    """Logits for a batch ``x`` of shape (B, *feature_shape)."""
    p = _split(spec, flat)
    if spec.kind in ("logreg", "linreg", "mlp"):
        h = x.reshape((x.shape[0], -1))
        n_layers = len(spec.sizes) - 1
        for i in range(n_layers):
            h = h @ p[f"dense{i}.w"] + p[f"dense{i}.b"]
            if i < n_layers - 1:
                h = jax.nn.relu(h)
        return h
    h = x.reshape((x.shape[0],) + tuple(spec.input_shape))
    for i in range(len(spec.channels)):
        h = jax.lax.conv_general_dilated(h, p[f"conv{i}.w"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jax.nn.relu(h + p[f"conv{i}.b"])
        if h.shape[1] >= 2 and h.shape[2] >= 2:
            h = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0
    h = h.reshape((h.shape[0], -1))
    return h @ p["dense.w"] + p["dense.b"]


def example_losses(spec: ModelSpec, flat, x, y):
    """Per-example softmax cross-entropy (integer labels); linreg: half the squared error on the 0/1 label."""
    return predictions_and_losses(spec, forward(spec, flat, x), y)[1]


def predictions_and_losses(spec: ModelSpec, logits, y):
    """Predicted class and per-example loss from the model's outputs."""
    if spec.kind == "linreg":
        out = logits[:, 0]
        return (out > 0.5).astype(jnp.int32), 0.5 * (out - y.astype(out.dtype)) ** 2
    logp = jax.nn.log_softmax(logits)
    return jnp.argmax(logits, axis=1), -jnp.take_along_axis(logp, y[:, None], axis=1)[:, 0]
