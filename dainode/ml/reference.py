"""The reference federated job (the one benchmarked against Flower): digits, MLP 64-128-10, 4 providers."""

from __future__ import annotations

from dainode.errors import MLError
from dainode.ml.datasets import Dataset, load_builtin, stratified_split
from dainode.ml.preprocess import shard_iid, shard_label_skew
from dainode.ml.simulate import FederatedJob
from dainode.ml.train import TrainConfig

REFERENCE_MODEL = {"kind": "mlp", "sizes": [64, 128, 10], "seed": 0}
REFERENCE_TRAIN = TrainConfig(epochs=1, batch_size=32, learning_rate=0.1, optimizer="sgd")
REFERENCE_PROVIDERS = 4
REFERENCE_ROUNDS = 20
SPLITS = ("iid", "label_skew")


def reference_data() -> tuple[Dataset, Dataset]:
    """scikit-learn digits scaled by 1/16, stratified 80/20 train/test split with seed 0 (1437/360 rows)."""
    ds = load_builtin("digits")
    ds.x = (ds.x / 16.0).astype("float32")
    return stratified_split(ds, test_fraction=0.2, seed=0)


def reference_job(split: str = "iid", *, data: tuple[Dataset, Dataset] | None = None, **overrides) -> FederatedJob:
    """FederatedJob for the reference setting; ``split`` is ``iid`` (shard_iid, seed 0) or
    ``label_skew`` (shard_label_skew, 2 label-sorted runs per provider, seed 0). ``overrides``
    set other FederatedJob fields (rule, ckks, poison, record_updates, ...)."""
    train, test = data or reference_data()
    if split == "iid":
        shards = shard_iid(len(train), REFERENCE_PROVIDERS, seed=0)
    elif split == "label_skew":
        shards = shard_label_skew(train.y, REFERENCE_PROVIDERS, seed=0)
    else:
        raise MLError(f"reference split {split!r} is unknown; use one of {', '.join(SPLITS)}")
    fields = dict(model=REFERENCE_MODEL, providers=[(train.x[s], train.y[s]) for s in shards],
                  test=(test.x, test.y), train=REFERENCE_TRAIN, rounds=REFERENCE_ROUNDS, rule="fedavg")
    fields.update(overrides)
    return FederatedJob(**fields)
