"""`task_list` and `task_status` on any node: what the chain's events say about a task, plus what this node recorded."""

from __future__ import annotations

import json
import logging
from typing import Any

import trio

from dainode.chain.training_task import CreditKind, Phase
from dainode.errors import DainodeError, RpcError
from dainode.service import Service

log = logging.getLogger("dainode.tasks")

PHASES = {Phase.NONE: "none", Phase.MATCHING: "matching", Phase.TRAINING: "training", Phase.SPLIT_POSTED: "split_posted",
          Phase.CHALLENGED: "challenged", Phase.FINAL: "final", Phase.ABANDONED: "abandoned"}


class TaskQueries(Service):
    """Admin RPC task_list / task_status; needs a chain with TrainingTask (every node with --chain)."""

    name = "tasks"

    def __init__(self, ctx):
        self.ctx = ctx
        self.tc = None
        self._results: dict[str, dict] = {}  # round-result documents by CID (immutable)
        self.announcements = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self.ctx.chain is not None:
            from dainode.roles.taskchain import TaskChain

            try:
                self.tc = TaskChain(self.ctx.chain, patience_s=0)  # a user waits on these: fail fast
            except DainodeError as exc:
                log.info("task queries unavailable: %s", exc)
        if self.tc is None:
            task_status.started()
            await trio.sleep_forever()
        from dainode.roles.taskannounce import TaskAnnouncements

        self.announcements = TaskAnnouncements(self.ctx, self.tc)
        async with trio.open_nursery() as n:
            n.start_soon(self.announcements.run)
            task_status.started()
            await trio.sleep_forever()

    def rpc_methods(self) -> dict[str, Any]:
        return {"task_list": self.rpc_list, "task_status": self.rpc_status}

    def _need_chain(self):
        if self.tc is None:
            raise RpcError(RpcError.APPLICATION_ERROR, "this node has no chain with TrainingTask; start it with --chain")
        return self.tc

    async def rpc_list(self) -> list[dict]:
        """Tasks this node takes part in (model, data, compute), by task id, with their phase."""
        tc = self._need_chain()
        ids: dict[int, set] = {}
        for rec in self.ctx.state.list_tasks():
            tid = rec.doc.get("task_id", rec.task_id)
            try:
                ids.setdefault(int(tid), set()).add(rec.role)
            except (TypeError, ValueError):
                continue
        out = []
        for tid in sorted(ids):
            ts = await tc.task(tid)
            local = self.ctx.state.get_task(str(tid))
            out.append({"task_id": tid, "roles": sorted(ids[tid]), "phase": PHASES.get(ts.phase, "?"),
                        "round": int(ts.round), "rounds": int(ts.rounds),
                        "name": (local.doc.get("name") if local else None)})
        return out

    async def _result(self, cid: str) -> dict | None:
        if cid not in self._results:
            from dainode.roles.taskdocs import fetch_json

            try:
                self._results[cid] = await fetch_json(self.ctx, cid, timeout=5)
            except DainodeError:
                return None
        return self._results[cid]

    async def rpc_status(self, task_id: int) -> dict:
        """Phase, round, history, matches with updates and pay, pool, refund, payouts, failures, report dir."""
        from dainode.roles.taskchain import event_cid

        tc = self._need_chain()
        try:
            task_id = int(task_id)
        except (TypeError, ValueError):
            raise RpcError(RpcError.INVALID_PARAMS, f"task id must be an integer, got {task_id!r}") from None
        logs = await tc.logs(task_id)
        opened = [e for e in logs if e.name == "TaskOpened"]
        if not opened:
            raise RpcError(RpcError.APPLICATION_ERROR, f"task {task_id} does not exist on TrainingTask {tc.address}")
        ts = await tc.task(task_id)
        local = self.ctx.state.get_task(str(task_id))
        ldoc = local.doc if local else {}
        matches: dict[int, dict] = {}
        for e in logs:
            a = e.args
            if e.name == "MatchRecorded":
                matches[int(a["matchId"])] = {
                    "match_id": int(a["matchId"]), "data_provider": a["dataProvider"], "compute_provider": a["computeProvider"],
                    "data_offer_id": int(a["dataOfferId"]), "compute_offer_id": int(a["computeOfferId"]),
                    "data_price_wei": int(a["dataPrice"]), "compute_price_wei": int(a["computePrice"]),
                    "data_provided": False, "updates_accepted": 0, "updates_rejected": [], "_rounds": set(),
                    "compute_earned_wei": 0, "bonus_wei": 0}
        published: list[tuple[int, str]] = []
        bonuses: list[int] = []
        refund = 0
        credited: dict[str, int] = {}
        final = ts.phase == Phase.FINAL
        for e in logs:
            a = e.args
            m = matches.get(int(a.get("matchId", -1))) if "matchId" in a else None
            if e.name == "DataProvided" and m:
                m["data_provided"] = True
            elif e.name == "UpdateSubmitted" and m:
                m["_rounds"].add(int(a["round"]))
            elif e.name == "UpdateRejected" and m:
                m["_rounds"].discard(int(a["round"]))
                m["updates_rejected"].append({"round": int(a["round"]),
                                              "evidence_cid": str(event_cid(a["evidenceCid"], a["evidenceCodec"]))})
            elif e.name == "GlobalModelPublished":
                published.append((int(a["round"]), str(event_cid(a["cid"], a["codec"]))))
            elif e.name in ("SplitPosted", "SplitReplaced"):
                bonuses = [int(b) for b in a["bonuses"]]
            elif e.name == "RewardCredited":
                acct = a["account"].lower()
                credited[acct] = credited.get(acct, 0) + int(a["amount"])
                if int(a["kind"]) == CreditKind.REFUND:
                    refund += int(a["amount"])
        closed = {r for r, _ in published}
        R = int(ts.rounds)
        for mid, m in matches.items():
            ok = m.pop("_rounds") & closed
            m["updates_accepted"] = len(ok)
            m["rounds_accepted"] = sorted(ok)
            p = m["compute_price_wei"]
            m["compute_earned_wei"] = sum(p * (r + 1) // R - p * r // R for r in ok)
            if mid < len(bonuses):
                m["bonus_wei"] = bonuses[mid]
            m["earned_wei"] = (m["data_price_wei"] if m["data_provided"] else 0) + (m["bonus_wei"] if final else 0)
            m["paid_wei"] = m["earned_wei"] if m["data_provided"] else 0
        # reasons of rejections, from the evidence documents (any node can read them)
        for m in matches.values():
            for rj in m["updates_rejected"]:
                doc = await self._result(rj["evidence_cid"])
                rj["reason"] = (doc or {}).get("reason", "?")
        history = ldoc.get("history")
        if not history:
            history = []
            for r, cid in sorted(published):
                doc = await self._result(cid)
                if doc:
                    history.append({"round": r, "accuracy": doc.get("accuracy"), "loss": doc.get("loss")})
        from dainode.roles.rejections import rejections

        rejected = rejections(self.ctx).snapshot(task_id)  # this node's own refusals; updates: as the model provider saw them
        rejected["updates_on_chain"] = {}
        for m in matches.values():
            for rj in m["updates_rejected"]:
                rejected["updates_on_chain"][rj["reason"]] = rejected["updates_on_chain"].get(rj["reason"], 0) + 1
            m["updates_rejected_by_reason"] = {}
            for rj in m["updates_rejected"]:
                m["updates_rejected_by_reason"][rj["reason"]] = m["updates_rejected_by_reason"].get(rj["reason"], 0) + 1
        neg = getattr(self.ctx, "_negotiator", None)
        if neg is not None:
            rejected["negotiation"] = neg.stats()
        money = ("data_price_wei", "compute_price_wei", "compute_earned_wei", "bonus_wei", "earned_wei", "paid_wei")
        out_matches = [{k: (str(v) if k in money else v) for k, v in m.items()} for _, m in sorted(matches.items())]
        return {
            "task_id": task_id, "phase": PHASES.get(ts.phase, "?"), "round": len(closed), "rounds": R,
            "quorum": int(ts.quorum), "model_provider": opened[0].args["modelProvider"],
            "history": history, "matches": out_matches, "pool_wei": str(int(opened[0].args["pool"])),
            "bonus_wei": str(int(ts.bonus)), "escrow_wei": str(int(ts.escrow)), "bonuses_wei": [str(b) for b in bonuses],
            "refund_wei": str(refund), "credited_wei": {k: str(v) for k, v in sorted(credited.items())},
            "report_dir": ldoc.get("report_dir"), "failures": ldoc.get("failures", []), "timings": ldoc.get("timings", []),
            "stopped": ldoc.get("stopped"),
            "name": ldoc.get("name"), "rejections": rejected, **(await self._privacy(opened[0], ldoc)),
        }

    async def _privacy(self, opened, ldoc: dict) -> dict:
        """The task's privacy mode (from the manifest) and what each party can see in it."""
        from dainode.tasks.manifest import VISIBILITY

        privacy = ldoc.get("privacy")
        if privacy is None:
            from dainode.chain.training_task import event_cids
            from dainode.roles.taskdocs import fetch

            try:
                raw = await fetch(self.ctx, event_cids(opened)["manifest"], timeout=5)
                privacy = json.loads(raw)["task"]["privacy"]
            except (DainodeError, ValueError, KeyError, TypeError):
                privacy = None
        return {"privacy": privacy, "visibility": VISIBILITY.get(privacy)}
