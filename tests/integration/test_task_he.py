"""The he mode across real daemons (1 model, 2 data-only, 2 compute-only, real anvil): logistic regression on breast_cancer.

The task completes, its accuracy is within 0.03 of the same task with privacy fl, `task verify` passes, and no block,
log line or state byte of a computation provider holds a feature vector of the data or a plaintext global model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from dainode.tasks.keys import TaskKey
from dainode.tasks.sealed import read_header
from tests.integration.daemon import DaemonProcess, run_cli
from tests.integration.test_task_privacy import blocks, opened_with, read_header_schema
from tests.integration.test_task_verify_e2e import wait_for

ETH = 10**18

MANIFEST = f"""
[task]
name = "bc-he"
rounds = 3
providers = 2
local_epochs = 2
round_window_s = 60
quorum = 2
aggregation = "fedavg"
privacy = "he"
reward_pool_wei = "{2 * ETH}"
max_data_price_wei = "{ETH // 2}"
max_compute_price_wei = "{ETH // 5}"
seed = 0

[model]
kind = "logistic"
layers = [30, 2]
lr = 0.05
batch = 1024
init = "zeros"

[data]
features = 30
label_classes = [0, 1]
min_rows = 100
min_quality = 0.5

[test]
dataset = "bc-test.npz"
"""


def standardised(base: Path) -> tuple[list[Path], Path]:
    """breast_cancer standardised with the training part's statistics (clipped to ±5: the he mode needs small
    values), 20 % test set for the model provider, the rest in two halves for the data providers."""
    from dainode.ml.datasets import load_builtin, stratified_split

    ds = load_builtin("breast_cancer")
    train, test = stratified_split(ds, 0.2, 0)
    mu, sd = train.x.mean(0), train.x.std(0)
    f = lambda a: np.clip((a - mu) / sd, -5, 5).astype(np.float32)  # noqa: E731
    np.savez(base / "bc-test.npz", x=f(test.x), y=test.y)
    out = []
    for i, idx in enumerate(np.array_split(np.random.default_rng(0).permutation(len(train.y)), 2)):
        p = base / f"bc-h{i}.npz"
        np.savez(p, x=f(train.x[idx]), y=train.y[idx])
        out.append(p)
    return out, base / "bc-test.npz"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    base = tmp_path_factory.mktemp("he")
    nodes: list[DaemonProcess] = []
    try:
        relay = DaemonProcess(base, "relay", roles=None, chain="dev")
        nodes.append(relay)
        relay.start(timeout=120)
        url = relay.rpc("chain_info")["endpoint"]
        env_ = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(relay.data_dir / "deployment.json")}
        boot = [relay.multiaddr]
        mp = DaemonProcess(base, "mp", roles=["model"], chain=url, bootstrap=boot, env=env_)
        nodes.append(mp)
        mp.start(timeout=120)
        dps = [DaemonProcess(base, f"d{i}", roles=["data"], chain=url, bootstrap=boot + [mp.multiaddr], env=env_) for i in range(2)]
        cps = [DaemonProcess(base, f"c{i}", roles=["compute"], chain=url, bootstrap=boot + [mp.multiaddr], env=env_) for i in range(2)]
        for n in [mp, *dps, *cps]:
            if n is not mp:
                nodes.append(n)
                n.start(timeout=120)
            out = run_cli("chain", "fund", n.info["address"], "--eth", "10", "--data-dir", str(relay.data_dir))
            assert out.returncode == 0, out.stderr
        files, test_file = standardised(base)
        for n, f in zip(dps, files):
            out = run_cli("offer", "data", "--dataset", str(f), "--price", str(ETH // 10), "--json", "--data-dir", str(n.data_dir), timeout=300)
            assert out.returncode == 0, out.stderr
        for n in cps:
            out = run_cli("offer", "compute", "--price", str(ETH // 20), "--json", "--data-dir", str(n.data_dir), timeout=300)
            assert out.returncode == 0, out.stderr
        for n in dps:
            wait_for(f"{n.name} indexed both compute offers",
                     lambda n=n: len([o for o in n.rpc("offer_list", kind="compute") if o["verified"]]) >= 2, 60)
        wait_for("the model provider indexed both data offers",
                 lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= 2, 60)
        yield {"nodes": nodes, "relay": relay, "mp": mp, "dps": dps, "cps": cps, "files": files, "test": test_file,
               "base": base}
    finally:
        for n in nodes:
            n.stop()


def create(net, text: str) -> int:
    manifest = net["base"] / f"task-{time.monotonic_ns()}.toml"  # next to bc-test.npz: the [test] path is relative
    manifest.write_text(text)
    out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(net["mp"].data_dir), timeout=300)
    assert out.returncode == 0, out.stderr + net["mp"].log_tail()
    return json.loads(out.stdout)["task_id"]


def trained(net, task_id: int, rounds: int = 3) -> dict:
    mp = net["mp"]
    wait_for(f"task {task_id}: {rounds} rounds", lambda: len(mp.rpc("task_status", task_id=task_id)["history"]) >= rounds,
             600, every=1.0)
    return mp.rpc("task_status", task_id=task_id)


def feature_needles(path: Path) -> list[bytes]:
    """Feature vectors of the data set as the bytes they take in memory and on the wire (float32, float64; whole rows
    and their first 4 values)."""
    x = np.load(path)["x"]
    out = []
    for i in range(0, len(x), max(1, len(x) // 12)):
        for dt in ("<f4", "<f8"):
            out += [np.asarray(x[i], dt).tobytes(), np.asarray(x[i, :4], dt).tobytes()]
    return out


def node_files(node: DaemonProcess):
    """Everything the node wrote: blocks, state database, keys, reports — and its log."""
    for p in sorted(Path(node.data_dir).rglob("*")):
        if p.is_file():
            yield p, p.read_bytes()
    yield node.log_path, Path(node.log_path).read_bytes()


def test_he_task_across_daemons(net):
    mp, relay = net["mp"], net["relay"]
    t0 = time.monotonic()
    he_id = create(net, MANIFEST)
    he = trained(net, he_id)
    took = time.monotonic() - t0
    print(f"\nhe accuracy per round {[round(h['accuracy'], 4) for h in he['history']]}; he task to its last round "
          f"{took:.1f} s")
    print("he timings per round (model provider):", json.dumps(he["timings"]))
    assert he["history"][-1]["accuracy"] > 0.85, he["history"]
    # two local epochs: each computation provider runs out of depth once per round and asks the key holder
    assert all(t["he_updates"] == 2 and t["he_refreshes"] == 2 for t in he["timings"]), he["timings"]
    # the task completes (challenge window, finalize) and anyone verifies it from chain + IPFS
    wait_for("the he task is final", lambda: relay.rpc("task_watch", task_id=he_id, wait_s=0)["done"], 400, every=1.0)
    status = mp.rpc("task_status", task_id=he_id)
    assert status["phase"] == "final" and status["privacy"] == "he", status
    assert "ciphertexts only" in status["visibility"]["compute_provider"]
    verdict = run_cli("task", "verify", str(he_id), "--data-dir", str(relay.data_dir), timeout=600)
    print(verdict.stdout)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr + relay.log_tail()
    assert f"task {he_id}: PASS" in verdict.stdout
    # what the computation providers hold: envelopes and CKKS ciphertexts, never a feature vector or a plaintext model
    key_doc = None
    for _, data in blocks(relay):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("schema") == "dainode.task-key-reveal/1" and doc.get("he_secret_context_cid"):
            key_doc = doc
    assert key_doc is not None, "the relay fetched the he task's revealed key while verifying"
    key = TaskKey.from_reveal_document(key_doc)
    models = []  # the plaintext global models of rounds 1..3 (sealed for the task key only), from the relay's blocks
    for _, data in blocks(relay):
        if read_header_schema(data) == "dainode.global-model/1" and read_header(data)[1].get("task_id") == he_id:
            plain = opened_with(key, data)
            assert plain is not None
            vec = plain[-4 * 62:]
            if np.any(np.frombuffer(vec, "<f4")):
                models.append(vec)
    assert len(models) == 3, len(models)
    needles = [n for f in net["files"] for n in feature_needles(f)]
    needles += [m[i:i + 16] for m in models for i in (0, 124, 232)]  # 4 parameters' float32 bytes (each class, bias)
    checked, schemas = 0, set()
    for cp in net["cps"]:
        for path, data in node_files(cp):
            checked += 1
            for s in needles:
                assert s not in data, f"{cp.name}'s {path} holds a feature vector or a plaintext model"
            schema = read_header_schema(data)
            schemas.add(schema)
            assert schema not in ("dainode.training-data/1", "dainode.global-model/1", "dainode.update/1"), (cp.name, path)
            plain = opened_with(key, data)
            assert plain is None or not any(s in plain for s in needles), f"{cp.name}'s {path} opens to plaintext"
    assert checked > 50 and "dainode.he-training-data/1" in schemas and "dainode.he-update/1" in schemas, (checked, schemas)
    # the scan does find such bytes where they are: the revealed test set's rows are in the relay's blocks
    probe = feature_needles(net["test"])[0]
    assert any(probe in d for _, d in blocks(relay)), "the scan finds feature vectors where they are in clear"
    # the same task with privacy fl (after the scan: in fl the computation providers do get the rows, sealed)
    t0 = time.monotonic()
    fl_id = create(net, MANIFEST.replace('privacy = "he"', 'privacy = "fl"').replace('"bc-he"', '"bc-fl"'))
    fl = trained(net, fl_id)
    print(f"fl accuracy per round {[round(h['accuracy'], 4) for h in fl['history']]}; fl task to its last round "
          f"{time.monotonic() - t0:.1f} s")
    print("fl timings per round (model provider):", json.dumps(fl["timings"]))
    assert fl["privacy"] == "fl" and "in the clear" in fl["visibility"]["compute_provider"]
    assert abs(he["history"][-1]["accuracy"] - fl["history"][-1]["accuracy"]) <= 0.03, (he["history"], fl["history"])
