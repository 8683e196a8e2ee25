"""The computation provider's side of a task: consent to jobs, fetch the data once, train each round, submit sealed updates."""

from __future__ import annotations

import logging
import time

import trio

from dainode.chain.consent import MatchConsent
from dainode.errors import DainodeError, TransactionReverted
from dainode.roles import negotiate as neg
from dainode.roles.taskdocs import auto_withdraw, fetch, fetch_json, opened_task, put_json, vault_of
from dainode.state import TaskRecord
from dainode.tasks.matching import compute_offer_misfits

log = logging.getLogger("dainode.tasks")

#: A round that failed (a peer or the chain unreachable) is tried again after this long, doubling up to RETRY_MAX_S.
RETRY_START_S, RETRY_MAX_S = 0.5, 5.0
JOB_EVENTS = ["TrainingStarted", "DataProvided", "GlobalModelPublished", "TaskFinalized", "TaskAbandoned"]


def record_id(task_id: int, data_offer_id: int) -> str:
    return f"cp-{int(task_id)}-{int(data_offer_id)}"


class ComputeTasks:
    """Installed by ComputeRole: the compute_request handler and one Job per match it computes for."""

    def __init__(self, role):
        self.role, self.ctx = role, role.ctx
        self.jobs: dict[tuple[int, int], "Job"] = {}
        self.mp_peers: dict[int, str] = {}
        self.tc = None

    def start(self, tc, negotiator) -> None:
        self.tc, self.negotiator = tc, negotiator
        negotiator.add(neg.COMPUTE_REQUEST, self.on_compute_request)
        negotiator.add(neg.ROUND_MODEL, self.on_round_model)

    async def on_round_model(self, msg: dict, peer: str) -> dict:
        """Bytes of a round result and its global model, pushed ahead of the chain event; kept only if they hash to
        the CIDs they claim (the event later names the result CID, which names the model CID)."""
        task_id = neg.need(msg, "task_id", int)
        if not any(j[0] == task_id for j in self.jobs):
            raise neg.Refused("wrong_task", f"this node computes nothing for task {task_id}")
        self.mp_peers[task_id] = peer  # where its updates can be pushed
        for part in ("result", "model"):
            data, cid = msg.get(part), neg.need(msg, f"{part}_cid", str)
            if not isinstance(data, (bytes, bytearray)):
                raise neg.Refused("malformed", f"field {part!r} must be bytes")
            if not await self.ctx.content.accept_push(cid, bytes(data)):  # held in memory for the fetch, not stored
                raise neg.Refused("malformed", f"{part} bytes do not hash to {cid}")
        for (tid, _), job in list(self.jobs.items()):
            if tid == task_id:
                job.pushed_round(neg.need(msg, "round", int), msg["result_cid"])
        return neg.reply(neg.ROUND_MODEL)

    async def on_compute_request(self, msg: dict, peer: str) -> dict:
        from dainode.tasks.keys import TaskKey

        tc = self.tc
        task_id, data_offer, cp_offer = (neg.need(msg, k, int) for k in ("task_id", "data_offer_id", "compute_offer_id"))
        data_price, price = neg.wei(msg, "data_price_wei"), neg.wei(msg, "compute_price_wei")
        deadline = neg.need(msg, "deadline", int)
        if neg.need(msg, "chain_id", int) != tc.chain_id or neg.need(msg, "task_address", str).lower() != tc.address.lower():
            raise neg.Refused("wrong_task", f"this node follows TrainingTask {tc.address} on chain {tc.chain_id}")
        own = next((o for o in self.ctx.state.list_own_offers("compute") if o.offer_id == cp_offer and o.active), None)
        if own is None:
            raise neg.Refused("unknown_offer", f"compute offer {cp_offer} is not an active offer of this node")
        if price < own.price_wei:
            raise neg.Refused("price", f"offered {price} wei, the offer asks {own.price_wei}")
        busy = [r for r in self.ctx.state.list_tasks("compute") if r.status in ("consented", "running")]
        if len(busy) >= int(own.doc.get("capacity") or 1) * 4:  # consents that never get recorded expire; allow some slack
            raise neg.Refused("capacity", f"{len(busy)} jobs pending or running; the offer's capacity is {own.doc.get('capacity')}")
        task = await opened_task(self.ctx, tc, task_id)
        if task.manifest_cid != neg.need(msg, "manifest_cid", str):
            raise neg.Refused("wrong_task", f"task {task_id} was opened with manifest {task.manifest_cid}")
        misfits = compute_offer_misfits(task.manifest, price, own.doc)
        if misfits:
            raise neg.Refused("price", "; ".join(misfits))
        rid = record_id(task_id, data_offer)
        rec = self.ctx.state.get_task(rid)
        vault = vault_of(self.ctx)
        ref = f"job-{tc.chain_id}-{tc.address[2:10].lower()}-{task_id}-{data_offer}"
        if rec is None:
            key = TaskKey.generate()
            await trio.to_thread.run_sync(vault.save, ref, key)
            key_cid = await put_json(self.ctx, key.public.to_document())
            rec = TaskRecord(rid, "compute", "consented", {"task_id": task_id, "data_offer_id": data_offer,
                                                           "compute_offer_id": cp_offer, "key_ref": ref,
                                                           "cp_key_cid": str(key_cid),
                                                           "data_provider": neg.need(msg, "data_provider", str)})
            self.ctx.state.put_task(rec)
        consent = MatchConsent(task_id, data_offer, cp_offer, data_price, price, deadline)
        sig = tc.sign_consent(consent)
        return neg.reply(neg.COMPUTE_REQUEST, compute_signature=sig, cp_key_cid=rec.doc["cp_key_cid"],
                         compute_provider=tc.account, compute_peer_id=self.ctx.keys.peer_id)

    async def follow(self, nursery: trio.Nursery) -> None:
        tc = self.tc
        async with tc.subscribe(f"task-cp-{int(time.time() * 1000)}", ["MatchRecorded"]) as sub:
            async for ev in sub:
                if ev.removed or ev.args["computeProvider"].lower() != tc.account.lower():
                    continue
                task_id, mid = int(ev.args["taskId"]), int(ev.args["matchId"])
                rec = self.ctx.state.get_task(record_id(task_id, int(ev.args["dataOfferId"])))
                if rec is None or (task_id, mid) in self.jobs:
                    continue
                job = Job(self, rec, mid)
                self.jobs[(task_id, mid)] = job
                nursery.start_soon(job.run)


class Job:
    """One match this node computes for: data once, then one sealed update per round, as the rounds open."""

    def __init__(self, owner: ComputeTasks, rec: TaskRecord, match_id: int):
        self.owner, self.ctx, self.tc = owner, owner.ctx, owner.tc
        self.rec, self.match_id = rec, int(match_id)
        self.task_id = int(rec.doc["task_id"])
        self.data = None
        self.started = False
        self.published: dict[int, str] = {}
        self.next_round = 0
        self.timings: list[dict] = []
        self.event_at: dict[int, float] = {}  # round -> wall time its GlobalModelPublished reached this job
        self._prepared: dict[int, dict] = {}  # round -> work started on a pushed model ahead of the chain event
        self.push_at: dict[int, float] = {}  # round -> wall time that round's result was pushed to this node

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as bg:
                self._bg = bg  # best-effort pushes, off the critical path
                await self._run()
                bg.cancel_scope.cancel()
        except* DainodeError as group:  # the nursery wraps the error in an ExceptionGroup (trio's strict groups)
            exc = _first_leaf(group)
            log.error("task %d match %d: compute job stopped: %s", self.task_id, self.match_id, exc)
            self._save("failed", error=str(exc))

    def _save(self, status: str, **extra) -> None:
        self.ctx.state.put_task(TaskRecord(self.rec.task_id, "compute", status,
                                           {**self.rec.doc, "match_id": self.match_id, "timings": self.timings[-50:], **extra}))

    async def _run(self) -> None:
        self.task = await opened_task(self.ctx, self.tc, self.task_id)
        self.key = vault_of(self.ctx).load(self.rec.doc["key_ref"])
        self._save("running")
        self.rounds = self.task.manifest.task.rounds
        from dainode.chain.training_task import Phase

        ts = await self.tc.task(self.task_id)
        if ts.phase == Phase.TRAINING:  # a restart mid-task: the closed rounds are over, the open one is next
            self.next_round = int(ts.round)
        async with self.tc.subscribe(f"task-cp-{self.task_id}-{self.match_id}-{int(time.time() * 1000)}", JOB_EVENTS,
                                     self.task_id) as sub:
            async for ev in sub:
                if ev.removed:
                    continue
                if ev.name == "TrainingStarted":
                    self.started = True
                elif ev.name == "DataProvided" and int(ev.args["matchId"]) == self.match_id:
                    await self._load_data(ev)
                elif ev.name == "GlobalModelPublished":
                    from dainode.roles.taskchain import event_cid

                    self.published[int(ev.args["round"])] = str(event_cid(ev.args["cid"], ev.args["codec"]))
                    self.event_at[int(ev.args["round"])] = time.time()
                elif ev.name in ("TaskFinalized", "TaskAbandoned"):
                    self._save("done")
                    if self.owner.role.auto_withdraw:
                        await auto_withdraw(self.ctx, self.tc, f"task {self.task_id} {ev.name}")
                    return
                await self._advance()

    async def _advance(self) -> None:
        """Train every round that can be trained now: the next one once the previous global model is published."""
        from dainode.chain.training_task import Phase

        failures = 0
        while (self.data is not None and self.started and self.next_round < self.rounds
               and (self.next_round == 0 or self.next_round - 1 in self.published)):
            try:
                ts = await self.tc.task(self.task_id)
                if ts.phase != Phase.TRAINING:
                    return  # finalized or abandoned: the job's event loop sees the event
                current = int(ts.round)
                if current > self.next_round:  # rounds closed while this node was away: rejoin at the open one
                    log.info("task %d match %d: round(s) %d-%d closed without this node; rejoining at round %d "
                             "from the latest global model", self.task_id, self.match_id, self.next_round,
                             current - 1, current)
                    self.next_round = current
                    failures = 0
                    continue
                await self._round(self.next_round)
            except DainodeError as exc:
                # unreachable peers or chain (a restarting model provider, a partition): the round is tried again
                # while it is open (its steps are journaled, nothing is done twice); once the chain has moved on
                # the job rejoins at the open round
                failures += 1
                (log.warning if failures == 1 else log.info)(
                    "task %d match %d round %d: not done yet (%s); trying again while the round is open",
                    self.task_id, self.match_id, self.next_round, exc)
                await trio.sleep(min(RETRY_MAX_S, RETRY_START_S * 2 ** (failures - 1)))
                continue
            failures = 0
            self.next_round += 1

    async def seal_and_put(self, t: int, out) -> tuple[bytes | None, str]:
        """Round t's update sealed for the task key and put on IPFS: (bytes, CID). A test may patch it to misbehave."""
        from dainode.tasks.documents import UpdateBinding, seal_update

        binding = UpdateBinding(self.task.ref, self.match_id, t, self.tc.account)
        sealed = seal_update(binding, out.update, out.n_examples, [self.task.public_key.key], train_loss=out.mean_loss)
        return sealed, str(await self.ctx.content.put_bytes(sealed))

    async def _push(self, peer: str, t: int, cid: str, sealed: bytes | None) -> None:
        if sealed is None or len(sealed) > neg.MAX_PUSH - 64 * 1024:
            return
        msg = {"v": neg.VERSION, "type": neg.ROUND_UPDATE, "task_id": self.task_id, "round": t, "match_id": self.match_id,
               "update": sealed, "update_cid": cid}
        try:
            await self.owner.negotiator.request(peer, msg, neg.PUSH_TIMEOUT_S)
        except DainodeError as exc:
            log.info("task %d round %d: update push failed (%s); the model provider fetches it by CID", self.task_id, t, exc)

    async def _he_round(self, t: int, sid: str, step, t0: float) -> None:
        """An he round: train on the encrypted model and rows, submit the sealed encrypted update (he_compute)."""
        from dainode.roles.he_compute import round_update
        from dainode.roles.taskchain import chain_cid
        from dainode.tasks.documents import UpdateBinding

        extra = {}
        if "update_cid" not in step.effect:
            sealed, extra = await round_update(self.data, t, UpdateBinding(self.task.ref, self.match_id, t, self.tc.account))
            cid = await self.ctx.content.put_bytes(sealed)
            step = self.ctx.state.record_effect(sid, update_cid=str(cid))
        t2 = trio.current_time()
        try:
            receipt = await self.tc.send("submitUpdate", self.task_id, self.match_id, t,
                                         *chain_cid(step.effect["update_cid"]), state=self.ctx.state, step_id=sid)
            tx = receipt["transactionHash"]
        except TransactionReverted as exc:
            log.warning("task %d match %d round %d: update not accepted by the chain: %s", self.task_id, self.match_id, t, exc)
            tx = None
        t3 = trio.current_time()
        self.ctx.state.finish_step(sid, {"tx": tx, "update_cid": step.effect["update_cid"]})
        self.timings.append({"round": t, "round_ms": round((t2 - t0) * 1000, 1), "submit_ms": round((t3 - t2) * 1000, 1),
                             **extra})
        self._save("running")

    async def _load_data(self, ev) -> None:
        if self.data is not None:
            return
        from dainode.roles.taskchain import event_cid
        from dainode.tasks.documents import DataBinding, open_training_data
        from dainode.tasks.rounds import compute_update, initial_params

        cid = event_cid(ev.args["encryptedDataCid"], ev.args["encryptedDataCodec"])
        blob = await fetch(self.ctx, cid, timeout=60)
        dp = (await self.tc.match(self.task_id, self.match_id)).data_provider
        binding = DataBinding(self.task.ref, self.match_id, dp)
        spec = self.task.manifest.model_spec
        if self.task.manifest.task.privacy == "he":
            from dainode.roles.he_compute import load_data

            self.data = await load_data(self, blob, binding)  # ciphertexts only: nothing to compile
            return
        self.data = await trio.to_thread.run_sync(lambda: open_training_data(blob, self.key.private, binding, spec))
        # compile the trainer for this data's shapes now, so no round pays for JIT start-up
        m, (x, y) = self.task.manifest, self.data
        await trio.to_thread.run_sync(lambda: compute_update(m, initial_params(m), x, y, round=0, match_id=self.match_id))
        log.info("task %d match %d: %d training rows received and opened; trainer ready", self.task_id, self.match_id, len(y))

    def pushed_round(self, done_round: int, result_cid: str) -> None:
        """Round `done_round`'s result and model were pushed (bytes held, CID-checked): start the next round's work
        (open, train, seal, store) now, while the publish tx is mined. It is submitted only once GlobalModelPublished
        names this same result CID; otherwise it is dropped and the round is computed from what the chain names."""
        t = int(done_round) + 1
        self.push_at.setdefault(int(done_round), time.time())
        bg = getattr(self, "_bg", None)
        if bg is None or self.data is None or t >= getattr(self, "rounds", 0) or t < self.next_round or t in self._prepared:
            return
        if int(done_round) in self.published:
            return  # the event came first: the round is being computed from what the chain names
        slot = {"result_cid": str(result_cid), "done": trio.Event(), "work": None}
        self._prepared[t] = slot
        bg.start_soon(self._prepare, t, slot)

    async def _prepare(self, t: int, slot: dict) -> None:
        try:
            slot["work"] = await self._work(t, slot["result_cid"])
        except DainodeError as exc:
            log.info("task %d match %d round %d: work on the pushed model failed (%s); waiting for the chain",
                     self.task_id, self.match_id, t, exc)
        finally:
            slot["done"].set()

    async def _work(self, t: int, result_cid: str | None) -> dict:
        """Round t's sealed update from the global model the round result `result_cid` names (round 0: the initial
        model): {"sealed", "cid", "timing"}; stored (pinned) here, not yet submitted."""
        from dainode.tasks.documents import ModelBinding, open_global_model
        from dainode.tasks.rounds import compute_update, initial_params

        t0 = trio.current_time()
        ms = lambda a, b: round((b - a) * 1000, 1)  # noqa: E731
        timing: dict = {"round": t, "match_id": self.match_id, "started_at": time.time(), "event_at": self.event_at.get(t - 1)}
        m, spec = self.task.manifest, self.task.manifest.model_spec
        if t == 0:
            params = initial_params(m)
            timing.update(fetch_result_ms=0.0, fetch_blob_ms=0.0, open_ms=0.0)
        else:
            res = await fetch_json(self.ctx, result_cid)
            ta = trio.current_time()
            blob = await fetch(self.ctx, res["model_cid"])
            tb = trio.current_time()
            params = open_global_model(blob, self.key.private, ModelBinding(self.task.ref, t, self.task.model_provider), spec)
            timing.update(fetch_result_ms=ms(t0, ta), fetch_blob_ms=ms(ta, tb), open_ms=ms(tb, trio.current_time()))
        t1 = trio.current_time()
        x, y = self.data
        out = await trio.to_thread.run_sync(lambda: compute_update(m, params, x, y, round=t, match_id=self.match_id))
        t2 = trio.current_time()
        sealed, cid = await self.seal_and_put(t, out)  # a test may patch seal_and_put to misbehave
        timing.update(fetch_model_ms=ms(t0, t1), train_ms=ms(t1, t2), seal_put_ms=ms(t2, trio.current_time()))
        return {"sealed": sealed, "cid": cid, "timing": timing}

    async def _round(self, t: int) -> None:
        from dainode.roles.taskchain import chain_cid

        sid = f"update-{self.task_id}-{self.match_id}-{t}"
        step = self.ctx.state.begin_step(sid, "task_update", {"task_id": self.task_id, "match_id": self.match_id, "round": t})
        if step.finished:
            return
        t0 = trio.current_time()
        if self.task.manifest.task.privacy == "he":
            return await self._he_round(t, sid, step, t0)
        sealed = None  # None after a restart: the update is already on IPFS and the MP fetches it by CID
        timing: dict = {"round": t, "match_id": self.match_id, "event_at": self.event_at.get(t - 1)}
        if "update_cid" not in step.effect:
            result_cid = self.published.get(t - 1) if t else None
            slot = self._prepared.pop(t, None)
            work = None
            if slot is not None and slot["result_cid"] == result_cid:  # the chain names the result we worked from
                await slot["done"].wait()
                work = slot["work"]
            if work is None:
                work = await self._work(t, result_cid)
            timing = {**work["timing"], "event_at": self.event_at.get(t - 1), "push_at": self.push_at.get(t - 1),
                      "ahead": slot is not None and work is slot["work"],
                      "wait_ms": round((trio.current_time() - t0) * 1000, 1)}
            sealed = work["sealed"]
            step = self.ctx.state.record_effect(sid, update_cid=work["cid"])
        peer = self.owner.mp_peers.get(self.task_id)
        if peer and sealed is not None and neg.pushes_enabled():  # travels while the tx is mined
            self._bg.start_soon(self._push, peer, t, step.effect["update_cid"], sealed)
        t_tx = trio.current_time()
        tx_parts: dict = {}
        try:
            receipt = await self.tc.send("submitUpdate", self.task_id, self.match_id, t,
                                         *chain_cid(step.effect["update_cid"]), state=self.ctx.state, step_id=sid,
                                         timings=tx_parts)
            tx = receipt["transactionHash"]
        except TransactionReverted as exc:
            log.warning("task %d match %d round %d: update not accepted by the chain: %s", self.task_id, self.match_id, t, exc)
            tx = None
        t3 = trio.current_time()
        self.ctx.state.finish_step(sid, {"tx": tx, "update_cid": step.effect["update_cid"]})
        timing.update(submit_tx_ms=round((t3 - t_tx) * 1000, 1), tx=tx_parts, submitted_at=time.time())
        self.timings.append(timing)
        self._save("running")


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    exc = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
