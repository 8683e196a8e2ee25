"""A small in-process task (4 providers, 3 rounds, MLP on digits) run through dainode.tasks, for the tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from dainode.ml.datasets import load_builtin
from dainode.ml.preprocess import shard_iid
from dainode.tasks.documents import ModelBinding, UpdateBinding, open_update, seal_global_model, seal_update
from dainode.tasks.keys import TaskKey
from dainode.tasks.manifest import Manifest, parse_manifest
from dainode.tasks.rounds import aggregate_round, compute_update, initial_params
from dainode.tasks.sealed import TaskRef
from dainode.tasks.split import make_split
from dainode.tasks.testset import encode_test_set, load_test_set, new_salt, test_set_cid, test_set_commitment
from dainode.tasks.verify import PostedRound, PostedUpdate, TaskEvidence

TASK = TaskRef(31337, "0x" + "5f" * 20, 7)
MODEL_PROVIDER = "0x" + "a0" * 20
MATCH_IDS = [0, 1, 2, 3]
COMPUTE = {m: "0x" + f"{0xc0 + m:02x}" * 20 for m in MATCH_IDS}
BONUS_WEI = 3_000_000_000_000_000_001  # odd on purpose: the integer split must still be exact


def manifest_doc(**task_overrides) -> dict:
    doc = {
        "task": {"name": "digits-small", "rounds": 3, "providers": 4, "local_epochs": 2, "round_window_s": 30,
                 "quorum": 3, "aggregation": "fedavg", "privacy": "fl", "reward_pool_wei": "4000000000000000000",
                 "max_data_price_wei": "100000000000000000", "max_compute_price_wei": "100000000000000000",
                 "seed": 0, "aggregation_params": {}},
        "model": {"kind": "mlp", "layers": [64, 16, 10], "lr": 0.5, "batch": 32},
        "data": {"features": 64, "label_classes": list(range(10)), "min_rows": 50, "min_quality": 0.5},
        "test": {"dataset": "digits", "feature_scale": 0.0625, "split": {"fraction": 0.2, "seed": 0}},
    }
    doc["task"].update(task_overrides)
    return copy.deepcopy(doc)


def small_manifest(**task_overrides) -> Manifest:
    return parse_manifest(manifest_doc(**task_overrides))


def provider_shards(rows_each: int = 100, seed: int = 1) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    ds = load_builtin("digits")
    x = (ds.x / 16.0).astype(np.float32)
    shards = shard_iid(len(ds), 4, seed=seed)
    return {m: (x[s[:rows_each]], ds.y[s[:rows_each]]) for m, s in zip(MATCH_IDS, shards)}


@dataclass
class RunResult:
    evidence: TaskEvidence
    key: TaskKey
    outcomes: list
    report: object


def run_task(manifest: Manifest, shards, *, garbage: dict | None = None) -> RunResult:
    """Seal/open/aggregate every round, make the split, and collect what a verifier would fetch.

    ``garbage``: {(round, match_id): "copy" | "replay"} makes that compute provider misbehave.
    """
    key = TaskKey.generate()
    test_ds = load_test_set(manifest)
    test = (test_ds.x, test_ds.y)
    test_bytes = encode_test_set(*test)
    salt = new_salt()
    tcid = test_set_cid(test_bytes)
    commitment = test_set_commitment(tcid, salt)
    compute_keys = {m: TaskKey.generate() for m in MATCH_IDS}  # stand-ins for the compute providers' envelope keys
    recipients = [key.public.key] + [k.public.key for k in compute_keys.values()]
    w = initial_params(manifest)
    posted_rounds, outcomes, history_blobs = [], [], {}
    garbage = garbage or {}
    prev_blobs: dict[int, bytes] = {}
    for t in range(manifest.task.rounds):
        model_blob = seal_global_model(ModelBinding(TASK, t, MODEL_PROVIDER), w, recipients)
        posted, opened, excluded, cids = [], [], [], {}
        blobs_now = {}
        for m in MATCH_IDS:
            x, y = shards[m]
            res = compute_update(manifest, w, x, y, round=t, match_id=m)
            blob = seal_update(UpdateBinding(TASK, m, t, COMPUTE[m]), res.update, res.n_examples, [key.public.key],
                               train_loss=res.mean_loss)
            what = garbage.get((t, m))
            if what == "copy":  # submit another provider's envelope of this round as one's own
                blob = blobs_now[MATCH_IDS[0]]
            elif what == "replay":  # resubmit one's own envelope of the previous round
                blob = prev_blobs[m]
            blobs_now[m] = blob
            cid = f"bafy-update-{t}-{m}"
            posted.append(PostedUpdate(m, t, COMPUTE[m], cid, blob))
            try:
                opened.append(open_update(blob, key.private, UpdateBinding(TASK, m, t, COMPUTE[m]), manifest.model_spec))
                cids[m] = cid
            except Exception as exc:  # DocumentRejected: the model provider records the reason
                excluded.append({"match_id": m, "cid": cid, "reason": exc.reason, "detail": exc.detail})
        prev_blobs = blobs_now
        out = aggregate_round(manifest, t, w, opened, test)
        outcomes.append(out)
        posted_rounds.append(PostedRound(t, model_blob, posted, out.result(cids, excluded)))
        w = out.params
    final_blob = seal_global_model(ModelBinding(TASK, manifest.task.rounds, MODEL_PROVIDER), w, recipients)
    report = make_split(manifest, TASK, BONUS_WEI, outcomes, MATCH_IDS, test)
    ev = TaskEvidence(manifest=Manifest.from_bytes(manifest.to_bytes()), task=TASK, model_provider=MODEL_PROVIDER,
                      task_public_key=key.public, revealed_key=key.reveal_bytes(), test_set=test_bytes,
                      test_set_cid=str(tcid), salt=salt, commitment=commitment, match_ids=list(MATCH_IDS),
                      rounds=posted_rounds, final_model=final_blob, bonus_wei=BONUS_WEI,
                      posted_bonuses=report.bonuses, split_report=report,
                      match_rows={m: len(shards[m][1]) for m in MATCH_IDS})
    return RunResult(ev, key, outcomes, report)
