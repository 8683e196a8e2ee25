"""One task driven by its model provider: matching, the rounds, the split, the reveal, finalize and the report."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import trio

from dainode import metrics
from dainode.chain.consent import MatchConsent
from dainode.errors import DainodeError, DocumentRejected, FetchTimeout, P2PError, TaskError, TransactionReverted
from dainode.roles import negotiate as neg
from dainode.roles.model_resume import match_doc
from dainode.roles.taskdocs import (GOSSIP_DONE, GOSSIP_ROUND, TASKS_TOPIC, auto_withdraw, fetch, fetch_json, put_json,
                                    rejection_document)
from dainode.state import MatchRecord, RoundRecord, TaskRecord
from dainode.tasks.documents import ModelBinding, UpdateBinding, open_update, seal_global_model
from dainode.tasks.keys import TaskKey, TaskPublicKey
from dainode.tasks.manifest import Manifest
from dainode.tasks.matching import data_offer_misfits
from dainode.tasks.sealed import TaskRef

log = logging.getLogger("dainode.tasks")

FINALIZE_POLL_S = 2.0  # how often the wait for the end of the challenge window looks at the chain's clock
PENDING_WAIT_S = 15.0  # at the cut-off, how long to wait for updates on chain that are still being fetched/opened
GRACE_S = 0.2  # after the quorum is in, how long to wait for the rest before aggregating
MATCHING_WAIT_S = 60.0  # longest time matching may take after the open
MATCHING_IDLE_S = 5.0  # matching ends when no untried fitting offer appeared for this long
RETRY_UNREACHABLE_S = 1.0  # an offer whose node could not be reached is asked again after this (within the wait)
MAX_RETRIES = 10
CONSENT_TTL_S = 600
PARALLEL_ASKS = 4
TASK_EVENTS = ["UpdateSubmitted", "UpdateRejected", "DataProvided"]
TRANSIENT = ("internal", "rate_limited", "busy")  # refusals worth asking the same offer again (within matching_wait_s)


class TaskRun:
    """Everything the model provider keeps in memory for one task; the durable parts go to State as they happen."""

    resume = None  # after a restart: model_resume.restore (matches, closed rounds and phase from state + chain)
    resume_params = None  # the latest posted global model when rounds were restored
    stopped: str | None = None  # why this run stopped on an error (cleared by the next run after a restart)

    def __init__(self, role, task_id: int, manifest: Manifest, key: TaskKey, test: tuple, test_bytes: bytes,
                 salt: bytes, test_cid: str, settings: dict):
        self.role, self.ctx, self.tc = role, role.ctx, role.tc
        self.task_id = int(task_id)
        self.ref = TaskRef(self.tc.chain_id, self.tc.address, self.task_id)
        self.manifest, self.key, self.test, self.test_bytes = manifest, key, test, test_bytes
        self.salt, self.test_cid = salt, test_cid
        self.grace_s = float(settings.get("grace_ms", GRACE_S * 1000)) / 1000
        self.matching_wait_s = float(settings.get("matching_wait_s", MATCHING_WAIT_S))
        self.matches: dict[int, dict] = {}
        self.outcomes: list = []
        self.results: list = []
        self.failures: list[str] = []
        self.timings: list[dict] = []
        self.quorum = manifest.task.quorum
        self.phase = "matching"
        self.updates: dict[int, dict[int, dict]] = {}  # round -> match id -> {cid, status, detail, opened}
        self.lost_rounds = 0  # rounds running that ended below quorum (manifest task.quorum_lost_rounds)
        self._changed = trio.Event()
        self._preopened: dict[tuple[int, int], dict] = {}  # (round, match id) -> a pushed update opened ahead
        self.report_dir: str | None = None
        self.split = None
        self.done = trio.Event()
        from dainode.roles.he_model import key_holder

        self.he = key_holder(self)  # None unless privacy "he": the CKKS key holder
        self.intake_consumer = f"task-mp-{self.task_id}"

    # --- bookkeeping ------------------------------------------------------------------------

    def sid(self, what: str) -> str:
        return f"task-{self.task_id}-{what}"

    def save(self, **extra) -> None:
        rec = self.ctx.state.get_task(str(self.task_id))
        doc = dict(rec.doc if rec else {})
        doc.update(phase=self.phase, failures=self.failures, timings=self.timings, report_dir=self.report_dir,
                   stopped=self.stopped,
                   history=[{"round": r.round, "accuracy": r.accuracy, "loss": r.loss} for r in self.results], **extra)
        self.ctx.state.put_task(TaskRecord(str(self.task_id), "model", self.phase, doc))

    async def step_tx(self, what: str, fn: str, *args, intent: dict | None = None, timings: dict | None = None) -> dict:
        sid = self.sid(what)
        step = self.ctx.state.begin_step(sid, f"task_{fn}", {"task_id": self.task_id, **(intent or {})})
        if step.finished and step.result.get("tx"):
            return step.result
        receipt = await self.tc.send(fn, *args, state=self.ctx.state, step_id=sid, timings=timings)
        self.ctx.state.finish_step(sid, {"tx": receipt["transactionHash"], "block": int(receipt["blockNumber"], 16)})
        return receipt

    # --- the whole task ---------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._bg = nursery  # best-effort pushes live here, off the rounds' critical path
                if self.resume is not None:
                    await self.resume(self)
                await nursery.start(self._intake)
                if self.phase == "matching":
                    await self.match()
                if self.phase == "abandoned":
                    nursery.cancel_scope.cancel()
                    return
                if self.phase == "training":
                    await self.rounds()
                if self.phase == "abandoned":
                    nursery.cancel_scope.cancel()
                    return
                await self.rewards()
                nursery.cancel_scope.cancel()
        except* DainodeError as group:  # the nursery wraps errors in an ExceptionGroup (trio's strict groups)
            for exc in _leaves(group):
                self.failures.append(f"{type(exc).__name__}: {exc}")
                log.error("task %d stopped: %s", self.task_id, exc)
            self.stopped = self.failures[-1]
            self.save()
        finally:
            self.done.set()

    # --- matching (§4.4 steps 1-3) -------------------------------------------------------------

    def candidates(self, tried: set[int]) -> list:
        me = self.ctx.keys.address.lower()
        owners = {m["data_provider"].lower() for m in self.matches.values()}
        out = []
        for o in self.ctx.state.list_seen_offers("data", active=True):
            if o.offer_id in tried or not o.doc or not o.peer_id or o.owner.lower() in owners | {me}:
                continue
            if data_offer_misfits(self.manifest, o.doc, o.price_wei):
                continue
            out.append(o)
        out.sort(key=lambda o: (o.price_wei, o.offer_id))
        seen, uniq = set(), []
        for o in out:
            if o.owner.lower() not in seen:
                seen.add(o.owner.lower())
                uniq.append(o)
        return uniq

    async def match(self) -> None:
        want = self.manifest.task.providers
        start = trio.current_time()
        tried: set[int] = set()
        self.unreachable: set[int] = set()  # asked but not reached (e.g. right after a restart): asked again
        retries: dict[int, int] = {}
        idle_since = trio.current_time()
        lock = trio.Lock()
        while len(self.matches) < want and trio.current_time() - start < self.matching_wait_s:
            cands = self.candidates(tried)[: min(PARALLEL_ASKS, want - len(self.matches))]
            if not cands and self.unreachable and trio.current_time() - idle_since > RETRY_UNREACHABLE_S:
                for oid in self.unreachable:
                    retries[oid] = retries.get(oid, 0) + 1
                tried -= {oid for oid in self.unreachable if retries[oid] <= MAX_RETRIES}
                self.unreachable.clear()
                continue
            if not cands:
                if trio.current_time() - idle_since > MATCHING_IDLE_S and self.matches:
                    break
                await trio.sleep(0.25)
                continue
            idle_since = trio.current_time()
            async with trio.open_nursery() as n:
                for o in cands:
                    tried.add(o.offer_id)
                    n.start_soon(self.ask, o, lock, tried)
        took = trio.current_time() - start
        if len(self.matches) < want:
            self.failures.append(f"matched {len(self.matches)} of {want} providers (quorum {self.manifest.task.quorum}) "
                                 f"after {took:.1f} s")
        if len(self.matches) < max(1, self.manifest.task.quorum):
            self.save()  # the reason is durable before the chain says "abandoned" (task_status reads both)
            self.phase = "abandoned"
            await self.step_tx("abandon", "abandon", self.task_id)
            self.save()
            await auto_withdraw(self.ctx, self.tc, f"task {self.task_id} abandoned")
            log.warning("task %d abandoned: %s", self.task_id, self.failures[-1])
            return
        receipt = await self.step_tx("start", "startTraining", self.task_id)
        for ev in receipt.get("events", []):
            if ev.name == "TrainingStarted":
                self.quorum = int(ev.args["quorum"])
        self.phase = "training"
        self.save()
        # every matched compute provider's job key, for the global models
        for m in self.matches.values():
            m["cp_key"] = TaskPublicKey.from_document(await fetch_json(self.ctx, m["cp_key_cid"]))
        log.info("task %d: training starts with %d matches (quorum %d) after %.1f s of matching",
                 self.task_id, len(self.matches), self.quorum, took)

    async def ask(self, offer, lock: trio.Lock, tried: set | None = None) -> None:
        t = self.manifest.task
        msg = {"v": neg.VERSION, "type": neg.MATCH_REQUEST, "chain_id": self.ref.chain_id, "task_address": self.ref.task_address,
               "task_id": self.task_id, "manifest_cid": self.role.manifest_cid(self.task_id), "data_offer_id": offer.offer_id,
               "data_price_wei": str(offer.price_wei), "max_compute_price_wei": str(t.max_compute_price_wei),
               "deadline": int(time.time()) + CONSENT_TTL_S}
        try:
            rep = await self.role.negotiator.request(offer.peer_id, msg, neg.MATCH_TIMEOUT_S)
            if not rep.get("ok"):
                log.info("task %d: data offer %d refused: %s (%s)", self.task_id, offer.offer_id, rep.get("reason"), rep.get("detail"))
                if rep.get("reason") in TRANSIENT and tried is not None:  # its node's chain read failed, say: ask again
                    await trio.sleep(1.0)
                    tried.discard(offer.offer_id)
                return
            cp_offer = neg.need(rep, "compute_offer_id", int)
            consent = MatchConsent(self.task_id, offer.offer_id, cp_offer, offer.price_wei, neg.wei(rep, "compute_price_wei"),
                                   msg["deadline"])
            if consent.compute_price > t.max_compute_price_wei:
                raise neg.Refused("price", f"compute price {consent.compute_price} is above the task's maximum")
            on_chain = await self.tc.offer(cp_offer)
            if not on_chain.exists or on_chain.kind != "compute" or not on_chain.active:
                raise neg.Refused("unknown_offer", f"compute offer {cp_offer} is not an active compute offer")
            self.tc.verify_consent(consent, neg.need(rep, "data_signature", bytes), offer.owner)
            self.tc.verify_consent(consent, neg.need(rep, "compute_signature", bytes), on_chain.owner)
            cp_key_cid = neg.need(rep, "cp_key_cid", str)
            async with lock:
                if len(self.matches) >= t.providers:
                    return
                from dainode.chain.training_task import consent_to_abi

                receipt = await self.step_tx(f"match-{offer.offer_id}", "recordMatch", consent_to_abi(consent),
                                             neg.need(rep, "data_signature", bytes),
                                             neg.need(rep, "compute_signature", bytes),
                                             intent={"data_offer_id": offer.offer_id, "cp_key_cid": cp_key_cid,
                                                     "compute_peer_id": str(rep.get("compute_peer_id") or ""),
                                                     "rows": int((offer.doc.get("dataset") or {}).get("rows") or 0) or None})
                ev = self.tc.event(receipt, "MatchRecorded")
                mid = int(ev.args["matchId"])
                m = {"match_id": mid, "data_provider": ev.args["dataProvider"], "compute_provider": ev.args["computeProvider"],
                     "data_offer_id": offer.offer_id, "compute_offer_id": cp_offer, "data_price_wei": consent.data_price,
                     "compute_price_wei": consent.compute_price, "cp_key_cid": cp_key_cid,
                     "compute_peer_id": str(rep.get("compute_peer_id") or ""),
                     "rows": int((offer.doc.get("dataset") or {}).get("rows") or 0) or None}
                self.matches[mid] = m
                self.ctx.state.put_match(MatchRecord(str(self.task_id), m["data_provider"], "matched", match_doc(m)))
                log.info("task %d: match %d recorded (data offer %d by %s, compute offer %d by %s)", self.task_id, mid,
                         offer.offer_id, m["data_provider"], cp_offer, m["compute_provider"])
        except (neg.Refused, DainodeError) as exc:
            if isinstance(exc, P2PError):
                self.unreachable.add(offer.offer_id)
            log.info("task %d: data offer %d not matched: %s", self.task_id, offer.offer_id, exc)

    # --- rounds (§4.4 (a)-(c)) ------------------------------------------------------------------

    async def _intake(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self.tc.subscribe(self.intake_consumer, TASK_EVENTS, self.task_id) as sub:
            task_status.started()
            async with trio.open_nursery() as n:
                async for ev in sub:
                    if ev.name == "UpdateSubmitted" and not ev.removed:
                        n.start_soon(self._take_update, ev)

    def pushed_update(self, rnd: int, mid: int, cid: str) -> None:
        """A CP pushed its round-`rnd` update (bytes held by the store, CID-checked): open it now, while its
        submitUpdate is mined; _take_update uses the result only if UpdateSubmitted names the same CID and CP."""
        m = self.matches.get(int(mid))
        bg = getattr(self, "_bg", None)
        if m is None or bg is None or (rnd, mid) in self._preopened or int(mid) in self.updates.get(int(rnd), {}):
            return
        slot = {"cid": str(cid), "cp": m["compute_provider"], "done": trio.Event(), "opened": None}
        self._preopened[(int(rnd), int(mid))] = slot

        async def open_now() -> None:
            try:
                blob = slot["blob"] = await fetch(self.ctx, cid)
                binding = UpdateBinding(self.ref, int(mid), int(rnd), slot["cp"])
                slot["opened"] = await trio.to_thread.run_sync(
                    lambda: open_update(blob, self.key.private, binding, self.manifest.model_spec, max_examples=m.get("rows")))
            except DainodeError:
                pass  # opened again, with the error recorded, when the event arrives
            finally:
                slot["done"].set()
        bg.start_soon(open_now)

    async def _take_update(self, ev) -> None:
        rnd, mid, cid = int(ev.args["round"]), int(ev.args["matchId"]), None
        if rnd < len(self.results):
            return  # a closed round's (a resumed run's backfill)
        slot = self.updates.setdefault(rnd, {})
        if mid in slot:
            return  # at-least-once delivery: seen
        from dainode.roles.taskchain import event_cid

        cid = str(event_cid(ev.args["cid"], ev.args["codec"]))
        entry = {"cid": cid, "status": "pending", "detail": "", "opened": None, "block": ev.block_number,
                 "at": trio.current_time(), "event_at": time.time()}
        slot[mid] = entry
        m = self.matches.get(mid, {})
        pre = self._preopened.pop((rnd, mid), None)
        blob = None
        try:
            t0 = trio.current_time()
            if pre is not None and pre["cid"] == cid and pre["cp"].lower() == str(ev.args["computeProvider"]).lower():
                await pre["done"].wait()
            if pre is not None and pre["opened"] is not None and pre["cid"] == cid \
                    and pre["cp"].lower() == str(ev.args["computeProvider"]).lower():
                entry["opened"], entry["ahead"] = pre["opened"], True  # opened from the push, before the event
                blob = pre.get("blob")
                entry["fetch_ms"], entry["open_ms"] = 0.0, _ms(trio.current_time() - t0)
            else:
                blob = await self._fetch_update(cid, rnd, mid)
                if blob is None:
                    return  # the round closed without it: left out as late, never called malformed
                t1 = trio.current_time()
                binding = UpdateBinding(self.ref, mid, rnd, ev.args["computeProvider"])
                if self.he is not None:
                    entry["opened"] = await self.he.open(blob, binding, rnd, m.get("rows"))
                else:
                    entry["opened"] = await trio.to_thread.run_sync(
                        lambda: open_update(blob, self.key.private, binding, self.manifest.model_spec, max_examples=m.get("rows")))
                entry["fetch_ms"], entry["open_ms"] = _ms(t1 - t0), _ms(trio.current_time() - t1)
            entry["status"] = "ok"
        except DocumentRejected as exc:
            entry["status"], entry["detail"] = exc.reason, exc.detail
        except DainodeError as exc:
            entry["status"], entry["detail"] = "malformed", str(exc)
        if blob is not None:
            self._keep(cid, blob)
        if entry["status"] != "ok":
            from dainode.roles.rejections import UPDATES, rejections

            rejections(self.ctx).count(UPDATES, entry["status"], task_id=self.task_id)
            log.warning("task %d round %d: match %d's update %s rejected: %s: %s", self.task_id, rnd, mid, cid,
                        entry["status"], entry["detail"])
        self._changed.set()

    def _keep(self, cid: str, blob: bytes) -> None:
        """Store and pin an update this node judged (off the round's path): a pushed copy is only held in memory, and
        the update must stay fetchable for `task verify` after its compute provider is gone."""
        async def keep() -> None:
            try:
                if str(await self.ctx.content.put_bytes(blob)) != str(cid):
                    log.warning("task %d: update %s stored under another CID", self.task_id, cid)
            except DainodeError as exc:
                log.warning("task %d: could not keep update %s for verifiers: %s", self.task_id, cid, exc)

        bg = getattr(self, "_bg", None)
        if bg is not None:  # None only before the run's nursery is up (unit tests driving one step)
            bg.start_soon(keep)

    async def _fetch_update(self, cid: str, rnd: int, mid: int) -> bytes | None:
        """An update's bytes, asked for again while round `rnd` is open (None once it closed): a provider that is
        unreachable for a while has not sent a malformed update, and must not be rejected (and unpaid) as one."""
        while True:
            try:
                return await fetch(self.ctx, cid)
            except FetchTimeout as exc:
                if rnd < len(self.results):
                    return None
                log.info("task %d round %d: match %d's update not fetched yet (%s); asking again", self.task_id, rnd,
                         mid, exc)

    async def _warm_up(self, params: np.ndarray) -> None:
        """Compile the evaluation for the test set's shapes while the first updates are on their way, so the
        first round does not pay for JIT start-up (its result is thrown away)."""
        from dainode.tasks.rounds import evaluate_params

        try:
            await trio.to_thread.run_sync(lambda: evaluate_params(self.manifest, params, self.test))
        except Exception as exc:  # a warm-up only: the round itself reports real errors
            log.debug("task %d: evaluation warm-up failed: %s", self.task_id, exc)

    async def wait_change(self, until: float) -> None:
        self._changed = trio.Event()
        with trio.move_on_at(until):
            await self._changed.wait()

    async def rounds(self) -> None:
        from dainode.tasks.rounds import initial_params

        params = self.resume_params if self.results else initial_params(self.manifest)
        if self.he is not None:
            self.he.set_params(len(self.results), params)  # the model round len(results) trains on
        self._bg.start_soon(self._warm_up, params)
        for t in range(len(self.results), self.manifest.task.rounds):
            params = await self.round(t, params)
            if params is None:
                return
        self.final_params = params

    async def abandon_below_quorum(self, t: int, accepted: int) -> None:
        """The providers fell below quorum for good: end the task as the contract allows (the open round's accepted
        updates are paid, the bonus and unearned compute pay go to the data providers that provided data)."""
        self.failures.append(f"round {t}: {accepted} accepted update(s), quorum {self.quorum}, for {self.lost_rounds} "
                             f"round(s) running (task.quorum_lost_rounds = {self.manifest.task.quorum_lost_rounds}); "
                             "task abandoned")
        log.warning("task %d: %s", self.task_id, self.failures[-1])
        self.save()  # the reason is durable before the chain says "abandoned" (task_status reads both)
        await self.step_tx("abandon", "abandon", self.task_id)
        self.phase = "abandoned"
        self.save()
        await auto_withdraw(self.ctx, self.tc, f"task {self.task_id} abandoned")

    async def wait_updates(self, t: int, window_end: float, chain_end: float, limit: int) -> None:
        """Until round `t` can close: every match settled with a quorum, or the quorum plus the grace, or the window's
        end. Below quorum the contract refuses the publish until its own round window has ended (chain_end), also
        when every update is already in and rejected: a round lost to garbage still waits for that."""
        n = len(self.matches)
        quorum_at = None
        while True:
            ups = self.updates.get(t, {})
            settled = [u for u in ups.values() if u["status"] != "pending"]
            accepted = sum(1 for u in settled if u["status"] == "ok")
            now = trio.current_time()
            if len(settled) >= n and accepted >= self.quorum:
                break
            if accepted >= self.quorum:
                quorum_at = quorum_at or now
                if now >= quorum_at + self.grace_s or now >= window_end:
                    break
                await self.wait_change(min(quorum_at + self.grace_s, window_end))
                continue
            if now >= window_end and limit and self.lost_rounds + 1 >= limit:
                break  # below quorum at the window's end and it would be the last lost round: no need to wait on
            if now >= max(window_end, chain_end):
                break
            await self.wait_change(window_end if now < window_end else chain_end)

    async def round(self, t: int, params: np.ndarray) -> np.ndarray | None:
        from dainode.tasks.rounds import aggregate_round

        opened = trio.current_time()
        window_end = opened + self.manifest.task.round_window_s
        chain_task = await self.tc.task(self.task_id)
        chain_end = opened + max(0.0, chain_task.round_start + chain_task.round_duration - await self.tc.clock()) + 1.0
        limit = self.manifest.task.quorum_lost_rounds or 0
        await self.wait_updates(t, window_end, chain_end, limit)
        # an update the chain already holds but this node has not opened yet counts: `task verify` lets the model
        # provider leave out as late only one that landed with the publish or after it, so wait for it (bounded
        # by the round's end on chain)
        pending_end = min(trio.current_time() + PENDING_WAIT_S, chain_end)
        while (any(u["status"] == "pending" for u in self.updates.get(t, {}).values())
               and trio.current_time() < pending_end):
            await self.wait_change(pending_end)
        t_in = trio.current_time()
        snapshot = dict(self.updates.get(t, {}))
        # garbage is rejected on chain, with evidence anyone can check once the key is out
        excluded, cids = [], {}
        for mid, u in sorted(snapshot.items()):
            if u["status"] == "ok":
                cids[mid] = u["cid"]
                continue
            if u["status"] == "pending":
                excluded.append({"match_id": mid, "cid": u["cid"], "reason": "late", "detail": "not opened by the cut-off"})
                continue
            excluded.append({"match_id": mid, "cid": u["cid"], "reason": u["status"], "detail": u["detail"]})
            ev_cid = await put_json(self.ctx, rejection_document(self.ref, t, mid, u["cid"], u["status"], u["detail"]))
            from dainode.roles.taskchain import chain_cid

            try:
                await self.step_tx(f"reject-{t}-{mid}", "rejectUpdate", self.task_id, mid, t, *chain_cid(ev_cid))
            except TransactionReverted as exc:
                log.warning("task %d round %d: rejecting match %d's update failed: %s", self.task_id, t, mid, exc)
            log.info("task %d round %d: rejected match %d's update %s (%s)", self.task_id, t, mid, u["cid"], u["status"])
        # garbage is rejected on chain first: an abandon pays the open round's accepted updates
        n_ok = sum(1 for u in snapshot.values() if u["status"] == "ok")
        self.lost_rounds = self.lost_rounds + 1 if n_ok < self.quorum else 0
        if limit and self.lost_rounds >= limit:
            await self.abandon_below_quorum(t, n_ok)
            return None
        accepted = [u["opened"] for mid, u in sorted(snapshot.items()) if u["status"] == "ok"]
        from dainode.tasks.rounds import evaluate_outcome

        def aggregate_and_evaluate():  # one thread hop for both (a worker thread: no trio clock here)
            a = time.perf_counter()
            o = aggregate_round(self.manifest, t, params, accepted, None)
            b = time.perf_counter()
            evaluate_outcome(self.manifest, o, self.test)
            return o, b - a
        out, agg_s = await trio.to_thread.run_sync(aggregate_and_evaluate)
        t_agg = trio.current_time()
        recipients = [m["cp_key"].key for m in self.matches.values()] + [self.key.public.key]
        if self.he is not None:
            recipients = [self.key.public.key]  # he: the computation providers get the CKKS-encrypted model only
        blob = seal_global_model(ModelBinding(self.ref, t + 1, self.ctx.keys.address), out.params, recipients)
        t_seal = trio.current_time()
        # CIDs first, so the push travels while the documents are stored and the tx is mined
        model_cid = await self.ctx.content.hash_bytes(blob)
        result = out.result(cids, excluded, model_cid=str(model_cid))
        if self.he is not None:
            result = replace(result, he_model_cid=await self.he.publish(t + 1, out.params))
        result_bytes = result.to_bytes()
        result_cid = await self.ctx.content.hash_bytes(result_bytes)
        push_start_at = time.time()
        self._bg.start_soon(self.push_model, t, result, result_cid, blob, model_cid)
        if await self.ctx.content.put_bytes(blob) != model_cid or await self.ctx.content.put_bytes(result_bytes) != result_cid:
            raise TaskError(f"round {t}: the store gave the round's documents other CIDs than hashing them did")
        t_put = trio.current_time()
        from dainode.roles.taskchain import chain_cid

        tx_parts: dict = {}
        await self.step_tx(f"round-{t}", "publishGlobalModel", self.task_id, t, *chain_cid(result_cid),
                           intent={"round": t, "result_cid": str(result_cid)}, timings=tx_parts)
        t_pub = trio.current_time()
        self.outcomes.append(out)
        self.results.append(result)
        timing = {"round": t, "wait_updates_ms": _ms(t_in - opened), "aggregate_eval_ms": _ms(t_agg - t_in),
                  "aggregate_ms": _ms(agg_s), "evaluate_ms": _ms(t_agg - t_in - agg_s), "seal_ms": _ms(t_seal - t_agg),
                  "put_ms": _ms(t_put - t_seal), "publish_ms": _ms(t_pub - t_agg), "publish_tx_ms": _ms(t_pub - t_put),
                  "tx": tx_parts, "total_ms": _ms(t_pub - opened), "published_at": time.time(), "push_start_at": push_start_at,
                  "updates": {str(mid): {k: u.get(k) for k in ("event_at", "fetch_ms", "open_ms", "status", "ahead")}
                              for mid, u in sorted(snapshot.items())}}
        if self.he is not None:
            timing.update(self.he.round_sizes(t))  # bytes moved in this round (he)
        self.timings.append(timing)
        metrics.round_done(t_pub - opened)
        metrics.updates(snapshot)
        self.ctx.state.put_round(RoundRecord(str(self.task_id), t, "published",
                                             {"result_cid": str(result_cid), "model_cid": str(model_cid), **timing,
                                              "accuracy": out.accuracy, "loss": out.loss}))
        self.save()
        log.info("task %d round %d: %d update(s) in, accuracy %.4f loss %.4f, %.0f ms", self.task_id, t, len(accepted),
                 out.accuracy, out.loss, timing["total_ms"])
        self._bg.start_soon(self._round_notice, t, str(result_cid), str(model_cid))  # a notice: not on the round's path
        return out.params

    async def _round_notice(self, t: int, result_cid: str, model_cid: str) -> None:
        try:
            await self.ctx.gossip.publish(TASKS_TOPIC, GOSSIP_ROUND, {"task_id": self.task_id, "round": t,
                                                                     "result_cid": result_cid, "model_cid": model_cid})
        except DainodeError as exc:
            log.debug("round notice not sent: %s", exc)

    async def push_model(self, t: int, result, result_cid, blob: bytes, model_cid) -> None:
        if self.he is not None or not neg.pushes_enabled() or t + 1 >= self.manifest.task.rounds or len(blob) > neg.MAX_PUSH - 64 * 1024:
            return  # nobody trains on the final model; a large one goes by bitswap
        msg = {"v": neg.VERSION, "type": neg.ROUND_MODEL, "task_id": self.task_id, "round": t, "result": result.to_bytes(),
               "result_cid": str(result_cid), "model": blob, "model_cid": str(model_cid)}

        async def one(peer: str) -> None:
            try:
                rep = await self.role.negotiator.request(peer, msg, neg.PUSH_TIMEOUT_S)
                if not rep.get("ok"):
                    log.info("task %d round %d: %s refused the model push: %s", self.task_id, t, peer, rep.get("detail"))
            except DainodeError as exc:
                log.info("task %d round %d: model push to %s failed (%s); it fetches by CID", self.task_id, t, peer, exc)

        async with trio.open_nursery() as n:
            for peer in sorted({m.get("compute_peer_id") for m in self.matches.values()} - {None, ""}):
                n.start_soon(one, peer)

    # --- rewards (§4.5) ---------------------------------------------------------------------

    async def rewards(self) -> None:
        from dainode.chain.training_task import Phase
        from dainode.roles.taskchain import chain_cid
        from dainode.tasks.split import SplitReport, make_split

        self.phase = "split"
        step = self.ctx.state.get_step(self.sid("split"))
        if step is not None and step.intent.get("report_cid"):  # a restart after the split was made: that split
            split = SplitReport.from_bytes(await fetch(self.ctx, step.intent["report_cid"]))
        else:
            ts = await self.tc.task(self.task_id)
            ids = sorted(self.matches)
            split = await trio.to_thread.run_sync(
                lambda: make_split(self.manifest, self.ref, int(ts.bonus), self.outcomes, ids, self.test))
            split = self.role.adjust_split(split)  # identity; a test may patch it to post another split
        self.split = split
        report_cid = await self.ctx.content.put_bytes(split.to_bytes())
        await self.step_tx("split", "postSplit", self.task_id, split.bonuses_list(), *chain_cid(report_cid),
                           intent={"report_cid": str(report_cid)})
        self.phase = "split_posted"
        self.save(report_cid=str(report_cid))
        reveal = self.key.reveal_document()
        if self.he is not None:
            reveal["he_secret_context_cid"] = await self.he.reveal()  # anyone can now decrypt every he update
        key_cid = await put_json(self.ctx, reveal)
        await self.step_tx("reveal-key", "revealKey", self.task_id, *chain_cid(key_cid))
        test_cid = await self.ctx.content.put_bytes(self.test_bytes)
        if str(test_cid) != self.test_cid:
            raise TaskError(f"the test set now has CID {test_cid}, the commitment was over {self.test_cid}")
        await self.step_tx("reveal-test", "revealTestSet", self.task_id, *chain_cid(test_cid), self.salt)
        ts = await self.tc.task(self.task_id)
        end = ts.revealed_at + ts.challenge_window
        log.info("task %d: split posted, key and test set revealed; finalizing after the challenge window (%d s)",
                 self.task_id, ts.challenge_window)
        while ts.phase != Phase.FINAL:
            wait = end + 1 - await self.tc.clock()  # the contract counts by block time
            if wait > 0 and await self.tc.dev_travel_to(end + 1):
                continue
            if wait > 0:
                await trio.sleep(min(wait, FINALIZE_POLL_S))
                continue
            try:
                await self.step_tx("finalize", "finalize", self.task_id, split.bonuses_list())
                break
            except TransactionReverted as exc:
                if exc.error_name != "TooEarly":
                    raise
                end = time.time() + 1
        self.phase = "final"
        await self.write_report()
        self.save()
        try:
            await self.ctx.gossip.publish(TASKS_TOPIC, GOSSIP_DONE, {"task_id": self.task_id, "phase": "final",
                                                                    "report_cid": str(report_cid)})
        except DainodeError:
            pass
        if self.role.auto_withdraw:
            await auto_withdraw(self.ctx, self.tc, f"task {self.task_id} final")

    async def write_report(self) -> None:
        from dainode.tasks.report import write_report

        payouts = {}
        credited: dict[str, int] = {}
        for ev in await self.tc.logs(self.task_id, ["RewardCredited"]):
            credited[ev.args["account"].lower()] = credited.get(ev.args["account"].lower(), 0) + int(ev.args["amount"])
        bonuses = self.split.bonuses if self.split else {}
        for mid, m in sorted(self.matches.items()):
            payouts[mid] = {"data_provider": m["data_provider"], "compute_provider": m["compute_provider"],
                            "data_price_wei": int(m["data_price_wei"]), "compute_price_wei": int(m["compute_price_wei"]),
                            "bonus_wei": int(bonuses.get(mid, 0)),
                            "paid_wei": int(m["data_price_wei"]) + int(bonuses.get(mid, 0))}
        out = Path(self.ctx.data_dir) / "tasks" / str(self.task_id)
        final = self.final_params
        await trio.to_thread.run_sync(lambda: write_report(out, self.manifest, self.results, self.split, payouts=payouts,
                                                           final_params=final, extra={"timings": self.timings,
                                                                                      "failures": self.failures}))
        self.report_dir = str(out)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _leaves(group: BaseExceptionGroup):
    """The exceptions inside `group`, nested groups (nurseries inside nurseries) flattened."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
