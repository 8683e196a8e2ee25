"""The he roles in one process: a compute job's round with two local epochs asks the key holder for one refresh over the
negotiation handler, and the key holder opens the final update into the two-step plaintext result."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dainode.crypto import he_linear as hel
from dainode.crypto.ckks import CkksContext
from dainode.ml.datasets import load_builtin
from dainode.roles import negotiate as neg
from dainode.roles.he_compute import HeJob, round_update
from dainode.roles.he_model import HeKeyHolder
from dainode.store.cid import cid_of
from dainode.tasks.documents import UpdateBinding
from dainode.tasks.he_task import HeTaskDoc, encrypted_model_blob, to_wb, update_from_step
from dainode.tasks.keys import TaskKey
from dainode.tasks.manifest import parse_manifest
from dainode.tasks.rounds import initial_params
from tests.unit.tasks.helpers import TASK
from tests.unit.tasks.test_he_task import CP, he_doc


class Store:
    """Content by sha256 as a raw CIDv1 (what fetch() parses), in memory."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}

    async def put_bytes(self, data):
        cid = cid_of(bytes(data))
        self.blobs[str(cid)] = bytes(data)
        return cid

    async def get_bytes(self, cid, limit=None):
        return self.blobs[str(cid)]


async def test_two_epochs_one_refresh_then_the_key_holder_opens_the_update(tmp_path):
    doc = he_doc()
    doc["task"]["local_epochs"] = 2
    m = parse_manifest(doc)
    ds = load_builtin("breast_cancer")
    x = np.clip((ds.x - ds.x.mean(0)) / ds.x.std(0), -5, 5)[:120]
    y = ds.y[:120]
    store, task_key = Store(), TaskKey.generate()
    mp_ctx = SimpleNamespace(content=store, vault=SimpleNamespace(data_dir=tmp_path, _password="pw", light_kdf=True))
    run = SimpleNamespace(ctx=mp_ctx, manifest=m, key=task_key, ref=TASK, task_id=TASK.task_id,
                          matches={0: {"compute_peer_id": "cp-peer", "compute_provider": CP}})
    holder = HeKeyHolder(run, "pending-he")
    params = initial_params(m)
    holder.set_params(0, params)
    pub = CkksContext.from_bytes(hel.eval_context_bytes(holder.key_ctx))
    model0 = await store.put_bytes(encrypted_model_blob(m, 0, holder.key_ctx, params))
    asked = []

    class Negotiator:
        async def request(self, peer, msg, timeout):
            asked.append((peer, msg["type"], msg["epoch"]))
            try:
                return await holder.refresh(msg, "cp-peer")
            except neg.Refused as exc:
                return neg.refusal(msg["type"], exc.reason, exc.detail)

    task = SimpleNamespace(manifest=m, public_key=task_key.public, task_id=TASK.task_id)
    job = SimpleNamespace(task=task, ctx=SimpleNamespace(content=store), owner=SimpleNamespace(negotiator=Negotiator()),
                          task_id=TASK.task_id, match_id=0, published={})
    he = HeJob(job, HeTaskDoc("unused", str(model0), pub.fingerprint.hex(), 0, "mp-peer"), pub,
               hel.encrypt_data(pub, x, y, "logistic"))
    binding = UpdateBinding(TASK, 0, 0, CP)
    sealed, stats = await round_update(he, 0, binding)
    assert asked == [("mp-peer", "he_refresh", 0)] and stats["he_refreshes"] == 1
    assert holder.round_sizes(0)["he_refreshes"] == 1
    up = await holder.open(sealed, binding, 0, None)
    x1 = np.hstack([x, np.ones((len(x), 1))])
    wb = to_wb(m.model_spec, params)
    for _ in range(2):
        z = x1 @ wb
        wb = wb - 2 * m.model.lr * x1.T @ (0.5 + 0.197 * z - 0.004 * z**3 - y) / len(y)
    want = update_from_step(m.model_spec, wb - to_wb(m.model_spec, params))
    assert np.max(np.abs(up.update - want)) < 2e-3 * max(1.0, np.max(np.abs(want)))
    # the key holder refreshes only the match's compute peer, and each epoch once
    req = {"match_id": 0, "round": 0, "epoch": 0, "request_cid": "x"}
    with pytest.raises(neg.Refused, match="busy"):
        await holder.refresh(req, "cp-peer")
    with pytest.raises(neg.Refused, match="computes no match"):
        await holder.refresh(req, "another-peer")
