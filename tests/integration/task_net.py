"""Test-only: a small task network (relay with the dev chain, a model provider, data+compute nodes) and its helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np

from tests.integration.daemon import DaemonProcess, run_cli, wait_for

ETH = 10**18
DATA_PRICE = ETH // 10
COMPUTE_PRICE = ETH // 20


def manifest(*, rounds: int, providers: int, quorum: int, aggregation: str = "fedavg", params: str = "",
             window_s: int = 5, pool: int = 4 * ETH, name: str = "digits-fault") -> str:
    return f"""
[task]
name = "{name}"
rounds = {rounds}
providers = {providers}
local_epochs = 1
round_window_s = {window_s}
quorum = {quorum}
aggregation = "{aggregation}"
privacy = "fl"
reward_pool_wei = "{pool}"
max_data_price_wei = "{ETH // 2}"
max_compute_price_wei = "{ETH // 5}"
seed = 0
{params}

[model]
kind = "mlp"
layers = [64, 32, 10]
lr = 0.1
batch = 32
optimizer = "momentum"
momentum = 0.9

[data]
features = 64
label_classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
min_rows = 100
min_quality = 0.5

[test]
dataset = "digits"
feature_scale = 0.0625

[test.split]
fraction = 0.2
seed = 0
part = "test"
"""


def eth(url: str, method: str, *params):
    out = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30).json()
    assert "error" not in out, out
    return out["result"]


def cli_json(node: DaemonProcess, *args: str, timeout: float = 300.0):
    out = run_cli(*args, "--json", "--data-dir", str(node.data_dir), timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}\n{node.log_tail()}"
    return json.loads(out.stdout)


def shards(base: Path, n: int) -> list[Path]:
    """The train part of the manifest's digits split (features scaled to 0..1) in ``n`` files, one per provider."""
    from dainode.ml.datasets import load_builtin, stratified_split

    ds = load_builtin("digits")
    ds.x = (np.asarray(ds.x, np.float32) * np.float32(0.0625)).astype(np.float32)
    train, _ = stratified_split(ds, 0.2, 0)
    parts = np.array_split(np.random.default_rng(0).permutation(len(train.y)), n)
    paths = []
    for i, idx in enumerate(parts):
        p = base / f"digits-{n}-{i}.npz"
        np.savez(p, x=train.x[idx].reshape(len(idx), -1), y=train.y[idx])
        paths.append(p)
    return paths


class Launched(DaemonProcess):
    """A daemon started through a test-only launcher script (a patched `dainode`), e.g. hostile_compute.py."""

    def __init__(self, *args, launcher: str, **kw):
        super().__init__(*args, **kw)
        self.launcher = launcher

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name(self.launcher)), *self.args()]


def fund(relay: DaemonProcess, node: DaemonProcess) -> None:
    out = run_cli("chain", "fund", node.info["address"], "--eth", "10", "--data-dir", str(relay.data_dir))
    assert out.returncode == 0, out.stderr


def offer_all(providers: list[DaemonProcess], files: list[Path]) -> None:
    for n, f in zip(providers, files):
        cli_json(n, "offer", "data", "--dataset", str(f), "--price", str(DATA_PRICE))
        cli_json(n, "offer", "compute", "--price", str(COMPUTE_PRICE))


def final_status(node: DaemonProcess, task_id: int, timeout: float):
    def final():
        s = node.rpc("task_status", task_id=task_id)
        return s if s["phase"] == "abandoned" or (s["phase"] == "final" and s.get("report_dir")) else None

    return wait_for(f"task {task_id} is final", final, timeout, every=1.0)


def compute_pay(price: int, rounds: int, submitted: set[int]) -> int:
    """What the contract pays a compute provider for the rounds in `submitted` (its integer per-round split)."""
    return sum(price * (r + 1) // rounds - price * r // rounds for r in submitted)
