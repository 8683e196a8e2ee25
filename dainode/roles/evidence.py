"""Gather a finished task's TaskEvidence from the chain's events and IPFS alone (docs/roles.md, last section)."""

from __future__ import annotations

from dainode.chain.training_task import CreditKind
from dainode.errors import TaskError
from dainode.roles.taskchain import event_cid
from dainode.roles.taskdocs import fetch, fetch_json, opened_task
from dainode.tasks.keys import TaskKey
from dainode.tasks.verify import PostedRound, PostedUpdate, TaskEvidence


async def gather(ctx, tc, task_id: int) -> TaskEvidence:
    """Everything `verify_task` needs, from TrainingTask events of `task_id` and the documents their CIDs name."""
    task = await opened_task(ctx, tc, task_id)
    logs = await tc.logs(task_id)
    by = lambda name: [e for e in logs if e.name == name]  # noqa: E731
    key_ev, test_ev, split_ev = by("KeyRevealed"), by("TestSetRevealed"), by("SplitPosted")
    if not (key_ev and test_ev and split_ev):
        raise TaskError(f"task {task_id} has not posted its split and revealed its key and test set yet")
    reveal = TaskKey.from_reveal_document(await fetch_json(ctx, event_cid(key_ev[0].args["cid"], key_ev[0].args["codec"])),
                                          expected=task.public_key)
    test_cid = event_cid(test_ev[0].args["cid"], test_ev[0].args["codec"])
    test_set = await fetch(ctx, test_cid)
    matches = {int(e.args["matchId"]): e for e in by("MatchRecorded")}
    rows = {}
    for mid, e in matches.items():
        seen = ctx.state.get_seen_offer(int(e.args["dataOfferId"]))
        n = ((seen.doc or {}).get("dataset") or {}).get("rows") if seen is not None else None
        if isinstance(n, int):
            rows[mid] = n
    published = {int(e.args["round"]): e for e in by("GlobalModelPublished")}
    results: dict[int, bytes] = {}
    for t, e in published.items():
        results[t] = await fetch(ctx, event_cid(e.args["cid"], e.args["codec"]))
    R = task.manifest.task.rounds
    models: dict[int, bytes] = {0: await fetch(ctx, task.model0_cid)}
    import json

    for t, raw in results.items():
        try:
            models[t + 1] = await fetch(ctx, json.loads(raw.decode())["model_cid"])
        except (ValueError, KeyError, UnicodeDecodeError):
            pass  # an unreadable result is a difference verify reports
    rounds = []
    for t in range(R):
        ups = []
        for e in by("UpdateSubmitted"):
            if int(e.args["round"]) != t:
                continue
            cid = event_cid(e.args["cid"], e.args["codec"])
            try:
                blob = await fetch(ctx, cid)
            except TaskError:
                blob = None
            after = t in published and e.block_number >= published[t].block_number
            ups.append(PostedUpdate(int(e.args["matchId"]), t, e.args["computeProvider"], str(cid), blob, after))
        if t in results:
            rounds.append(PostedRound(t, models.get(t, b""), ups, results[t]))
    compute_paid = sum(int(e.args["amount"]) for e in by("RewardCredited") if int(e.args["kind"]) == CreditKind.COMPUTE)
    provided = {int(e.args["matchId"]) for e in by("DataProvided")}
    data_prices = sum(int(e.args["dataPrice"]) for mid, e in matches.items() if mid in provided)
    unprovided = sum(int(e.args["dataPrice"]) for mid, e in matches.items() if mid not in provided)
    sp = split_ev[-1]
    return TaskEvidence(
        manifest=task.manifest, task=task.ref, model_provider=task.model_provider, task_public_key=task.public_key,
        revealed_key=reveal.reveal_bytes(), test_set=test_set, test_set_cid=str(test_cid),
        salt=bytes(test_ev[0].args["salt"]), commitment=bytes(task.params[6]), match_ids=sorted(matches), rounds=rounds,
        final_model=models.get(R, b""), bonus_wei=task.pool_wei - data_prices - unprovided - compute_paid,
        posted_bonuses={i: int(b) for i, b in enumerate(sp.args["bonuses"])},
        split_report=await fetch(ctx, event_cid(sp.args["reportCid"], sp.args["reportCodec"])), match_rows=rows or None)
