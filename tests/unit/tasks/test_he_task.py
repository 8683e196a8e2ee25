"""The he mode's documents in one process: manifest rules, data → encrypted gradient → the key holder's update, as fl would make it."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.crypto import he_linear as hel
from dainode.crypto.ckks import CkksContext
from dainode.errors import ConfigError, DocumentRejected, TaskError
from dainode.ml.datasets import load_builtin
from dainode.tasks.documents import DataBinding, UpdateBinding
from dainode.tasks.he_task import (encrypted_model_blob, open_he_data, open_he_update, seal_he_data, seal_he_update,
                                   to_wb, unpack_he_model, update_from_step)
from dainode.tasks.keys import TaskKey
from dainode.tasks.manifest import parse_manifest
from dainode.tasks.rounds import initial_params
from tests.unit.tasks.helpers import TASK, manifest_doc

CP = "0x" + "c1" * 20
DP = "0x" + "d1" * 20


def he_doc(**model) -> dict:
    doc = manifest_doc(privacy="he", local_epochs=1, providers=2, quorum=2)
    doc["model"] = {"kind": "logistic", "layers": [30, 2], "lr": 0.05, "batch": 1024, "init": "zeros", **model}
    doc["data"] = {"features": 30, "label_classes": [0, 1], "min_rows": 50, "min_quality": 0.5}
    doc["test"] = {"dataset": "breast_cancer"}
    return doc


@pytest.mark.parametrize("path, value, says", [
    ("model.kind", "mlp", "privacy 'he' trains logistic"),
    ("task.clip_norm", 1.0, "cannot clip"),
    ("task.aggregation", "median", "linear rule"),
])
def test_he_manifest_rules(path, value, says):
    doc = he_doc()
    table, key = path.split(".")
    doc[table][key] = value
    if value == "mlp":
        doc["model"]["layers"] = [30, 8, 2]
    with pytest.raises(ConfigError, match=says):
        parse_manifest(doc)


def test_he_fedprox_mu_needs_one_epoch():
    doc = he_doc()
    doc["task"].update(aggregation="fedprox", aggregation_params={"mu": 0.1}, local_epochs=2)
    with pytest.raises(ConfigError, match="mu is not applied"):
        parse_manifest(doc)
    doc["task"]["local_epochs"] = 1  # one full-batch step from the global model: the proximal term is zero
    assert parse_manifest(doc).task.aggregation == "fedprox"


def test_zero_init_and_binary_form():
    m = parse_manifest(he_doc())
    assert not initial_params(m).any() and m.task.privacy == "he"
    assert parse_manifest(manifest_doc()).model.init is None  # fl manifests keep the seeded init (and their CIDs)
    step = np.arange(31, dtype=np.float64) / 100
    assert np.allclose(to_wb(m.model_spec, update_from_step(m.model_spec, step)), step, atol=1e-7)


def test_he_round_in_one_process_matches_the_plaintext_step():
    m = parse_manifest(he_doc())
    spec = m.model_spec
    ds = load_builtin("breast_cancer")
    x = (ds.x - ds.x.mean(0)) / ds.x.std(0)
    x, y = np.clip(x, -5, 5)[:120], ds.y[:120]
    key_ctx = hel.create_he_context()
    pub = CkksContext.from_bytes(hel.eval_context_bytes(key_ctx))
    task_key, cp_key = TaskKey.generate(), TaskKey.generate()
    # data provider: encrypted under the public context, sealed for its computation provider
    dbind = DataBinding(TASK, 0, DP)
    blob = seal_he_data(dbind, hel.encrypt_data(pub, x, y, "logistic"), [cp_key.public.key])
    assert x[0].astype("<f8").tobytes() not in blob and x[0].astype("<f4").tobytes() not in blob
    data = open_he_data(blob, cp_key.private, dbind, pub, spec)
    with pytest.raises(DocumentRejected) as bad:
        open_he_data(blob, cp_key.private, DataBinding(TASK, 1, DP), pub, spec)
    assert bad.value.reason == "wrong_match"
    # key holder: a nonzero global model, encrypted; computation provider: one masked gradient
    params = update_from_step(spec, np.linspace(-0.1, 0.1, 31))
    model = unpack_he_model(encrypted_model_blob(m, 1, key_ctx, params), 1, pub, 31)
    with pytest.raises(TaskError, match="expected round 2"):
        unpack_he_model(encrypted_model_blob(m, 1, key_ctx, params), 2, pub, 31)
    grads = hel.grads_to_bytes(hel.masked_gradient(model, data, "logistic"))
    ubind = UpdateBinding(TASK, 0, 1, CP)
    sealed = seal_he_update(ubind, [grads], len(y), [task_key.public.key])
    up = open_he_update(sealed, task_key.private, ubind, m, key_ctx, params, max_examples=len(y))
    again = open_he_update(sealed, task_key.private, ubind, m, key_ctx, params, max_examples=len(y))
    assert up.update.tobytes() == again.update.tobytes() and up.n_examples == len(y)  # verify recomputes bit for bit
    # the fl mode's full-batch softmax step with the cubic sigmoid, in float64
    wb = to_wb(spec, params)
    x1 = np.hstack([x, np.ones((len(x), 1))])
    z = x1 @ wb
    want = update_from_step(spec, -2 * m.model.lr * x1.T @ (0.5 + 0.197 * z - 0.004 * z**3 - y) / len(y))
    assert np.max(np.abs(up.update - want)) < 1e-3 * max(1.0, np.max(np.abs(want)))
    with pytest.raises(DocumentRejected) as bad:
        open_he_update(sealed, task_key.private, ubind, m, key_ctx, params, max_examples=len(y) - 1)
    assert bad.value.reason == "bad_examples"
    short = seal_he_update(ubind, [hel.grads_to_bytes(hel.grads_from_bytes(pub, grads, 31)[:30])], len(y),
                           [task_key.public.key])
    with pytest.raises(DocumentRejected) as bad:
        open_he_update(short, task_key.private, ubind, m, key_ctx, params)
    assert bad.value.reason == "wrong_shape"


def test_linear_kind_in_fl_and_he():
    doc = he_doc(kind="linear", layers=[30, 1])
    m = parse_manifest(doc)
    assert m.model_spec.kind == "linreg" and m.model_spec.n_classes == 2
    with pytest.raises(ConfigError, match=r"exactly two layers: \[features, 1\]"):
        parse_manifest(he_doc(kind="linear", layers=[30, 2]))
    bad = he_doc(kind="linear", layers=[30, 1])
    bad["data"]["label_classes"] = [1, 2]
    with pytest.raises(ConfigError, match="use \\[0, 1\\]"):
        parse_manifest(bad)
    ds = load_builtin("breast_cancer")
    x = np.clip((ds.x - ds.x.mean(0)) / ds.x.std(0), -5, 5).astype(np.float32)
    y = ds.y
    # fl: the JAX trainer minimises the squared error; the 0.5 threshold classifies
    from dainode.tasks.rounds import compute_update, evaluate_params

    fl_doc = he_doc(kind="linear", layers=[30, 1], lr=0.01)
    fl_doc["task"]["privacy"], fl_doc["task"]["local_epochs"] = "fl", 20
    fl_doc["model"]["batch"] = 32
    fl = parse_manifest(fl_doc)
    out = compute_update(fl, initial_params(fl), x[:400], y[:400], round=0, match_id=0)
    got = evaluate_params(fl, out.params, (x[400:], y[400:]))
    assert got["accuracy"] > 0.9 and got["loss"] < evaluate_params(fl, initial_params(fl), (x[400:], y[400:]))["loss"]
    # he: the key holder's step equals the float64 least-squares gradient step
    key_ctx = hel.create_he_context()
    pub = CkksContext.from_bytes(hel.eval_context_bytes(key_ctx))
    params = update_from_step(m.model_spec, np.linspace(-0.05, 0.05, 31))
    data = hel.encrypt_data(pub, x[:100], y[:100], "linear")
    model = unpack_he_model(encrypted_model_blob(m, 0, key_ctx, params), 0, pub, 31)
    task_key = TaskKey.generate()
    ubind = UpdateBinding(TASK, 0, 0, CP)
    sealed = seal_he_update(ubind, [hel.grads_to_bytes(hel.masked_gradient(model, data, "linear"))], 100,
                            [task_key.public.key])
    up = open_he_update(sealed, task_key.private, ubind, m, key_ctx, params)
    x1 = np.hstack([x[:100], np.ones((100, 1))]).astype(np.float64)
    want = update_from_step(m.model_spec, -m.model.lr * x1.T @ (x1 @ to_wb(m.model_spec, params) - y[:100]) / 100)
    assert np.max(np.abs(up.update - want)) < 1e-3 * max(1.0, np.max(np.abs(want)))


def test_two_local_epochs_with_a_refresh_equal_two_plaintext_steps():
    from dainode.tasks.he_task import HE_REFRESH_SCHEMA, encrypted_wb_blob, refreshed_wb

    doc = he_doc()
    doc["task"]["local_epochs"] = 2
    m = parse_manifest(doc)
    spec = m.model_spec
    ds = load_builtin("breast_cancer")
    x = np.clip((ds.x - ds.x.mean(0)) / ds.x.std(0), -5, 5)[:150]
    y = ds.y[:150]
    key_ctx = hel.create_he_context()
    pub = CkksContext.from_bytes(hel.eval_context_bytes(key_ctx))
    task_key = TaskKey.generate()
    data = hel.encrypt_data(pub, x, y, "logistic")
    params = initial_params(m)
    ubind = UpdateBinding(TASK, 0, 2, CP)
    model = unpack_he_model(encrypted_model_blob(m, 2, key_ctx, params), 2, pub, 31)
    grads = [hel.grads_to_bytes(hel.masked_gradient(model, data, "logistic"))]
    req = seal_he_update(ubind, grads, len(y), [task_key.public.key], schema=HE_REFRESH_SCHEMA)
    with pytest.raises(DocumentRejected):  # a refresh request is no update, and the other way round
        open_he_update(req, task_key.private, ubind, m, key_ctx, params)
    wb1 = refreshed_wb(req, task_key.private, ubind, m, key_ctx, params, 0)
    with pytest.raises(DocumentRejected, match="no refresh after epoch 1"):
        refreshed_wb(req, task_key.private, ubind, m, key_ctx, params, 1)
    model = unpack_he_model(encrypted_wb_blob(2, key_ctx, wb1, epoch=1), 2, pub, 31, epoch=1)
    grads.append(hel.grads_to_bytes(hel.masked_gradient(model, data, "logistic")))
    up = open_he_update(seal_he_update(ubind, grads, len(y), [task_key.public.key]), task_key.private, ubind, m,
                        key_ctx, params)
    x1 = np.hstack([x, np.ones((len(x), 1))])
    wb = to_wb(spec, params)
    for _ in range(2):
        z = x1 @ wb
        wb = wb - 2 * m.model.lr * x1.T @ (0.5 + 0.197 * z - 0.004 * z**3 - y) / len(y)
    want = update_from_step(spec, wb - to_wb(spec, params))
    assert np.max(np.abs(up.update - want)) < 2e-3 * max(1.0, np.max(np.abs(want)))
