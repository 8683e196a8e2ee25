"""Gossiped task announcements checked against the chain: one that does not match its TaskOpened is dropped and counted."""

from __future__ import annotations

import logging

import trio

from dainode.errors import DainodeError
from dainode.roles.rejections import GOSSIP, rejections
from dainode.roles.taskdocs import GOSSIP_TASK, TASKS_TOPIC

log = logging.getLogger("dainode.tasks")

UNKNOWN_RETRIES = (1.0, 2.0, 4.0)  # a notice may outrun this node's view of the chain by a block or two
REASONS = ("malformed", "wrong_chain", "unknown_task", "wrong_sender", "wrong_manifest", "wrong_pool", "wrong_params")


class Mismatch(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class TaskAnnouncements:
    """Follows TASKS_TOPIC; `accepted` holds the notices whose every field matches the chain, by task id."""

    def __init__(self, ctx, tc):
        self.ctx, self.tc = ctx, tc
        self.accepted: dict[int, dict] = {}
        self.rejections = rejections(ctx)

    def stats(self) -> dict:
        return {"accepted": len(self.accepted), "rejected_by_reason": dict(self.rejections.counts.get(GOSSIP, {}))}

    async def run(self) -> None:
        self.ctx.gossip.add_stats("task_announcements", self.stats)
        sub = self.ctx.gossip.subscribe(TASKS_TOPIC)
        async with trio.open_nursery() as n:
            async for msg in sub:
                if msg.type == GOSSIP_TASK:
                    n.start_soon(self.check_and_count, msg)

    async def check_and_count(self, msg) -> None:
        try:
            tid = await self.check(msg.body, msg.sender)
        except Mismatch as exc:
            self.rejections.count(GOSSIP, exc.reason)
            log.warning("task announcement from %s (peer %s) rejected: %s: %s", msg.sender, msg.peer_id, exc.reason, exc.detail)
            return
        except DainodeError as exc:  # the chain is away: nothing to hold against the sender
            log.info("task announcement from %s not checked: %s", msg.sender, exc)
            return
        self.accepted[tid] = dict(msg.body)
        log.info("task announcement for task %d from %s matches the chain", tid, msg.sender)

    async def check(self, body: dict, sender: str) -> int:
        tc = self.tc
        tid = body.get("task_id")
        if isinstance(tid, bool) or not isinstance(tid, int) or tid < 0:
            raise Mismatch("malformed", f"task_id must be a non-negative integer, got {tid!r:.40}")
        if body.get("chain_id") != tc.chain_id or str(body.get("task_address", "")).lower() != tc.address.lower():
            raise Mismatch("wrong_chain", f"names TrainingTask {body.get('task_address')!r:.60} on chain "
                                          f"{body.get('chain_id')!r:.20}; this node follows {tc.address} on {tc.chain_id}")
        for wait in (*UNKNOWN_RETRIES, None):
            opened = await tc.logs(tid, ["TaskOpened"])
            if opened or wait is None:
                break
            await trio.sleep(wait)
        if not opened:
            raise Mismatch("unknown_task", f"task {tid} was never opened on TrainingTask {tc.address}")
        from dainode.chain.training_task import event_cids

        ev = opened[0]
        if str(sender).lower() != str(ev.args["modelProvider"]).lower():
            raise Mismatch("wrong_sender", f"task {tid} was opened by {ev.args['modelProvider']}, the notice is signed by {sender}")
        manifest = str(event_cids(ev)["manifest"])
        if body.get("manifest_cid") != manifest:
            raise Mismatch("wrong_manifest", f"task {tid} was opened with manifest {manifest}, the notice says "
                                             f"{body.get('manifest_cid')!r:.80}")
        if str(body.get("pool_wei")) != str(int(ev.args["pool"])):
            raise Mismatch("wrong_pool", f"task {tid} holds a pool of {int(ev.args['pool'])} wei, the notice says "
                                         f"{body.get('pool_wei')!r:.40}")
        ts = await tc.task(tid)
        if body.get("rounds") != int(ts.rounds):
            raise Mismatch("wrong_params", f"task {tid} has {int(ts.rounds)} rounds, the notice says {body.get('rounds')!r:.20}")
        return tid
