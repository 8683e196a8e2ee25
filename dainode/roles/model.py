"""The model provider role: `task_create` (keys, test-set commitment, documents, openTask, announce) and the task runs."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import tomllib
from pathlib import Path
from typing import Any

import trio

from dainode.errors import ConfigError, DainodeError, RpcError
from dainode.roles.base import Role
from dainode.roles.negotiate import negotiator
from dainode.roles.taskdocs import GOSSIP_TASK, TASKS_TOPIC, put_json, vault_of
from dainode.state import TaskRecord

log = logging.getLogger("dainode.tasks")

STEP_KIND = "task_create"
AGGREGATION_WINDOW_S = 60  # the contract's minimum window
CHALLENGE_WINDOW_S = 60
DEADLINE_MARGIN_S = 3600


class ModelRole(Role):
    """Needs the chain (tasks, escrow). Each task it opens runs as a TaskRun in the role's nursery."""

    name = "model"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.runs: dict[int, Any] = {}
        self._nursery: trio.Nursery | None = None
        self.auto_withdraw = os.environ.get("DAINODE_TASK_AUTO_WITHDRAW", "1") != "0"
        self.tc = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.check()
        from dainode.roles.taskchain import TaskChain

        self.tc = TaskChain(self.ctx.chain)
        self.negotiator = negotiator(self.ctx)
        self.negotiator.add("round_update", self.on_round_update)
        from dainode.roles.he_model import on_he_refresh

        self.negotiator.add("he_refresh", lambda msg, peer: on_he_refresh(self, msg, peer))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            nursery.start_soon(self.resume_all)
            await trio.sleep_forever()

    async def resume_all(self) -> None:
        """After a restart: every task not final or abandoned resumes where it stopped, then any half-done create."""
        from dainode.roles import model_resume

        for rec in model_resume.resumable(self.ctx.state):
            try:
                args = await model_resume.run_args(self, rec)
            except DainodeError as exc:
                log.error("task %s cannot resume: %s", rec.task_id, exc)
                continue
            self._start_run(*args, resume=model_resume.restore)
        for step in self.ctx.state.list_steps(STEP_KIND, unfinished=True):
            try:
                await self.resume_create(step.step_id)
            except DainodeError as exc:
                log.error("task create %s cannot resume: %s", step.step_id, exc)

    def rpc_methods(self) -> dict:
        return {"task_create": self.rpc_create}

    async def on_round_update(self, msg: dict, peer: str) -> dict:
        """A CP's sealed update bytes ahead of its UpdateSubmitted event; stored only if they hash to the claimed CID
        (the event names the CID; the update is opened and checked when the event arrives, as any other)."""
        from dainode.roles import negotiate as neg

        task_id = neg.need(msg, "task_id", int)
        if task_id not in self.runs:
            raise neg.Refused("wrong_task", f"this node runs no task {task_id}")
        data, cid = msg.get("update"), neg.need(msg, "update_cid", str)
        if not isinstance(data, (bytes, bytearray)) or len(data) > neg.MAX_PUSH:
            raise neg.Refused("malformed", "field 'update' must be bytes")
        if not await self.ctx.content.accept_push(cid, bytes(data)):  # held in memory for the fetch, not stored
            raise neg.Refused("malformed", f"update bytes do not hash to {cid}")
        self.runs[task_id].pushed_update(neg.need(msg, "round", int), neg.need(msg, "match_id", int), cid)
        return neg.reply(neg.ROUND_UPDATE)

    def manifest_cid(self, task_id: int) -> str:
        rec = self.ctx.state.get_task(str(task_id))
        return rec.doc["manifest_cid"]

    def adjust_split(self, split):
        """The split as posted: unchanged (a test replaces this to post a tampered split)."""
        return split

    # --- task create --------------------------------------------------------------------------

    async def rpc_create(self, manifest_toml: str, base_dir: str | None = None, grace_ms: float | None = None,
                         matching_wait_s: float | None = None, challenge_window_s: int = CHALLENGE_WINDOW_S,
                         arbiter: str | None = None) -> dict:
        """Validate the manifest, make the task's keys and documents, open it on chain and start matching."""
        self.require_running("task_create")
        from dainode.tasks.manifest import parse_manifest

        if not isinstance(manifest_toml, str):
            raise ConfigError("manifest_toml must be the manifest's TOML text")
        try:
            manifest = parse_manifest(tomllib.loads(manifest_toml), source="manifest")
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"manifest: not valid TOML: {exc}") from None
        if not isinstance(challenge_window_s, int) or not 60 <= challenge_window_s <= 30 * 86400:
            raise ConfigError(f"challenge_window_s must be 60..2592000 s (the contract's bounds), got {challenge_window_s!r}")
        authority = await self.tc._c.call("TrainingTask", "authority")
        if (arbiter or authority).lower() == self.ctx.keys.address.lower():
            raise ConfigError(f"the task's arbiter would be this node ({self.ctx.keys.address}), which the contract refuses: "
                              "it is the TrainingTask authority (it deployed the contracts); open tasks from another "
                              "account or pass another arbiter", key="arbiter")
        settings = {k: v for k, v in (("grace_ms", grace_ms), ("matching_wait_s", matching_wait_s)) if v is not None}
        body = manifest.to_bytes()
        sid = f"task-create-{hashlib.sha256(body + os.urandom(8)).hexdigest()[:20]}"
        self.ctx.state.begin_step(sid, STEP_KIND, {"manifest": manifest.to_document(), "base_dir": base_dir,
                                                   "settings": settings, "challenge_window_s": challenge_window_s,
                                                   "arbiter": arbiter})
        return await self.resume_create(sid)

    async def resume_create(self, sid: str) -> dict:
        from dainode.chain.training_task import TaskParams
        from dainode.roles.taskchain import chain_cid  # noqa: F401
        from dainode.store.cid import CID
        from dainode.tasks.documents import ModelBinding, seal_global_model
        from dainode.tasks.keys import TaskKey
        from dainode.tasks.manifest import Manifest
        from dainode.tasks.rounds import initial_params
        from dainode.tasks.sealed import TaskRef
        from dainode.tasks.testset import encode_test_set, load_test_set, new_salt, test_set_commitment

        state, ctx, tc = self.ctx.state, self.ctx, self.tc
        step = state.get_step(sid)
        manifest = Manifest.from_document(step.intent["manifest"])
        vault = vault_of(ctx)
        key_ref = f"pending-{sid}"
        if "key_ref" not in step.effect:
            vault.save(key_ref, TaskKey.generate())
            step = state.record_effect(sid, key_ref=key_ref)
        key = vault.load(step.effect["key_ref"])
        base = step.intent.get("base_dir")
        ds = await trio.to_thread.run_sync(lambda: load_test_set(manifest, base_dir=base))
        test_bytes = encode_test_set(ds.x, ds.y)
        if "test_set_cid" not in step.effect:
            test_cid = await ctx.content.hash_bytes(test_bytes)  # the CID the reveal will publish; nothing published now
            step = state.record_effect(sid, test_set_cid=str(test_cid), salt=new_salt().hex())
        test_cid, salt = CID.parse(step.effect["test_set_cid"]), bytes.fromhex(step.effect["salt"])
        commitment = test_set_commitment(test_cid, salt)
        if "manifest_cid" not in step.effect:
            m_cid = await ctx.content.put_bytes(manifest.to_bytes())
            from dainode.roles.he_model import put_key_doc

            k_cid = await put_key_doc(self, key, step.effect["key_ref"], manifest)  # he: + CKKS context, model 0
            step = state.record_effect(sid, manifest_cid=str(m_cid), key_cid=str(k_cid))
        # model 0 is bound to the task id, which the chain assigns: it is published right after openTask
        if "task_id" not in step.effect:
            now = await tc.block_timestamp()
            t = manifest.task
            rd, aw = max(60, t.round_window_s), AGGREGATION_WINDOW_S
            params = TaskParams(
                manifest=CID.parse(step.effect["manifest_cid"]), he_public_key=CID.parse(step.effect["manifest_cid"]),
                enc_public_key=CID.parse(step.effect["key_cid"]), test_set_commitment=commitment, rounds=t.rounds,
                round_duration=rd, aggregation_window=aw, challenge_window=int(step.intent["challenge_window_s"]),
                deadline=now + TaskParams.span(t.rounds, rd, aw) + DEADLINE_MARGIN_S, quorum=t.quorum,
                arbiter=step.intent.get("arbiter"))
            params = await self._with_model0(params, manifest, key, sid)
            receipt = await tc.send("openTask", params.to_abi(), value=t.reward_pool_wei, state=state, step_id=sid)
            task_id = int(tc.event(receipt, "TaskOpened").args["taskId"])
            step = state.record_effect(sid, task_id=task_id, tx=receipt["transactionHash"])
        task_id = int(step.effect["task_id"])
        ref_name = f"task-{tc.chain_id}-{tc.address[2:10].lower()}-{task_id}"
        vault.save(ref_name, key)
        doc = {"manifest_cid": step.effect["manifest_cid"], "key_cid": step.effect["key_cid"],
               "model0_cid": step.effect["model0_cid"], "test_set_cid": str(test_cid), "key_ref": ref_name,
               "tx": step.effect["tx"], "pool_wei": str(manifest.task.reward_pool_wei), "name": manifest.task.name,
               "rounds": manifest.task.rounds, "created": time.time(), "privacy": manifest.task.privacy,
               "create_step": sid}
        if manifest.task.privacy == "he":
            doc["he_ref"] = step.effect["key_ref"]  # the CKKS secret, sealed as <key_ref>.ckks
        if state.get_task(str(task_id)) is None:
            from dainode.roles.model_resume import save_test_set

            # a restart needs exactly the committed bytes; kept local (0600) until the reveal, never in the blockstore
            await trio.to_thread.run_sync(save_test_set, ctx.data_dir, task_id, test_bytes)
            state.put_task(TaskRecord(str(task_id), "model", "matching", doc))
        if not step.effect.get("announced"):
            await ctx.gossip.publish(TASKS_TOPIC, GOSSIP_TASK, {
                "task_id": task_id, "task_address": tc.address, "chain_id": tc.chain_id, "manifest_cid": doc["manifest_cid"],
                "pool_wei": doc["pool_wei"], "rounds": manifest.task.rounds, "providers": manifest.task.providers})
            step = state.record_effect(sid, announced=True)
        result = {"task_id": task_id, "tx": doc["tx"], "manifest_cid": doc["manifest_cid"], "key_cid": doc["key_cid"],
                  "model0_cid": doc["model0_cid"], "test_set_commitment": "0x" + commitment.hex(),
                  "pool_wei": doc["pool_wei"]}
        state.finish_step(sid, result)
        self._start_run(task_id, manifest, key, (ds.x, ds.y), test_bytes, salt, str(test_cid), step.intent.get("settings", {}))
        log.info("task %d opened (%s): pool %s wei, matching starts", task_id, doc["tx"], doc["pool_wei"])
        return result

    async def _with_model0(self, params, manifest, key, sid: str):
        """The sealed initial model is bound to the task id: predict it (nextTaskId) and put it before openTask."""
        from dataclasses import replace

        from dainode.store.cid import CID
        from dainode.tasks.documents import ModelBinding, seal_global_model
        from dainode.tasks.rounds import initial_params
        from dainode.tasks.sealed import TaskRef

        step = self.ctx.state.get_step(sid)
        if "model0_cid" not in step.effect or "predicted_id" not in step.effect:
            next_id = int(await self.tc._c.call("TrainingTask", "nextTaskId"))
            ref = TaskRef(self.tc.chain_id, self.tc.address, next_id)
            blob = seal_global_model(ModelBinding(ref, 0, self.ctx.keys.address), initial_params(manifest), [key.public.key])
            cid = await self.ctx.content.put_bytes(blob)
            step = self.ctx.state.record_effect(sid, model0_cid=str(cid), predicted_id=next_id)
        return replace(params, he_public_key=CID.parse(step.effect["model0_cid"]))

    def _start_run(self, task_id, manifest, key, test, test_bytes, salt, test_cid, settings, resume=None) -> None:
        from dainode.roles.model_run import TaskRun

        if task_id in self.runs or self._nursery is None:
            return
        run = TaskRun(self, task_id, manifest, key, test, test_bytes, salt, test_cid, settings)
        run.resume = resume  # after a restart: model_resume.restore, run before anything else
        self.runs[task_id] = run
        self._nursery.start_soon(run.run)
