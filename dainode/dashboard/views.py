"""What the dashboard shows, read from the node through its read-only admin methods (never one that changes state)."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import trio

from dainode import metrics
from dainode.errors import DainodeError

log = logging.getLogger("dainode.http")

#: The only admin methods the dashboard calls: every one of them only reads (a unit test checks
#: the list against the methods that change state).
READ_METHODS = frozenset({
    "node_info", "p2p_peers", "gossip_stats", "chain_info", "chain_balance", "store_stat", "bitswap_stat",
    "offer_list", "offer_get", "task_list", "task_status", "task_audits", "task_verify",
})
#: Files of a task's report directory the dashboard links to (nothing else under the data dir is served).
REPORT_FILES = ("report.json", "accuracy_loss.png", "contribution_payout.png")
PHASES_DONE = ("final", "abandoned")


class Unavailable(Exception):
    """A section the node cannot show (no chain, task unknown...): its message is shown instead."""


class DashboardData:
    """Gathers each page's data from the node's method registry; caches each finished task's verify result."""

    def __init__(self, node):
        self.node = node
        self._verify: dict[int, dict] = {}  # task id -> verify result (a final task's never changes)
        self._verifying: set[int] = set()
        self._nursery: trio.Nursery | None = None

    def attach(self, nursery: trio.Nursery) -> None:
        """Background work (a task's verify) runs in the HTTP service's nursery."""
        self._nursery = nursery

    async def call(self, method: str, **params) -> Any:
        if method not in READ_METHODS:
            raise AssertionError(f"the dashboard must not call {method}")  # a bug, not a user error
        try:
            fn = self.node.registry.lookup(method)[0]
        except DainodeError as exc:
            raise Unavailable(f"{method} is not available on this node") from exc
        try:
            out = fn(**params)
            return await out if inspect.isawaitable(out) else out
        except DainodeError as exc:
            raise Unavailable(getattr(exc, "message", None) or str(exc)) from None

    async def section(self, method: str, **params) -> Any:
        """The method's answer, or {"unavailable": why}."""
        try:
            return await self.call(method, **params)
        except Unavailable as exc:
            return {"unavailable": str(exc)}

    # --- pages ------------------------------------------------------------------------

    async def node_page(self) -> dict:
        out: dict[str, Any] = {}

        async def one(key: str, method: str, **params) -> None:
            out[key] = await self.section(method, **params)

        async with trio.open_nursery() as n:
            for key, method, params in (("info", "node_info", {}), ("peers", "p2p_peers", {"ping_timeout_s": 1.0}),
                                        ("gossip", "gossip_stats", {}), ("chain", "chain_info", {}),
                                        ("balance", "chain_balance", {}), ("store", "store_stat", {}),
                                        ("bitswap", "bitswap_stat", {})):
                n.start_soon(lambda k=key, m=method, p=params: one(k, m, **p))
        return out

    async def offers_page(self) -> list[dict]:
        listed = await self.call("offer_list")
        docs = []
        for o in listed[:500]:
            try:
                docs.append(await self.call("offer_get", offer_id=o["offer_id"]))
            except Unavailable:
                docs.append(o)
        return docs

    async def tasks_page(self) -> list[dict]:
        return await self.call("task_list")

    async def task_page(self, task_id: int) -> dict:
        status = await self.call("task_status", task_id=task_id)
        audits = await self.section("task_audits")
        status["audits"] = [a for a in audits if a.get("task_id") == task_id] if isinstance(audits, list) else []
        status["report_files"] = self.report_files(status)
        status["verify"] = self.verify_result(task_id, status)
        status["done"] = status.get("phase") in PHASES_DONE
        return status

    def report_files(self, status: dict) -> list[str]:
        d = status.get("report_dir")
        if not d:
            return []
        return [f for f in REPORT_FILES if (Path(d) / f).is_file()]

    def report_file(self, status: dict, name: str) -> Path | None:
        if name not in REPORT_FILES or not status.get("report_dir"):
            return None
        p = Path(status["report_dir"]) / name
        return p if p.is_file() else None

    def verify_result(self, task_id: int, status: dict) -> dict | None:
        """The task's `verify` verdict once it is final: computed once in the background, then cached."""
        if task_id in self._verify:
            return self._verify[task_id]
        if status.get("phase") != "final" or self._nursery is None:
            return None
        if task_id not in self._verifying:
            self._verifying.add(task_id)
            self._nursery.start_soon(self._run_verify, task_id)
        return {"verdict": "running"}

    async def _run_verify(self, task_id: int) -> None:
        try:
            res = await self.call("task_verify", task_id=task_id)
            self._verify[task_id] = {"verdict": res.get("verdict"), "ok": res.get("ok"),
                                     "differences": res.get("differences", [])[:20]}
        except Unavailable as exc:
            self._verify[task_id] = {"verdict": "unavailable", "detail": str(exc)}
        finally:
            self._verifying.discard(task_id)

    # --- metrics ------------------------------------------------------------------------

    async def refresh_metrics(self, m: "metrics.Metrics") -> None:
        """Read the values that already live in the node into the metrics snapshot (at scrape time only)."""
        snap: dict[str, Any] = {}
        try:
            network = self.node.p2p.host.get_network()
            snap["peers"] = sum(1 for conns in list(network.connections.values()) if conns)
        except Exception as exc:  # noqa: BLE001 - the host may not be up yet; leave the gauge out
            log.debug("peers unavailable for /metrics: %s", exc)
        for key, method in (("bitswap", "bitswap_stat"), ("chain", "chain_info"), ("tasks", "task_list")):
            try:
                snap[key] = await self.call(method)
            except Unavailable:
                pass
        chain = snap.pop("chain", None)
        if chain:
            snap["chain_head"] = chain["head"]
            cursor = (chain.get("events") or {}).get("cursor")
            if cursor is not None:
                snap["chain_event_lag"] = max(0, chain["head"] - cursor)
        if "tasks" in snap:
            phases: dict[str, int] = {}
            for t in snap["tasks"]:
                phases[t["phase"]] = phases.get(t["phase"], 0) + 1
            snap["tasks"] = phases
        m.snapshot = snap
