"""Per-node counters of what the task roles refused (negotiation requests, gossip task notices, updates), by reason."""

from __future__ import annotations

import logging
import time
from collections import Counter

log = logging.getLogger("dainode.tasks")

NEGOTIATION, GOSSIP, UPDATES = "negotiation", "gossip", "updates"


class Rejections:
    """Counters by kind and reason (and task for updates); in memory, shown by `task status` and `gossip_stats`."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {NEGOTIATION: Counter(), GOSSIP: Counter()}
        self.by_task: dict[int, Counter] = {}

    def count(self, kind: str, reason: str, *, task_id: int | None = None) -> None:
        self.counts.setdefault(kind, Counter())[reason] += 1
        if task_id is not None:
            self.by_task.setdefault(int(task_id), Counter())[reason] += 1

    def snapshot(self, task_id: int | None = None) -> dict:
        out = {k: dict(sorted(c.items())) for k, c in sorted(self.counts.items()) if k != UPDATES}
        if task_id is not None:
            out[UPDATES] = dict(sorted(self.by_task.get(int(task_id), Counter()).items()))
        return out


def rejections(ctx) -> Rejections:
    """The node's one Rejections (shared by its roles)."""
    from dainode.roles.taskdocs import shared

    return shared(ctx, "rejections", Rejections)


class RateLimit:
    """A token bucket per peer: `burst` requests at once, refilled at `rate` per second; few peers kept (LRU-ish)."""

    def __init__(self, rate: float, burst: float, *, clock=time.monotonic, max_peers: int = 4096):
        self.rate, self.burst, self.clock, self.max_peers = float(rate), float(burst), clock, max_peers
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, peer: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.pop(peer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        ok = tokens >= 1.0
        self._buckets[peer] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > self.max_peers:  # forget the least recently seen peer (dicts keep insertion order)
            self._buckets.pop(next(iter(self._buckets)))
        return ok
