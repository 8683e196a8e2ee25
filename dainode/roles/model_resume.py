"""Resuming the model provider's open tasks after a restart: the state's records, with the chain's view as the truth."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import trio

from dainode.errors import DainodeError, TaskError
from dainode.state import MatchRecord, RoundRecord

log = logging.getLogger("dainode.tasks")

FINISHED = ("final", "abandoned")  # task phases nothing resumes
TEST_SET_FILE = "test_set.secret"


# --- what to resume -----------------------------------------------------------------------

def resumable(state) -> list:
    """The model role's task records whose phase is not final or abandoned, by task id."""
    return sorted((r for r in state.list_tasks("model") if r.status not in FINISHED), key=lambda r: int(r.task_id))


def create_step(state, task_id: int, doc: dict):
    """The task_create step that opened `task_id` (its intent holds the manifest and base_dir, its effect the salt)."""
    if doc.get("create_step"):
        step = state.get_step(doc["create_step"])
        if step is not None:
            return step
    for step in state.list_steps("task_create"):
        if step.effect.get("task_id") == int(task_id):
            return step
    raise TaskError(f"task {task_id}: the state has no task_create step for it, so its manifest, salt and test set "
                    "cannot be restored; the task cannot resume on this node")


# --- the test set: secret until the reveal, so kept locally, never in the blockstore early -------

def test_set_path(data_dir, task_id: int) -> Path:
    return Path(data_dir) / "tasks" / "private" / f"{int(task_id)}-{TEST_SET_FILE}"


def save_test_set(data_dir, task_id: int, test_bytes: bytes) -> Path:
    """Write the encoded test set (0600, write-fsync-rename) so a restart finds exactly the committed bytes."""
    from dainode.fsutil import atomic_write, ensure_private_dir

    path = test_set_path(data_dir, task_id)
    ensure_private_dir(path.parent)
    if not path.exists() or path.read_bytes() != test_bytes:
        atomic_write(path, test_bytes, mode=0o600)
    return path


async def load_test_set(ctx, manifest, task_id: int, base_dir: str | None, test_cid: str) -> bytes:
    """The committed test set's bytes: the local copy, else the manifest's spec reloaded; checked against its CID."""
    from dainode.tasks.testset import encode_test_set
    from dainode.tasks.testset import load_test_set as load_spec

    path = test_set_path(ctx.data_dir, task_id)
    candidates = []
    if path.exists():
        candidates.append(("the local copy " + str(path), lambda: path.read_bytes()))

    def from_spec() -> bytes:
        ds = load_spec(manifest, base_dir=base_dir)
        return encode_test_set(ds.x, ds.y)

    candidates.append(("the manifest's [test] spec", from_spec))
    tried = []
    for what, load in candidates:
        try:
            data = await trio.to_thread.run_sync(load)
        except (OSError, ValueError, DainodeError) as exc:
            tried.append(f"{what}: {exc}")
            continue
        if str(await ctx.content.hash_bytes(data)) == test_cid:
            return data
        tried.append(f"{what} hashes to another CID")
    raise TaskError(f"task {task_id}: no test set matching the commitment ({test_cid}) found: {'; '.join(tried)}; "
                    "restore the test set file the task was created with")


# --- matches ------------------------------------------------------------------------------

def match_doc(m: dict) -> dict:
    """A match as the state stores it (amounts as decimal strings, no key objects)."""
    return {k: (str(v) if k.endswith("_wei") else v) for k, v in m.items() if k != "cp_key"}


def load_matches(state, task_id: int) -> dict[int, dict]:
    """The matches recorded in the state, by match id, amounts back to ints."""
    out = {}
    for rec in state.list_matches(str(task_id)):
        d = {k: (int(v) if k.endswith("_wei") else v) for k, v in rec.doc.items()}
        out[int(d["match_id"])] = d
    return out


def adopt_match(state, task_id: int, ev, step) -> dict | None:
    """A MatchRecorded the chain has but the state lost (crash between the tx and the write), rebuilt from the
    recordMatch step's intent (which names the compute provider's key and peer); None if the step does not know."""
    intent = step.intent if step is not None else {}
    if not intent.get("cp_key_cid"):
        return None
    m = {"match_id": int(ev.args["matchId"]), "data_provider": ev.args["dataProvider"],
         "compute_provider": ev.args["computeProvider"], "data_offer_id": int(ev.args["dataOfferId"]),
         "compute_offer_id": int(ev.args["computeOfferId"]), "data_price_wei": int(ev.args["dataPrice"]),
         "compute_price_wei": int(ev.args["computePrice"]), "cp_key_cid": intent["cp_key_cid"],
         "compute_peer_id": intent.get("compute_peer_id", ""), "rows": intent.get("rows")}
    state.put_match(MatchRecord(str(task_id), m["data_provider"], "matched", match_doc(m)))
    return m


# --- rounds -------------------------------------------------------------------------------

def adopt_round(state, task_id: int, t: int, result_cid: str, result) -> bool:
    """Record round `t` as published if the state missed it (the chain has it). True when it was missing."""
    rec = state.get_round(str(task_id), t)
    if rec is not None and rec.doc.get("result_cid") == result_cid:
        return False
    if rec is not None:
        log.warning("task %d round %d: the state names result %s, the chain %s; the chain's counts", task_id, t,
                    rec.doc.get("result_cid"), result_cid)
    state.put_round(RoundRecord(str(task_id), t, "published", {
        "result_cid": result_cid, "model_cid": result.model_cid, "accuracy": result.accuracy, "loss": result.loss,
        "round": t, "adopted": True}))
    return True


async def settle_journaled(run, what: str) -> bool:
    """A step's transaction signed (and maybe sent) before the crash: get it mined or learn it never will be.
    True when it is on chain now."""
    step = run.ctx.state.get_step(run.sid(what))
    if step is None or step.finished:
        return False
    tx = next((v for k, v in step.effect.items() if k.endswith("_tx") and v), None)
    if tx is None:
        return False
    fn = next(k[:-3] for k, v in step.effect.items() if k.endswith("_tx") and v)
    raw = bytes.fromhex(step.effect[f"{fn}_raw"]) if step.effect.get(f"{fn}_raw") else None
    receipt = await run.tc.port.receipt_of(tx, raw)
    if receipt is None or int(receipt.get("status", "0x1"), 16) != 1:
        return False
    run.ctx.state.finish_step(run.sid(what), {"tx": receipt["transactionHash"], "block": int(receipt["blockNumber"], 16)})
    log.info("task %d: %s transaction %s of before the restart is on chain", run.task_id, what, tx)
    return True


async def published(run) -> dict[int, str]:
    """Round -> result CID, from the chain's GlobalModelPublished events (each round is published at most once)."""
    from dainode.roles.taskchain import event_cid

    return {int(ev.args["round"]): str(event_cid(ev.args["cid"], ev.args["codec"]))
            for ev in await run.tc.logs(run.task_id, ["GlobalModelPublished"])}


async def rebuild_rounds(ctx, run, cids: dict[int, str]) -> np.ndarray:
    """Recompute rounds 0..len(cids)-1 from their posted documents (as `task verify` does): for each, the accepted
    updates opened with the task key and aggregated on top of the posted global model; fills run.results,
    run.outcomes and run.timings; returns the last posted global model (the next round's input)."""
    from dainode.roles.taskdocs import fetch
    from dainode.tasks.documents import ModelBinding, RoundResult, UpdateBinding, open_global_model, open_update, params_digest
    from dainode.tasks.rounds import aggregate_round, initial_params

    m, spec, key = run.manifest, run.manifest.model_spec, run.key
    params = initial_params(m)
    for t in range(len(cids)):
        if t not in cids:
            raise TaskError(f"task {run.task_id}: round {t} has no GlobalModelPublished event but a later round has")
        res = RoundResult.from_bytes(await fetch(ctx, cids[t]))
        ups = []
        for d in res.included:
            mid = int(d["match_id"])
            match = run.matches.get(mid)
            if match is None:
                raise TaskError(f"task {run.task_id} round {t}: included update of match {mid}, which the state does not know")
            blob = await fetch(ctx, d["cid"], timeout=30)
            binding = UpdateBinding(run.ref, mid, t, match["compute_provider"])
            ups.append(await trio.to_thread.run_sync(
                lambda: open_update(blob, key.private, binding, spec, max_examples=match.get("rows"))))
        out = await trio.to_thread.run_sync(lambda: aggregate_round(m, t, params, ups, run.test))
        blob = await fetch(ctx, res.model_cid, timeout=30)
        posted = open_global_model(blob, key.private, ModelBinding(run.ref, t + 1, ctx.keys.address), spec)
        if params_digest(posted) != res.params_digest:
            raise TaskError(f"task {run.task_id} round {t}: the posted model does not match its result document")
        gap = float(np.max(np.abs(posted.astype(np.float64) - out.params))) if posted.size else 0.0
        if gap > 1e-5:
            raise TaskError(f"task {run.task_id} round {t}: recomputing the round from its posted updates differs from the "
                            f"posted model by {gap:.3g}; the node's build changed since the round was aggregated?")
        out.params = posted
        adopted = adopt_round(ctx.state, run.task_id, t, cids[t], res)
        rec = ctx.state.get_round(str(run.task_id), t)
        timing = {k: rec.doc[k] for k in ("wait_updates_ms", "aggregate_eval_ms", "publish_ms", "total_ms") if k in rec.doc}
        run.timings.append({"round": t, **timing, **({"adopted": True} if adopted else {})})
        run.outcomes.append(out)
        run.results.append(res)
        params = posted
        if adopted:
            log.warning("task %d round %d: published on chain but not recorded before the restart: adopted", run.task_id, t)
    return params


async def run_args(role, rec) -> tuple:
    """(task_id, manifest, key, (x, y), test_bytes, salt, test_cid, settings) of a task record, for ModelRole._start_run."""
    from dainode.roles.taskdocs import vault_of
    from dainode.tasks.manifest import Manifest
    from dainode.tasks.testset import decode_test_set

    tid, doc = int(rec.task_id), rec.doc
    step = create_step(role.ctx.state, tid, doc)
    manifest = Manifest.from_document(step.intent["manifest"])
    key = vault_of(role.ctx).load(doc["key_ref"])
    test_bytes = await load_test_set(role.ctx, manifest, tid, step.intent.get("base_dir"), doc["test_set_cid"])
    x, y = decode_test_set(test_bytes)
    return (tid, manifest, key, (x, y), test_bytes, bytes.fromhex(step.effect["salt"]), doc["test_set_cid"],
            step.intent.get("settings") or {})


# --- the whole restore ----------------------------------------------------------------------

async def restore(run) -> None:
    """Bring a TaskRun built after a restart to where the task stands: matches, closed rounds, phase."""
    from dainode.chain.training_task import Phase
    from dainode.tasks.keys import TaskPublicKey
    from dainode.roles.taskdocs import fetch_json

    ctx, tc, tid = run.ctx, run.tc, run.task_id
    rec = ctx.state.get_task(str(tid))
    run.failures = list((rec.doc if rec else {}).get("failures") or [])
    run.matches = load_matches(ctx.state, tid)
    for ev in await tc.logs(tid, ["MatchRecorded"]):
        if int(ev.args["matchId"]) not in run.matches:
            step = ctx.state.get_step(run.sid(f"match-{int(ev.args['dataOfferId'])}"))
            m = adopt_match(ctx.state, tid, ev, step)
            if m is None:
                raise TaskError(f"task {tid}: match {ev.args['matchId']} is on chain but this node's state lost it")
            run.matches[m["match_id"]] = m
            log.warning("task %d: match %d recorded on chain but not in the state: adopted", tid, m["match_id"])
    ts = await tc.task(tid)
    if ts.phase == Phase.MATCHING:
        run.phase = "matching"
        log.info("task %d resumed after a restart: %d match(es), phase matching", tid, len(run.matches))
        return
    if ts.phase == Phase.ABANDONED:
        run.phase = "abandoned"
        run.save()
        return
    run.quorum = int(ts.quorum)
    for m in run.matches.values():
        # (right after a restart the compute providers are still reconnecting: a longer wait than a round's fetch)
        m["cp_key"] = TaskPublicKey.from_document(await fetch_json(ctx, m["cp_key_cid"], timeout=60))
    if ts.phase == Phase.TRAINING and await settle_journaled(run, f"round-{ts.round}"):
        ts = await tc.task(tid)
    cids = await published(run)
    run.resume_params = await rebuild_rounds(ctx, run, cids)
    run.final_params = run.resume_params
    run.phase = "training" if ts.phase == Phase.TRAINING and len(cids) < run.manifest.task.rounds else "split"
    run.intake_consumer = f"task-mp-{tid}-resumed-{time.time_ns()}"  # a full backfill: the open round's updates again
    run.save()
    log.info("task %d resumed after a restart: %d match(es), %d round(s) published, phase %s", tid, len(run.matches),
             len(cids), run.phase)
