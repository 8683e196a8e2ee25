"""Split layout: 2 data-only + 2 compute-only nodes. The raw training rows of a data provider appear in no block of any
node's blockstore but its own and its computation provider's: not in clear, and not inside any sealed document that
the task key (revealed to everyone) opens. Every block of every node is checked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from dainode.crypto import envelope as env
from dainode.errors import DainodeError
from dainode.localnet import DaemonProcess
from dainode.localnet.network import Testnet, layout
from dainode.tasks.keys import TaskKey
from dainode.tasks.sealed import read_header
from tests.integration.daemon import run_cli
from tests.integration.test_task_verify_e2e import MANIFEST, wait_for

ETH = 10**18


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    tn = Testnet(tmp_path_factory.mktemp("privacy"), fund_wei=10 * ETH)
    try:
        tn.up(layout("split", 5))  # model, data1, data2, compute1, compute2, relay
        tn.offer_all(data_price=ETH // 10, compute_price=ETH // 20)
        dps = tn.by_role("data")
        yield {"nodes": list(tn.nodes.values()), "relay": tn.relay, "mp": tn.model, "dps": dps, "cps": tn.by_role("compute"),
               "files": [tn.shards[n.name] for n in dps], "base": tn.root}
    finally:
        tn.down()


def blocks(node: DaemonProcess):
    root = node.data_dir / "blocks"
    for p in root.rglob("*.data"):
        if ".tmp" not in p.parts:
            yield p, p.read_bytes()


def needles(path: Path) -> list[bytes]:
    """The raw feature bytes of a few rows, as float32 and float64 (the forms the rows take in memory and on the wire)."""
    x = np.load(path)["x"]
    rows = [x[i] for i in (0, len(x) // 2, len(x) - 1)]
    return [np.asarray(r, "<f4").tobytes() for r in rows] + [np.asarray(r, "<f8").tobytes() for r in rows]


def opened_with(key: TaskKey, data: bytes) -> bytes | None:
    try:
        schema, binding, sealed = read_header(data)
        return env.decrypt(sealed, key.private, env.associated_data(schema, **binding))
    except (DainodeError, ValueError, TypeError):
        return None


def test_raw_rows_only_on_the_data_provider_and_its_compute_provider(net, tmp_path):
    mp, relay = net["mp"], net["relay"]
    manifest = tmp_path / "task.toml"
    manifest.write_text(MANIFEST.replace("rounds = 3", "rounds = 2"))
    out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(mp.data_dir), timeout=300)
    assert out.returncode == 0, out.stderr + mp.log_tail()
    task_id = json.loads(out.stdout)["task_id"]
    wait_for("the reveal", lambda: relay.rpc("task_watch", task_id=task_id, wait_s=0)["revealed"], 300, every=1.0)
    status = mp.rpc("task_status", task_id=task_id)
    by_addr = {n.info["address"].lower(): n for n in net["nodes"]}
    pairs = {by_addr[m["data_provider"].lower()].name: by_addr[m["compute_provider"].lower()].name for m in status["matches"]}
    # the data left each data provider for a compute-only node (which one is the data provider's choice)
    assert sorted(pairs) == ["data1", "data2"] and set(pairs.values()) <= {"compute1", "compute2"}, pairs
    verdict = run_cli("task", "verify", str(task_id), "--data-dir", str(relay.data_dir), timeout=600)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    # the task key is public now: anything sealed for it is readable by anyone, so it counts as clear
    key_doc = None
    for _, data in blocks(relay):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("schema") == "dainode.task-key-reveal/1":
            key_doc = doc
    assert key_doc is not None, "the relay fetched the revealed key while verifying"
    key = TaskKey.from_reveal_document(key_doc)
    time.sleep(1)
    checked = 0
    for dp, f in zip(net["dps"], net["files"]):
        allowed = {dp.name, pairs[dp.name]}
        secret = needles(f)
        for node in net["nodes"]:
            if node.name in allowed:
                continue
            for path, data in blocks(node):
                checked += 1
                plain = opened_with(key, data)
                for s in secret:
                    assert s not in data, f"{node.name} holds {dp.name}'s raw rows in clear in {path}"
                    assert plain is None or s not in plain, f"{node.name}'s block {path} opens to {dp.name}'s raw rows"
    assert checked > 50, checked
    # and the scan can find rows: the revealed test set's rows (same dataset, same scaling) are in the relay's blocks
    from dainode.ml.datasets import load_builtin, stratified_split

    ds = load_builtin("digits")
    ds.x = (np.asarray(ds.x, np.float32) * np.float32(0.0625)).astype(np.float32)
    _, test = stratified_split(ds, 0.2, 0)
    probe = np.asarray(test.x[0], "<f4").reshape(-1).tobytes()
    assert any(probe in d for _, d in blocks(relay)), "the scan finds raw rows where they are in clear"
    # the data provider's computation provider does hold the rows it trains on (sealed for it)
    cp = next(n for n in net["nodes"] if n.name == pairs["data1"])
    assert any(read_header_schema(d) == "dainode.training-data/1" for _, d in blocks(cp))


def read_header_schema(data: bytes) -> str | None:
    try:
        return read_header(data)[0]
    except DainodeError:
        return None
