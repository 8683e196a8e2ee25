"""Model specs (JSON-able), parameter layout, seeded init, and flatten/unflatten to one float32 vector.

numpy only: a relaying or aggregating node handles parameter vectors without importing JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dainode.errors import MLError

KINDS = ("logreg", "linreg", "mlp", "cnn")


@dataclass(frozen=True)
class ModelSpec:
    """What a task manifest names: the architecture and the init seed.

    - ``logreg``: ``sizes=[features, classes]`` (multinomial; 2 classes for binary).
    - ``linreg``: ``sizes=[features, 1]``: least squares on 0/1 labels, class 1 when the output is > 0.5.
    - ``mlp``: ``sizes=[in, hidden..., classes]``, ReLU between layers.
    - ``cnn``: ``input_shape=[H, W, C]``, ``channels=[c1, ...]`` (3x3 'SAME' conv + ReLU
      + 2x2 average pool each), then a dense layer to ``classes``.
    """

    kind: str
    sizes: tuple[int, ...] = ()
    seed: int = 0
    input_shape: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()
    classes: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        if not isinstance(d, dict):
            raise MLError(f"model spec must be a dict, got {type(d).__name__}")
        kind = d.get("kind")
        if kind not in KINDS:
            raise MLError(f"model spec kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
        known = {"kind", "sizes", "seed", "input_shape", "channels", "classes"}
        extra = set(d) - known
        if extra:
            raise MLError(f"model spec has unknown field(s) {sorted(extra)}; allowed: {sorted(known)}")

        def ints(name: str) -> tuple[int, ...]:
            v = d.get(name, ())
            if not isinstance(v, (list, tuple)) or not all(isinstance(i, int) and i > 0 for i in v):
                raise MLError(f"model spec field {name!r} must be a list of positive integers, got {v!r}")
            return tuple(v)

        seed = d.get("seed", 0)
        if not isinstance(seed, int) or seed < 0:
            raise MLError(f"model spec seed must be a non-negative integer, got {seed!r}")
        spec = cls(kind=kind, sizes=ints("sizes"), seed=seed, input_shape=ints("input_shape"),
                   channels=ints("channels"), classes=int(d.get("classes", 0) or 0))
        spec.layout()  # validates the combination
        return spec

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "cnn":
            return {"kind": "cnn", "input_shape": list(self.input_shape), "channels": list(self.channels),
                    "classes": self.classes, "seed": self.seed}
        return {"kind": self.kind, "sizes": list(self.sizes), "seed": self.seed}

    @property
    def n_classes(self) -> int:
        if self.kind == "linreg":
            return 2
        return self.classes if self.kind == "cnn" else self.sizes[-1]

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return self.input_shape if self.kind == "cnn" else (self.sizes[0],)

    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """Ordered (name, shape) of every parameter array; the flat vector concatenates them in this order."""
        if self.kind in ("logreg", "linreg", "mlp"):
            sizes = self.sizes
            if self.kind == "linreg" and (len(sizes) != 2 or sizes[1] != 1):
                raise MLError(f"linreg needs sizes=[in, 1], got {list(sizes)}")
            if len(sizes) < 2 or (self.kind == "logreg" and len(sizes) != 2):
                raise MLError(f"{self.kind} needs sizes=[in, {'hidden..., ' if self.kind == 'mlp' else ''}classes], got {list(sizes)}")
            out = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                out += [(f"dense{i}.w", (a, b)), (f"dense{i}.b", (b,))]
            return out
        # cnn
        if len(self.input_shape) != 3 or not self.channels or self.classes < 2:
            raise MLError("cnn needs input_shape=[H, W, C], channels=[c1, ...] and classes >= 2")
        h, w, c = self.input_shape
        out = []
        for i, co in enumerate(self.channels):
            out += [(f"conv{i}.w", (3, 3, c, co)), (f"conv{i}.b", (co,))]
            c = co
            h, w = max(h // 2, 1), max(w // 2, 1)
        out += [("dense.w", (h * w * c, self.classes)), ("dense.b", (self.classes,))]
        return out

    @property
    def n_params(self) -> int:
        return int(sum(int(np.prod(s)) for _, s in self.layout()))


def as_spec(spec: ModelSpec | dict) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)


def init_params(spec: ModelSpec | dict) -> np.ndarray:
    """Seeded initial parameters as one float32 vector.

    He-uniform weights (fan-in) and zero biases, drawn with numpy's PCG64 so every node
    (and a third party checking rewards) derives the same initial model from the spec.
    """
    spec = as_spec(spec)
    rng = np.random.default_rng(spec.seed)
    parts = []
    for name, shape in spec.layout():
        if name.endswith(".b"):
            parts.append(np.zeros(shape, np.float32))
        else:
            fan_in = int(np.prod(shape[:-1]))
            bound = np.sqrt(6.0 / fan_in)
            parts.append(rng.uniform(-bound, bound, size=shape).astype(np.float32))
    return flatten(parts)


def flatten(params) -> np.ndarray:
    """Concatenate a list (or dict in layout order) of parameter arrays into one float32 vector."""
    arrays = list(params.values()) if isinstance(params, dict) else list(params)
    if not arrays:
        return np.zeros(0, np.float32)
    return np.concatenate([np.asarray(a, np.float32).ravel() for a in arrays])


def unflatten(spec: ModelSpec | dict, vec) -> dict[str, np.ndarray]:
    """Split a flat vector back into named arrays (views) following ``spec.layout()``."""
    spec = as_spec(spec)
    vec = np.asarray(vec)
    if vec.ndim != 1 or vec.shape[0] != spec.n_params:
        raise MLError(f"parameter vector has shape {vec.shape}, model {spec.kind} needs ({spec.n_params},)")
    out, off = {}, 0
    for name, shape in spec.layout():
        size = int(np.prod(shape))
        out[name] = vec[off:off + size].reshape(shape)
        off += size
    return out


def params_to_bytes(vec: np.ndarray) -> bytes:
    """Wire/file form of a parameter or update vector: raw little-endian float32, no header
    (the model spec in the task manifest gives the length)."""
    vec = np.asarray(vec)
    if vec.ndim != 1:
        raise MLError(f"parameter vector must be 1-D, got shape {vec.shape}")
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def params_from_bytes(spec: ModelSpec | dict, data: bytes) -> np.ndarray:
    """Inverse of ``params_to_bytes``; checks the length against the spec and refuses NaN/inf."""
    spec = as_spec(spec)
    if len(data) != 4 * spec.n_params:
        raise MLError(f"parameter blob has {len(data)} bytes, model {spec.kind} needs {4 * spec.n_params} "
                      f"({spec.n_params} float32)")
    vec = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vec)):
        raise MLError(f"parameter blob contains NaN or infinite values (first at index {int(np.argmin(np.isfinite(vec)))})")
    return vec
