"""AuditService on every node with a chain: admin `task_verify`, `task_watch`, `task_audits`; a data provider's automatic challenge.

Automatic challenge (nodes with the data role): on `KeyRevealed`/`TestSetRevealed` of a task in which
this node's account is a matched data provider, once both are out, verify the task; on FAIL put an
evidence document (`dainode.challenge-evidence/1`: the differences) on IPFS and call
`challenge(taskId, evidenceCid)`. Each audit is a State step `audit-<task_id>` (kind `task_audit`):
intent -> verdict -> evidence CID -> signed tx (hash + raw bytes, journaled before sending) ->
result, so a restart neither verifies-and-challenges twice nor forgets a verdict it reached.
"""

from __future__ import annotations

import json
import time
from typing import Any

import trio

from dainode.audit.gather import Gatherer
from dainode.errors import ChainError, DainodeError, TaskError, TransactionReverted
from dainode.service import Service
from dainode.tasks.evidence import check_payments, summary
from dainode.tasks.verify import Difference, VerifyResult

STEP_KIND = "task_audit"
EVIDENCE_SCHEMA = "dainode.challenge-evidence/1"
WATCH_WAIT_S = 10.0
WATCH_POLL_S = 0.25


def _task_id(value: Any) -> int:
    try:
        tid = int(value)
    except (TypeError, ValueError):
        tid = -1
    if isinstance(value, bool) or tid < 1:
        raise TaskError(f"task id must be a positive integer (the TaskOpened id), got {value!r}")
    return tid


class AuditService(Service):
    name = "audit"

    def __init__(self, ctx, chain, *, auto_challenge: bool = False):
        self.ctx = ctx
        self.chain = chain
        self.auto_challenge = auto_challenge
        self.gatherer = Gatherer(chain, ctx.content)
        self._verify_lock = trio.Lock()  # one recomputation at a time: they are CPU-heavy

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            if self.auto_challenge:
                nursery.start_soon(self._challenge_loop)
            await trio.sleep_forever()

    # --- verify ------------------------------------------------------------------------

    async def verify(self, task_id: int) -> dict:
        g = await self.gatherer.gather(task_id)
        tl = g.log
        diffs: list[Difference] = list(g.problems)
        res = VerifyResult(True)
        if not tl.revealed:
            diffs.append(Difference("reveal", "key revealed" if tl.key else "key not revealed",
                                    "key and test set revealed",
                                    "nothing can be recomputed before the model provider reveals (wait for the split)"))
        elif g.evidence is not None:
            async with self._verify_lock:
                from dainode.tasks.verify import verify_task

                res = await trio.to_thread.run_sync(verify_task, g.evidence)
            diffs += res.differences
            diffs += _chain_rejections(tl, g.evidence)
        diffs += check_payments(tl)
        ok = not diffs
        return {"task_id": tl.task_id, "ok": ok, "verdict": "PASS" if ok else "FAIL", "phase": tl.phase,
                "rounds": tl.rounds, "matches": len(tl.matches),
                "differences": [_diff_json(d) for d in diffs], "caveats": [_diff_json(d) for d in res.caveats],
                "history": res.history,
                "shares": {str(k): v for k, v in res.shares.items()},
                "posted_bonuses_wei": [str(b) for b in tl.posted_bonuses],
                "credits": [{"account": str(e.args["account"]), "amount_wei": str(e.args["amount"]), "kind": int(e.args["kind"])}
                            for e in tl.credits]}

    # --- watch -------------------------------------------------------------------------

    async def watch_state(self, task_id: int) -> dict:
        tl = await self.gatherer.task_log(task_id)
        out = summary(tl)
        history = []
        for r, ev in sorted(tl.models.items()):
            entry = {"round": r, "accuracy": None, "loss": None, "block": ev.block}
            try:
                doc = json.loads(await self.gatherer.fetch(ev.cids.get("cid", ""), f"round {r} result"))
                entry["accuracy"], entry["loss"] = doc.get("accuracy"), doc.get("loss")
                entry["included"] = len(doc.get("included", []))
                entry["excluded"] = len(doc.get("excluded", []))
            except (DainodeError, ValueError, UnicodeDecodeError):
                pass
            history.append(entry)
        out["history"] = history
        out["open_round_updates"] = len(tl.updates_of(len(tl.models))) if len(tl.models) < tl.rounds else 0
        out["done"] = tl.phase in ("final", "abandoned")
        return out

    async def watch(self, task_id: int, known: dict | None = None, wait_s: float = WATCH_WAIT_S) -> dict:
        """The task's progress; with ``known`` (the previous answer's `marker`) waits up to ``wait_s`` for a change."""
        deadline = trio.current_time() + max(0.0, min(float(wait_s), 60.0))
        while True:
            tl = await self.gatherer.task_log(task_id)
            marker = {"block": tl.last_block, "phase": tl.phase}
            if known is None or marker != known or trio.current_time() >= deadline:
                out = await self.watch_state(task_id)
                out["marker"] = marker
                return out
            await trio.sleep(WATCH_POLL_S)

    # --- automatic challenge -----------------------------------------------------------

    async def _challenge_loop(self) -> None:
        for step in self.ctx.state.list_steps(STEP_KIND, unfinished=True):
            await self._audit_safely(int(step.intent["task_id"]))
        async with self.ctx.chain.subscribe("audit.reveal", "TrainingTask", ["KeyRevealed", "TestSetRevealed"]) as sub:
            async for ev in sub:
                if ev.removed:
                    continue
                await self._audit_safely(int(ev.args["taskId"]))

    async def _audit_safely(self, task_id: int) -> None:
        try:
            await self.audit(task_id)
        except DainodeError as exc:
            self.log.warning("audit of task %d failed: %s (retried on the next reveal event or restart)", task_id, exc)

    async def audit(self, task_id: int) -> dict | None:
        """Verify a revealed task this node is a data provider in; challenge it on FAIL. None: not ours / not revealed."""
        state, me = self.ctx.state, self.ctx.keys.address.lower()
        sid = f"audit-{task_id}"
        step = state.get_step(sid)
        if step is not None and step.finished:
            return step.result
        if step is None:
            tl = await self.gatherer.task_log(task_id)
            if not any(m.data_provider.lower() == me for m in tl.matches.values()) or not tl.revealed:
                return None
            step = state.begin_step(sid, STEP_KIND, {"task_id": task_id})
        if "verdict" not in step.effect:
            out = await self.verify(task_id)
            step = state.record_effect(sid, verdict=out["verdict"], differences=out["differences"])
            self.log.info("task %d verified: %s (%d differences)", task_id, out["verdict"], len(out["differences"]))
        if step.effect["verdict"] == "PASS":
            return state.finish_step(sid, {"task_id": task_id, "verdict": "PASS", "challenged": False}).result
        return await self._challenge(sid, task_id)

    async def _challenge(self, sid: str, task_id: int) -> dict:
        state, chain = self.ctx.state, self.ctx.chain
        step = state.get_step(sid)
        if "evidence_cid" not in step.effect:
            doc = {"schema": EVIDENCE_SCHEMA, "task": {"chain_id": self.chain.chain_id, "task_address": self.gatherer.task_address,
                                                      "task_id": task_id},
                   "challenger": self.ctx.keys.address, "verdict": "FAIL", "differences": step.effect["differences"],
                   "created": int(time.time())}
            cid = await self.ctx.content.put_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
            step = state.record_effect(sid, evidence_cid=str(cid))
        from dainode.chain.training_task import cid_to_chain
        from dainode.store.cid import CID

        digest, codec = cid_to_chain(CID.parse(step.effect["evidence_cid"]))
        receipt = None
        if step.effect.get("tx_hash"):
            raw = bytes.fromhex(step.effect["raw"]) if step.effect.get("raw") else None
            receipt = await chain.receipt_of(step.effect["tx_hash"], raw)
        result = {"task_id": task_id, "verdict": "FAIL", "evidence_cid": step.effect["evidence_cid"]}
        if receipt is None:
            def journal(tx_hash: str, nonce: int, raw: bytes) -> None:
                state.record_effect(sid, tx_hash=tx_hash, raw=raw.hex(), nonce=nonce)

            try:
                receipt = await chain.transact_journaled("TrainingTask", "challenge", task_id, digest, codec, on_signed=journal)
            except TransactionReverted as exc:
                # Someone else challenged first (WrongPhase), or the window passed: the verdict stays recorded.
                self.log.warning("challenge of task %d refused by the chain: %s", task_id, exc)
                return state.finish_step(sid, {**result, "challenged": False, "refused": exc.error_name or str(exc)}).result
        if int(receipt.get("status", "0x1"), 16) != 1:
            raise ChainError(f"challenge transaction {receipt.get('transactionHash')} of task {task_id} failed")
        self.log.info("task %d challenged (tx %s, evidence %s)", task_id, receipt["transactionHash"], result["evidence_cid"])
        return state.finish_step(sid, {**result, "challenged": True, "tx": receipt["transactionHash"]}).result

    # --- admin RPC ---------------------------------------------------------------------

    def rpc_methods(self) -> dict[str, Any]:
        return {"task_verify": self.rpc_verify, "task_watch": self.rpc_watch, "task_audits": self.rpc_audits}

    async def rpc_verify(self, task_id: int) -> dict:
        """Recompute task `task_id` from chain events and IPFS; {ok, verdict, differences, history, shares, ...}."""
        self.require_running("task_verify")
        return await self.verify(_task_id(task_id))

    async def rpc_watch(self, task_id: int, known: dict | None = None, wait_s: float = WATCH_WAIT_S) -> dict:
        """Progress of task `task_id`; pass the previous answer's `marker` as `known` to wait for the next change."""
        self.require_running("task_watch")
        return await self.watch(_task_id(task_id), known, wait_s)

    async def rpc_audits(self) -> list[dict]:
        """This node's automatic audits: task id, status, verdict, evidence CID, challenge tx."""
        out = []
        for s in self.ctx.state.list_steps(STEP_KIND):
            out.append({"task_id": s.intent.get("task_id"), "status": s.status, "verdict": s.effect.get("verdict"),
                        "evidence_cid": s.effect.get("evidence_cid"), "tx": s.result.get("tx") or s.effect.get("tx_hash"),
                        "challenged": s.result.get("challenged"), "refused": s.result.get("refused"),
                        "differences": len(s.effect.get("differences") or [])})
        return out


def _diff_json(d: Difference) -> dict:
    def j(v):
        try:
            json.dumps(v)
            return v
        except (TypeError, ValueError):
            return str(v)

    return {"where": d.where, "posted": j(d.posted), "recomputed": j(d.recomputed), "detail": d.detail}


def _chain_rejections(tl, ev) -> list[Difference]:
    """An update rejected on chain (its compute pay withheld) must be one the round result excluded for a reason."""
    from dainode.tasks.documents import RoundResult

    out = []
    for pr in ev.rounds:
        try:
            res = pr.result if isinstance(pr.result, RoundResult) else RoundResult.from_bytes(pr.result)
        except DainodeError:
            continue
        excluded = {d["match_id"] for d in res.excluded if d["reason"] != "late"}
        for (r, mid) in sorted(tl.rejected):
            if r == pr.round and mid not in excluded:
                out.append(Difference(f"round {r} update match {mid} rejection", "rejected on chain",
                                      "not excluded in the round result", "rejectUpdate withheld compute pay for an update "
                                      "the model provider's own round result does not exclude"))
    return out
