"""Local training's hyper-parameters, apart from the trainer: a manifest is read without loading JAX."""

# Why a module of its own: tasks/manifest.py (imported by every role at daemon start) needs these names, and
# ml/train.py imports JAX and optax, ~0.9 s and ~130 MB the daemon only needs once it trains.

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dainode.errors import MLError

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """Local training hyper-parameters (part of a task manifest)."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9  # only for optimizer="momentum"
    prox_mu: float = 0.0  # FedProx: adds mu/2 * ||w - w_global||^2 to every batch loss
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise MLError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise MLError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not (self.learning_rate > 0):
            raise MLError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.optimizer not in OPTIMIZERS:
            raise MLError(f"optimizer {self.optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
        if self.prox_mu < 0:
            raise MLError(f"prox_mu must be >= 0, got {self.prox_mu!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        try:
            return cls(**d)
        except TypeError as exc:
            raise MLError(f"bad training config {d!r}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
