"""End to end in one process: a 4-provider, 3-round task sealed, opened, aggregated, split, reported and verified."""

from __future__ import annotations

import json

from dainode.tasks.keys import TaskKey
from dainode.tasks.report import write_report
from dainode.tasks.verify import verify_task
from tests.unit.tasks.helpers import BONUS_WEI, MATCH_IDS, provider_shards, run_task, small_manifest


def test_small_task_end_to_end_passes_verify(tmp_path):
    manifest = small_manifest()
    run = run_task(manifest, provider_shards(rows_each=120, seed=3))
    ev = run.evidence
    # every round accepted all four sealed updates and the model improved
    assert [p.result.included_ids for p in ev.rounds] == [MATCH_IDS] * 3
    acc = [o.accuracy for o in run.outcomes]
    assert acc[-1] > acc[0] and acc[-1] > 0.4, acc
    losses = [o.loss for o in run.outcomes]
    assert losses[-1] < losses[0]
    # the split distributes the whole (odd) bonus
    assert sum(ev.posted_bonuses.values()) == BONUS_WEI
    # a third party: only what was published (the key from its revealed bytes, documents from bytes)
    assert TaskKey.from_reveal(ev.revealed_key, expected=ev.task_public_key).key_id == run.key.key_id
    res = verify_task(ev)
    assert res.ok, res.differences
    paths = write_report(tmp_path, ev.manifest, [p.result for p in ev.rounds], run.report,
                         final_params=run.outcomes[-1].params)
    doc = json.loads(paths["report"].read_text())
    assert [h["accuracy"] for h in doc["history"]] == acc
