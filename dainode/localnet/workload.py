"""The local network's workload: digits shards (one file per data provider) and a matching task manifest."""

from __future__ import annotations

from pathlib import Path

ETH = 10**18
DATA_PRICE_WEI = ETH // 10
COMPUTE_PRICE_WEI = ETH // 20
MAX_DATA_PRICE_WEI = ETH // 2
MAX_COMPUTE_PRICE_WEI = ETH // 5
FEATURE_SCALE = 0.0625  # digits are 0..16: 1/16 gives 0..1, as the manifest's [test] part


def shard_files(base: Path, n: int, prefix: str = "digits-shard") -> list[Path]:
    """The train part of the manifest's digits split (stratified 0.2, seed 0; features scaled to 0..1) in ``n`` .npz
    files of about equal size (a fixed permutation, seed 0): disjoint from the model provider's test set."""
    import numpy as np

    from dainode.ml.datasets import load_builtin, stratified_split

    ds = load_builtin("digits")
    ds.x = (np.asarray(ds.x, np.float32) * np.float32(FEATURE_SCALE)).astype(np.float32)
    train, _ = stratified_split(ds, 0.2, 0)
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, idx in enumerate(np.array_split(np.random.default_rng(0).permutation(len(train.y)), n)):
        p = base / f"{prefix}{i}.npz"
        np.savez(p, x=train.x[idx].reshape(len(idx), -1), y=train.y[idx])
        paths.append(p)
    return paths


def task_manifest(*, providers: int, rounds: int = 10, name: str = "digits-mlp", quorum: int | None = None,
                  layers: tuple[int, ...] = (64, 128, 10), momentum: bool = True, round_window_s: int = 5,
                  pool_wei: int | None = None, privacy: str = "fl", lr: float = 0.1,
                  max_data_price_wei: int = MAX_DATA_PRICE_WEI, max_compute_price_wei: int = MAX_COMPUTE_PRICE_WEI) -> str:
    """A task manifest (TOML, every key of config/task.example.toml that matters here) for ``providers`` digits shards.

    The pool is 1 ETH per provider (it must cover providers x (max data + max compute price)); the rest after the
    matched prices is the contribution bonus."""
    pool = pool_wei if pool_wei is not None else providers * ETH
    optimizer = '\noptimizer = "momentum"\nmomentum = 0.9' if momentum else ""
    return f"""
[task]
name = "{name}"
rounds = {rounds}
providers = {providers}
local_epochs = 1
round_window_s = {round_window_s}
quorum = {quorum if quorum is not None else providers}
aggregation = "fedavg"
privacy = "{privacy}"
reward_pool_wei = "{pool}"
max_data_price_wei = "{max_data_price_wei}"
max_compute_price_wei = "{max_compute_price_wei}"
seed = 0

[model]
kind = "mlp"
layers = [{", ".join(str(x) for x in layers)}]
lr = {lr}
batch = 32{optimizer}

[data]
features = 64
label_classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
min_rows = 100
min_quality = 0.5

[test]
dataset = "digits"
feature_scale = {FEATURE_SCALE}

[test.split]
fraction = 0.2
seed = 0
part = "test"
"""
