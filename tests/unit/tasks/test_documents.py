"""Sealed updates and global models: round trip, and each rejection reason that becomes on-chain evidence."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from dainode.errors import DocumentRejected, TaskError
from dainode.ml.spec import ModelSpec
from dainode.tasks import sealed
from dainode.tasks.documents import (UPDATE_SCHEMA, ModelBinding, RoundResult, UpdateBinding, open_global_model,
                                     open_update, params_digest, seal_global_model, seal_update)
from dainode.tasks.keys import TaskKey
from dainode.tasks.sealed import TaskRef

SPEC = ModelSpec("mlp", (4, 3, 2))
TASK = TaskRef(31337, "0x" + "AB" * 20, 1)
SENDER = "0x" + "cd" * 20


@pytest.fixture(scope="module")
def key():
    return TaskKey.generate()


@pytest.fixture(scope="module")
def binding():
    return UpdateBinding(TASK, match_id=2, round=3, sender=SENDER)


@pytest.fixture(scope="module")
def update():
    return np.linspace(-1, 1, SPEC.n_params).astype(np.float32)


@pytest.fixture(scope="module")
def blob(key, binding, update):
    return seal_update(binding, update, 40, [key.public.key], train_loss=0.5)


def _reason(fn) -> str:
    with pytest.raises(DocumentRejected) as exc:
        fn()
    assert exc.value.detail and str(exc.value).startswith(exc.value.reason)
    return exc.value.reason


def test_update_round_trip(key, binding, update, blob):
    got = open_update(blob, key.private, binding, SPEC)
    assert np.array_equal(got.update, update) and got.n_examples == 40 and got.train_loss == 0.5
    assert got.match_id == 2 and got.binding == binding
    assert TASK.task_address == "0x" + "ab" * 20  # addresses compare normalised
    assert update.tobytes() not in blob  # encrypted


@pytest.mark.parametrize("change,reason", [
    (dict(task=TaskRef(1, "0x" + "ab" * 20, 1)), "wrong_task"),  # another chain
    (dict(task=TaskRef(31337, "0x" + "ef" * 20, 1)), "wrong_task"),  # another contract
    (dict(task=TaskRef(31337, "0x" + "ab" * 20, 2)), "wrong_task"),  # another task
    (dict(round=4), "wrong_round"),  # replayed into the next round
    (dict(sender="0x" + "11" * 20), "wrong_sender"),  # copied by another provider
    (dict(match_id=5), "wrong_match"),
])
def test_update_bound_elsewhere_is_rejected(key, binding, blob, change, reason):
    assert _reason(lambda: open_update(blob, key.private, dataclasses.replace(binding, **change), SPEC)) == reason


def test_edited_header_does_not_help(key, binding, blob):
    """A copier who rewrites the clear binding to its own match and address fails authentication."""
    schema, found, env_bytes = sealed.read_header(blob)
    forged = dict(found, sender="0x" + "11" * 20, match_id=5)
    header = b'{"binding":' + sealed.canonical_json(forged) + b',"schema":"' + schema.encode() + b'"}'
    blob2 = struct.pack(">4sBI", b"DAIS", 1, len(header)) + header + env_bytes
    mine = dataclasses.replace(binding, sender="0x" + "11" * 20, match_id=5)
    assert _reason(lambda: open_update(blob2, key.private, mine, SPEC)) == "undecryptable"


def test_undecryptable_and_malformed(key, binding, blob):
    assert _reason(lambda: open_update(blob, TaskKey.generate().private, binding, SPEC)) == "undecryptable"
    damaged = bytearray(blob)
    damaged[-3] ^= 1
    assert _reason(lambda: open_update(bytes(damaged), key.private, binding, SPEC)) == "undecryptable"
    assert _reason(lambda: open_update(blob[:-20], key.private, binding, SPEC)) == "undecryptable"
    assert _reason(lambda: open_update(b"garbage", key.private, binding, SPEC)) == "malformed"
    assert _reason(lambda: open_update(b"DAIS\x01\xff\xff\xff\xff", key.private, binding, SPEC)) == "malformed"
    model = seal_global_model(ModelBinding(TASK, 3, SENDER), np.zeros(SPEC.n_params), [key.public.key])
    assert _reason(lambda: open_update(model, key.private, binding, SPEC)) == "malformed"  # a model, not an update


def test_wrong_shape_non_finite_and_bad_examples(key, binding, update, blob):
    other = ModelSpec("mlp", (4, 5, 2))
    assert _reason(lambda: open_update(blob, key.private, binding, other)) == "wrong_shape"
    assert _reason(lambda: open_update(blob, key.private, binding, SPEC, max_examples=39)) == "bad_examples"
    assert open_update(blob, key.private, binding, SPEC, max_examples=40).n_examples == 40
    # a sender that bypasses seal_update's checks: NaN inside, or zero examples
    bad = update.copy()
    bad[3] = np.nan
    head = sealed.canonical_json({"n_examples": 1, "n_params": SPEC.n_params, "dtype": "<f4"})
    payload = struct.pack(">I", len(head)) + head + bad.astype("<f4").tobytes()
    nan_blob = sealed.pack(UPDATE_SCHEMA, binding.fields(), [key.public.key], payload)
    with pytest.raises(DocumentRejected, match="non_finite.*first at index 3"):
        open_update(nan_blob, key.private, binding, SPEC)
    head = sealed.canonical_json({"n_examples": 0, "n_params": SPEC.n_params, "dtype": "<f4"})
    zero = sealed.pack(UPDATE_SCHEMA, binding.fields(), [key.public.key],
                       struct.pack(">I", len(head)) + head + update.astype("<f4").tobytes())
    assert _reason(lambda: open_update(zero, key.private, binding, SPEC)) == "bad_examples"
    with pytest.raises(TaskError, match="NaN"):
        seal_update(binding, bad, 1, [key.public.key])


def test_global_model_for_compute_providers_and_task_key(key, update):
    compute = TaskKey.generate()  # stands in for a compute provider's envelope key
    mb = ModelBinding(TASK, 0, SENDER)
    blob = seal_global_model(mb, update, [compute.public.key, key.public.key])
    for k in (compute, key):
        assert np.array_equal(open_global_model(blob, k.private, mb, SPEC), update)
    assert _reason(lambda: open_global_model(blob, key.private, dataclasses.replace(mb, round=1), SPEC)) == "wrong_round"
    assert _reason(lambda: open_global_model(blob, TaskKey.generate().private, mb, SPEC)) == "undecryptable"


def test_round_result_document(update):
    res = RoundResult(round=1, included=({"match_id": 0, "cid": "bafy0", "n_examples": 10},),
                      excluded=({"match_id": 1, "cid": "bafy1", "reason": "wrong_sender", "detail": "copied"},),
                      rule={"name": "fedavg"}, params_digest=params_digest(update), accuracy=0.5, loss=1.25,
                      n_test=360, model_cid="bafymodel")
    again = RoundResult.from_bytes(res.to_bytes())
    assert again == res and again.included_ids == [0]
    assert res.to_document()["schema"] == "dainode.round-result/1"
    doc = res.to_document()
    doc["excluded"][0]["reason"] = "disliked"
    with pytest.raises(DocumentRejected, match="unknown exclusion reason"):
        RoundResult.from_document(doc)
    with pytest.raises(DocumentRejected, match="malformed"):
        RoundResult.from_document({"schema": "dainode.round-result/1"})
    assert params_digest(update) != params_digest(update + 1e-7)


def test_training_data_for_the_compute_provider_only(key):
    from dainode.tasks.documents import DataBinding, open_training_data, seal_training_data

    compute = TaskKey.generate()
    db = DataBinding(TASK, match_id=2, sender=SENDER)
    x = np.arange(20, dtype=np.float32).reshape(5, 4)
    y = np.array([0, 1, 0, 1, 1])
    blob = seal_training_data(db, x, y, [compute.public.key])
    gx, gy = open_training_data(blob, compute.private, db, SPEC)
    assert np.array_equal(gx, x) and np.array_equal(gy, y)
    assert x.tobytes() not in blob
    assert _reason(lambda: open_training_data(blob, key.private, db, SPEC)) == "undecryptable"  # not the task key
    assert _reason(lambda: open_training_data(blob, compute.private, dataclasses.replace(db, match_id=3), SPEC)) == "wrong_match"
    assert _reason(lambda: open_training_data(blob, compute.private, db, ModelSpec("mlp", (5, 3, 2)))) == "wrong_shape"
    bad_labels = seal_training_data(db, x, y + 1, [compute.public.key])
    assert _reason(lambda: open_training_data(bad_labels, compute.private, db, SPEC)) == "wrong_shape"
