"""The data provider's side of a task: answer match requests (policy, escrow proof, a compute provider) and provide data once."""

from __future__ import annotations

import logging
import time

import trio

from dainode.chain.consent import MatchConsent
from dainode.errors import DainodeError, TransactionReverted
from dainode.roles import negotiate as neg
from dainode.roles.taskdocs import auto_withdraw, fetch_json, node_roles, opened_task
from dainode.state import TaskRecord
from dainode.tasks.matching import data_offer_misfits

log = logging.getLogger("dainode.tasks")

SOURCE_KIND = "data_source"
MIN_DATA_PRICE_WEI = 0  # the node's own floor on top of its offer's price


def source_step_id(offer_key: str) -> str:
    return f"data-source-{offer_key}"


def record_id(task_id: int, offer_id: int) -> str:
    return f"dp-{int(task_id)}-{int(offer_id)}"


class DataTasks:
    """Installed by DataRole: the match_request handler and the MatchRecorded -> provideData follower."""

    def __init__(self, role):
        self.role, self.ctx = role, role.ctx
        self.tc = None

    def start(self, tc, negotiator) -> None:
        self.tc, self.negotiator = tc, negotiator
        negotiator.add(neg.MATCH_REQUEST, self.on_match_request)

    def own_offer(self, offer_id: int):
        for o in self.ctx.state.list_own_offers("data"):
            if o.offer_id == offer_id and o.active:
                return o
        return None

    async def on_match_request(self, msg: dict, peer: str) -> dict:
        tc = self.tc
        task_id, offer_id = neg.need(msg, "task_id", int), neg.need(msg, "data_offer_id", int)
        price, max_cp = neg.wei(msg, "data_price_wei"), neg.wei(msg, "max_compute_price_wei")
        deadline = neg.need(msg, "deadline", int)
        if neg.need(msg, "chain_id", int) != tc.chain_id or neg.need(msg, "task_address", str).lower() != tc.address.lower():
            raise neg.Refused("wrong_task", f"this node follows TrainingTask {tc.address} on chain {tc.chain_id}")
        if not time.time() < deadline <= time.time() + 3600:
            raise neg.Refused("malformed", f"consent deadline {deadline} must be in the next hour")
        own = self.own_offer(offer_id)
        if own is None:
            raise neg.Refused("unknown_offer", f"data offer {offer_id} is not an active offer of this node")
        if price < max(own.price_wei, MIN_DATA_PRICE_WEI):
            raise neg.Refused("price", f"offered {price} wei, the offer asks {own.price_wei}")
        rec = self.ctx.state.get_task(record_id(task_id, offer_id))
        if rec is not None and (rec.status != "consented" or await self.recorded(task_id, offer_id)):
            raise neg.Refused("busy", f"data offer {offer_id} already consented to task {task_id}")
        # (a consent the chain never recorded, e.g. the model provider crashed before recordMatch: consent again)
        task = await opened_task(self.ctx, tc, task_id)
        if task.manifest_cid != neg.need(msg, "manifest_cid", str):
            raise neg.Refused("wrong_task", f"task {task_id} was opened with manifest {task.manifest_cid}")
        misfits = data_offer_misfits(task.manifest, own.doc, price)
        if misfits:
            raise neg.Refused("schema", "; ".join(misfits))
        if max_cp > task.manifest.task.max_compute_price_wei:
            raise neg.Refused("malformed", "max_compute_price_wei is above the manifest's")
        ts = await tc.task(task_id)
        from dainode.chain.training_task import Phase

        if ts.phase != Phase.MATCHING:
            raise neg.Refused("wrong_task", f"task {task_id} is in phase {ts.phase.name}, not MATCHING")
        if ts.bonus < price + max_cp:
            raise neg.Refused("escrow", f"task {task_id} has {ts.bonus} wei unreserved, the match needs {price + max_cp}")
        proven = await tc.verified_contract_balance()  # eth_getProof against the header: the money is really there
        if proven < ts.escrow:
            raise neg.Refused("escrow", f"TrainingTask holds {proven} wei (proven), less than task {task_id}'s escrow {ts.escrow}")
        cp = await self.pick_compute(task, offer_id, price, max_cp, deadline)
        consent = MatchConsent(task_id, offer_id, cp["compute_offer_id"], price, cp["compute_price"], deadline)
        sig = tc.sign_consent(consent)
        self.ctx.state.put_task(TaskRecord(record_id(task_id, offer_id), "data", "consented", {
            "task_id": task_id, "data_offer_id": offer_id, "offer_key": own.key, "compute_offer_id": cp["compute_offer_id"],
            "compute_provider": cp["compute_provider"], "cp_key_cid": cp["cp_key_cid"], "data_price_wei": str(price),
            "compute_price_wei": str(cp["compute_price"])}))
        log.info("task %d: consented with data offer %d, compute offer %d by %s", task_id, offer_id, cp["compute_offer_id"],
                 cp["compute_provider"])
        return neg.reply(neg.MATCH_REQUEST, compute_offer_id=cp["compute_offer_id"], compute_price_wei=str(cp["compute_price"]),
                         data_signature=sig, compute_signature=cp["signature"], cp_key_cid=cp["cp_key_cid"],
                         compute_provider=cp["compute_provider"], compute_peer_id=cp["compute_peer_id"],
                         data_provider=tc.account)

    async def recorded(self, task_id: int, offer_id: int) -> bool:
        """Whether the chain has a MatchRecorded of `offer_id` in `task_id`."""
        return any(int(ev.args["dataOfferId"]) == int(offer_id) for ev in await self.tc.logs(task_id, ["MatchRecorded"]))

    def compute_candidates(self, max_cp: int, data_price: int) -> list:
        """This node's own compute offer first (its data then never leaves the machine), then the cheapest in the index."""
        own = [o for o in self.ctx.state.list_own_offers("compute") if o.active and o.offer_id is not None]
        if own and "compute" in node_roles(self.ctx):
            return [own[0]]
        out = [o for o in self.ctx.state.list_seen_offers("compute", active=True)
               if o.doc and o.peer_id and o.price_wei <= max_cp and o.price_wei < max(data_price, 1)]
        return sorted(out, key=lambda o: (o.price_wei, o.offer_id))

    async def pick_compute(self, task, offer_id: int, price: int, max_cp: int, deadline: int) -> dict:
        tried = []
        for o in self.compute_candidates(max_cp, price):
            peer = o.peer_id or self.ctx.keys.peer_id
            msg = {"v": neg.VERSION, "type": neg.COMPUTE_REQUEST, "chain_id": task.ref.chain_id,
                   "task_address": task.ref.task_address, "task_id": task.task_id, "manifest_cid": task.manifest_cid,
                   "data_offer_id": offer_id, "compute_offer_id": o.offer_id, "data_price_wei": str(price),
                   "compute_price_wei": str(o.price_wei), "deadline": deadline, "data_provider": self.tc.account}
            try:
                rep = await self.negotiator.request(peer, msg, neg.COMPUTE_TIMEOUT_S)
            except DainodeError as exc:
                tried.append(f"{o.offer_id}: {exc}")
                continue
            if not rep.get("ok"):
                tried.append(f"{o.offer_id}: {rep.get('reason')} ({rep.get('detail')})")
                continue
            consent = MatchConsent(task.task_id, offer_id, o.offer_id, price, o.price_wei, deadline)
            sig = neg.need(rep, "compute_signature", bytes)
            try:
                self.tc.verify_consent(consent, sig, o.owner)
            except DainodeError as exc:
                tried.append(f"{o.offer_id}: bad signature: {exc}")
                continue
            return {"compute_offer_id": o.offer_id, "compute_price": o.price_wei, "signature": sig,
                    "compute_peer_id": str(rep.get("compute_peer_id") or peer),
                    "cp_key_cid": neg.need(rep, "cp_key_cid", str), "compute_provider": o.owner}
        raise neg.Refused("no_compute", "no computation provider accepted: " + ("; ".join(tried) or "none fits the price"))

    # --- after the match: the data, once per task --------------------------------------------

    async def follow(self) -> None:
        tc = self.tc
        consumer = f"task-dp-{int(time.time() * 1000)}"  # full backfill at each start: provide steps are idempotent
        async with tc.subscribe(consumer, ["MatchRecorded", "TaskFinalized", "TaskAbandoned"]) as sub:
            async for ev in sub:
                if ev.removed:
                    continue
                try:
                    if ev.name == "MatchRecorded" and ev.args["dataProvider"].lower() == tc.account.lower():
                        await self.provide(ev)
                    elif ev.name in ("TaskFinalized", "TaskAbandoned"):
                        if any(r.task_id.startswith(f"dp-{int(ev.args['taskId'])}-") for r in self.ctx.state.list_tasks("data")):
                            if self.role.auto_withdraw:
                                await auto_withdraw(self.ctx, tc, f"task {ev.args['taskId']} {ev.name}")
                except DainodeError as exc:
                    log.error("data provider: %s of task %s not handled: %s", ev.name, ev.args.get("taskId"), exc)

    async def provide(self, ev) -> None:
        from dainode.roles.taskchain import chain_cid
        from dainode.tasks.documents import DataBinding, seal_training_data
        from dainode.tasks.keys import TaskPublicKey
        from dainode.tasks.sealed import TaskRef

        task_id, match_id, offer_id = int(ev.args["taskId"]), int(ev.args["matchId"]), int(ev.args["dataOfferId"])
        rec = self.ctx.state.get_task(record_id(task_id, offer_id))
        if rec is None:
            return  # not consented by this node (or its state was lost): nothing to provide
        sid = f"provide-{task_id}-{match_id}"
        step = self.ctx.state.begin_step(sid, "task_provide", {"task_id": task_id, "match_id": match_id})
        if step.finished:
            return
        if "data_cid" not in step.effect:
            src = self.ctx.state.get_step(source_step_id(rec.doc["offer_key"]))
            if src is None:
                raise DainodeError(f"offer {offer_id}: this node does not know which dataset it was made from")
            from dainode.ml.dataoffer import load_spec

            ds = await trio.to_thread.run_sync(lambda: load_spec(src.intent["dataset"], src.intent.get("label")))
            pub = TaskPublicKey.from_document(await fetch_json(self.ctx, rec.doc["cp_key_cid"]))
            binding = DataBinding(TaskRef(self.tc.chain_id, self.tc.address, task_id), match_id, self.tc.account)
            task = await opened_task(self.ctx, self.tc, task_id)
            if task.manifest.task.privacy == "he":  # CKKS-encrypted first, then sealed (paper §4.3 step 3)
                from dainode.roles.he_compute import seal_data

                blob = await seal_data(self.ctx, task, binding, ds.x, ds.y, [pub.key])
            else:
                blob = await trio.to_thread.run_sync(lambda: seal_training_data(binding, ds.x, ds.y, [pub.key]))
            cid = await self.ctx.content.put_bytes(blob)
            step = self.ctx.state.record_effect(sid, data_cid=str(cid))
        try:
            receipt = await self.tc.send("provideData", task_id, match_id, *chain_cid(step.effect["data_cid"]),
                                         *chain_cid(rec.doc["cp_key_cid"]), state=self.ctx.state, step_id=sid)
        except TransactionReverted as exc:
            if exc.error_name != "AlreadyProvided":
                raise
            receipt = {"transactionHash": None}
        self.ctx.state.finish_step(sid, {"tx": receipt["transactionHash"], "data_cid": step.effect["data_cid"]})
        self.ctx.state.put_task(TaskRecord(rec.task_id, "data", "provided", {**rec.doc, "match_id": match_id}))
        log.info("task %d match %d: data provided (%s), sealed for the compute provider only", task_id, match_id,
                 step.effect["data_cid"])
