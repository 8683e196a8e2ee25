"""Test-only launcher: `dainode` whose compute role misbehaves in the rounds `<data-dir>/hostile-plan.json` names.

The plan maps a round (as a string) to one of: ``honest``, ``wrong_shape`` (5 parameters short), ``non_finite`` (NaN and
inf in the vector), ``wrong_key`` (sealed for a key that is not the task's), ``wrong_round`` (bound to the next round),
``replay`` (the CID of this match's update of the previous round), ``other_cid`` (the CID another match submitted in
this round), ``poison`` (the honest update sign-flipped and scaled by 10). It replaces Job.seal_and_put, the hook the
compute role calls before submitUpdate. Never used outside tests/integration.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import trio

log = logging.getLogger("dainode.tasks")


async def hostile_seal_and_put(self, t, out):
    from dainode.tasks import sealed as sealed_mod
    from dainode.tasks.documents import UPDATE_SCHEMA, UpdateBinding, _vector_payload, seal_update
    from dainode.tasks.keys import TaskKey

    plan_file = Path(self.ctx.data_dir) / "hostile-plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else {}
    act = plan.get(str(t), "honest")
    cids = getattr(self, "_hostile_cids", {})
    self._hostile_cids = cids
    binding = UpdateBinding(self.task.ref, self.match_id, t, self.tc.account)
    keys = [self.task.public_key.key]
    upd, n = np.asarray(out.update, np.float32), out.n_examples
    log.warning("HOSTILE task %d match %d round %d: %s", self.task_id, self.match_id, t, act)
    if act == "replay":
        return None, cids[t - 1]
    if act == "other_cid":
        with trio.fail_after(30):
            while True:
                for ev in await self.tc.logs(self.task_id, ["UpdateSubmitted"]):
                    if int(ev.args["round"]) == t and int(ev.args["matchId"]) != self.match_id:
                        from dainode.roles.taskchain import event_cid

                        return None, str(event_cid(ev.args["cid"], ev.args["codec"]))
                await trio.sleep(0.1)
    if act == "wrong_shape":
        blob = seal_update(binding, upd[:-5], n, keys)
    elif act == "non_finite":
        bad = upd.copy()
        bad[0], bad[7] = np.nan, np.inf
        blob = sealed_mod.pack(UPDATE_SCHEMA, binding.fields(), keys, _vector_payload({"n_examples": int(n)}, bad))
    elif act == "wrong_key":
        blob = seal_update(binding, upd, n, [TaskKey.generate().public.key])
    elif act == "wrong_round":
        from dataclasses import replace

        blob = seal_update(replace(binding, round=t + 1), upd, n, keys)
    elif act == "poison":
        blob = seal_update(binding, -10.0 * upd, n, keys)
    else:
        blob = seal_update(binding, upd, n, keys, train_loss=out.mean_loss)
    cid = str(await self.ctx.content.put_bytes(blob))
    cids[t] = cid
    return blob, cid


if __name__ == "__main__":
    from dainode.cli import main
    from dainode.roles.compute_task import Job

    Job.seal_and_put = hostile_seal_and_put
    sys.exit(main(sys.argv[1:]))
