"""Aggregation rules behind one interface, update norm clipping, and the CKKS (linear-only) path.

Rules aggregate *updates* (client params minus the global params of the round); the new
global model is ``global + rule.aggregate(updates, weights)``. A rule is *linear* when its
result is a fixed weighted sum ``sum_i c_i * u_i`` whose coefficients depend only on the
public weights; only such a rule can run on CKKS ciphertexts, because the aggregator never
sees the plaintext values that median, trimming or Krum distances need.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from dainode.errors import AggregationError


class Rule(ABC):
    """Base of every aggregation rule."""

    name = "rule"
    linear = False

    @abstractmethod
    def aggregate(self, updates: np.ndarray, weights: Sequence[float]) -> np.ndarray:
        """The aggregated update (float32) of `updates` (clients, params) with example counts `weights`."""

    def coefficients(self, weights: Sequence[float]) -> np.ndarray:
        """The c_i of a linear rule; non-linear rules raise AggregationError."""
        raise AggregationError(f"aggregation rule {self.name!r} is not linear: it has no fixed coefficients")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"


def _check(updates: np.ndarray, weights: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(updates, np.float64)
    if u.ndim != 2 or u.shape[0] == 0:
        raise AggregationError(f"updates must be a non-empty (clients, params) array, got shape {u.shape}")
    if not np.all(np.isfinite(u)):
        bad = int(np.nonzero(~np.all(np.isfinite(u), axis=1))[0][0])
        raise AggregationError(f"update of client #{bad} contains NaN or infinite values")
    w = np.ones(u.shape[0]) if weights is None else np.asarray(weights, np.float64)
    _check_weights(w, u.shape[0])
    return u, w


def _check_weights(w: np.ndarray, k: int) -> None:
    if w.shape != (k,):
        raise AggregationError(f"{k} updates but {w.size} weights")
    if np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise AggregationError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")


class FedAvg(Rule):
    """Example-weighted mean (McMahan et al.): c_i = n_i / sum_j n_j. The server side of FedProx too."""

    name = "fedavg"
    linear = True

    def coefficients(self, weights):
        w = np.asarray(weights, np.float64)
        _check_weights(w, w.size)
        return w / w.sum()

    def aggregate(self, updates, weights):
        u, w = _check(updates, weights)
        return (self.coefficients(w) @ u).astype(np.float32)


class CoordinateMedian(Rule):
    """Per-coordinate median (Yin et al. 2018); ignores the weights."""

    name = "median"

    def aggregate(self, updates, weights):
        u, _ = _check(updates, weights)
        return np.median(u, axis=0).astype(np.float32)


class TrimmedMean(Rule):
    """Per-coordinate mean after dropping the ``trim`` largest and ``trim`` smallest values.

    ``trim`` defaults to floor(beta * k) with beta = 0.25; needs k > 2 * trim.
    """

    name = "trimmed_mean"

    def __init__(self, beta: float = 0.25):
        if not 0 <= beta < 0.5:
            raise AggregationError(f"trimmed_mean beta must be in [0, 0.5), got {beta}")
        self.beta = float(beta)

    def to_dict(self):
        return {"name": self.name, "beta": self.beta}

    def aggregate(self, updates, weights):
        u, _ = _check(updates, weights)
        k = u.shape[0]
        t = int(np.floor(self.beta * k))
        if k - 2 * t < 1:
            raise AggregationError(f"trimmed_mean with beta={self.beta} leaves nothing of {k} updates")
        s = np.sort(u, axis=0)
        return s[t:k - t].mean(axis=0).astype(np.float32)


class MultiKrum(Rule):
    """Multi-Krum (Blanchard et al. 2017): keep the ``m`` updates with the lowest Krum score, FedAvg them.

    Score of i = sum of squared distances to its k - f - 2 nearest other updates; ``f`` is the
    number of Byzantine clients tolerated (the proven bound needs k >= 2f + 3; k >= f + 3 is
    accepted), ``m`` defaults to k - f.
    """

    name = "multikrum"

    def __init__(self, f: int = 1, m: int | None = None):
        if f < 0 or (m is not None and m < 1):
            raise AggregationError(f"multikrum needs f >= 0 and m >= 1, got f={f}, m={m}")
        self.f, self.m = int(f), (None if m is None else int(m))

    def to_dict(self):
        return {"name": self.name, "f": self.f, "m": self.m}

    def select(self, updates: np.ndarray) -> np.ndarray:
        """Indices of the selected updates (lowest scores first; ties by index)."""
        u = np.asarray(updates, np.float64)
        k = u.shape[0]
        # Blanchard et al.'s guarantee needs k >= 2f + 3; the score itself only needs one neighbour
        # (k >= f + 3), which lets 4 providers with f = 1 use it (documented weaker guarantee).
        if k < self.f + 3:
            raise AggregationError(f"multikrum with f={self.f} needs at least {self.f + 3} updates, got {k}")
        sq = np.sum(u * u, axis=1)
        d = np.maximum(sq[:, None] + sq[None, :] - 2 * u @ u.T, 0.0)
        nearest = k - self.f - 2
        scores = np.array([np.sort(np.delete(d[i], i))[:nearest].sum() for i in range(k)])
        m = k - self.f if self.m is None else min(self.m, k)
        return np.argsort(scores, kind="stable")[:m]

    def aggregate(self, updates, weights):
        u, w = _check(updates, weights)
        sel = self.select(u)
        if w[sel].sum() <= 0:
            raise AggregationError("multikrum selected only zero-weight updates")
        return (w[sel] / w[sel].sum() @ u[sel]).astype(np.float32)


RULES = {"fedavg": FedAvg, "fedprox": FedAvg, "median": CoordinateMedian,
         "trimmed_mean": TrimmedMean, "multikrum": MultiKrum}


def make_rule(spec: str | dict | Rule) -> Rule:
    """A rule from its manifest form: ``"fedavg"`` or ``{"name": "multikrum", "f": 1}``.

    ``fedprox`` is FedAvg on the server; its proximal term lives in the clients' TrainConfig.
    """
    if isinstance(spec, Rule):
        return spec
    d = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = d.pop("name", None)
    if name not in RULES:
        raise AggregationError(f"unknown aggregation rule {name!r}; use one of {', '.join(RULES)}")
    try:
        return RULES[name](**d)
    except TypeError as exc:
        raise AggregationError(f"bad parameters for rule {name!r}: {exc}") from exc


def clip_update(update: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale ``update`` down to L2 norm ``max_norm`` if it is longer (direction kept)."""
    if not max_norm > 0:
        raise AggregationError(f"clip norm must be > 0, got {max_norm}")
    u = np.asarray(update, np.float32)
    norm = float(np.linalg.norm(u.astype(np.float64)))
    return u if norm <= max_norm else (u * (max_norm / norm)).astype(np.float32)


def clip_updates(updates: np.ndarray, max_norm: float) -> np.ndarray:
    return np.stack([clip_update(u, max_norm) for u in np.asarray(updates)])


def aggregate(rule: str | dict | Rule, updates: np.ndarray, weights: Sequence[float] | None = None,
              *, clip_norm: float | None = None) -> np.ndarray:
    """Plaintext aggregation: optional clipping, then ``rule``."""
    rule = make_rule(rule)
    u = np.asarray(updates, np.float32)
    if clip_norm is not None:
        u = clip_updates(u, clip_norm)
    return rule.aggregate(u, weights)


def aggregate_encrypted(rule: str | dict | Rule, encrypted_updates: Sequence, weights: Sequence[float]):
    """Homomorphic ``sum_i c_i * Enc(u_i)`` for a linear rule; AggregationError for any other.

    Clipping cannot be checked under encryption: clients clip before encrypting
    (``clip_update``), which is why robust rules need the plaintext path.
    """
    rule = make_rule(rule)
    if not rule.linear:
        raise AggregationError(f"aggregation rule {rule.name!r} is not linear and cannot run on CKKS ciphertexts; "
                               "use fedavg/fedprox with encryption, or aggregate plaintext updates")
    encrypted_updates = list(encrypted_updates)
    if not encrypted_updates:
        raise AggregationError("no encrypted updates to aggregate")
    coeffs = rule.coefficients(np.asarray(weights, np.float64))
    if coeffs.shape != (len(encrypted_updates),):
        raise AggregationError(f"{len(encrypted_updates)} encrypted updates but {coeffs.size} weights")
    lengths = {getattr(e, "length", None) for e in encrypted_updates}
    if len(lengths) != 1:
        raise AggregationError(f"encrypted updates have different lengths {sorted(map(str, lengths))}")
    from dainode.crypto.ckks import encrypted_weighted_sum  # lazy: TenSEAL only where encryption is used
    from dainode.errors import CryptoError

    try:
        return encrypted_weighted_sum(encrypted_updates, coeffs.tolist())
    except CryptoError as exc:
        raise AggregationError(f"encrypted aggregation failed: {exc}") from exc
