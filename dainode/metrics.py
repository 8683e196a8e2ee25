"""Prometheus metrics of this process: one-line hooks count events; `enable()` (the HTTP service) creates them.

Until `enable()` is called every hook is a no-op that costs one global lookup, and
prometheus_client is not even imported: a node with `http.listen = "none"` (and every CLI
client) pays nothing. Values that already live somewhere (peers, bitswap totals, chain head,
tasks by phase) are not counted twice: the HTTP service reads them at scrape time and hands
them to `Metrics.snapshot`, which a collector renders.
"""

from __future__ import annotations

from typing import Any

#: Round-duration buckets in seconds: a fast local round takes ~0.1 s, a real one minutes.
ROUND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

_metrics: "Metrics | None" = None


class Metrics:
    """The node's collectors in their own registry (not prometheus_client's global one)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.gossip = Counter("dainode_gossip_messages", "Gossip messages validated, by topic and outcome "
                              "(accepted, or the reason of the rejection).", ["topic", "outcome"], registry=self.registry)
        self.tx = Counter("dainode_transactions", "Transactions this node sent (sent) and those that reverted or were "
                          "not mined (failed).", ["outcome"], registry=self.registry)
        self.round = Histogram("dainode_round_duration_seconds", "Wall time of one training round, opened to global model "
                               "published (model provider; one observation per round).", buckets=ROUND_BUCKETS, registry=self.registry)
        self.updates = Counter("dainode_updates", "Updates the model provider took in, by outcome (accepted, or the reason "
                               "of the rejection).", ["outcome"], registry=self.registry)
        self.payouts = Counter("dainode_payouts_wei", "Wei this node withdrew from TrainingTask (its credited pay).",
                               registry=self.registry)
        self.snapshot: dict[str, Any] = {}  # filled by the HTTP service just before each scrape
        self.registry.register(_SnapshotCollector(self))

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _SnapshotCollector:
    """Renders the values read at scrape time (peers, bitswap, chain, tasks) as metric families."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self):
        return []  # values appear only once read; no fixed description needed

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.metrics.snapshot
        if "peers" in s:
            yield GaugeMetricFamily("dainode_peers", "Connected libp2p peers.", value=s["peers"])
        if "bitswap" in s:
            b = s["bitswap"]
            by = CounterMetricFamily("dainode_bitswap_bytes", "Bitswap block bytes, by direction.", labels=["direction"])
            blocks = CounterMetricFamily("dainode_bitswap_blocks", "Bitswap blocks, by direction.", labels=["direction"])
            for d, key in (("in", "received"), ("out", "sent")):
                by.add_metric([d], b.get(f"bytes_{key}", 0))
                blocks.add_metric([d], b.get(f"blocks_{key}", 0))
            yield by
            yield blocks
        if "chain_head" in s:
            yield GaugeMetricFamily("dainode_chain_head_block", "The chain endpoint's latest block number.", value=s["chain_head"])
        if "chain_event_lag" in s:
            yield GaugeMetricFamily("dainode_chain_event_lag_blocks", "Blocks between the chain head and the last block whose "
                                    "events this node processed.", value=s["chain_event_lag"])
        if "tasks" in s:
            g = GaugeMetricFamily("dainode_tasks", "Tasks this node takes part in, by phase.", labels=["phase"])
            for phase, n in sorted(s["tasks"].items()):
                g.add_metric([phase], n)
            yield g


def enable() -> Metrics:
    """Create the metrics (once per process) and turn the hooks on."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def current() -> Metrics | None:
    return _metrics


# --- hooks: one call where the event happens ------------------------------------------------


def gossip(topic: str, outcome: str) -> None:
    if _metrics is not None:
        _metrics.gossip.labels(topic, outcome).inc()


def tx(outcome: str) -> None:
    if _metrics is not None:
        _metrics.tx.labels(outcome).inc()


def round_done(seconds: float) -> None:
    if _metrics is not None:
        _metrics.round.observe(seconds)


def updates(snapshot: dict) -> None:
    """Count a round's updates (match id -> {"status": "ok" | reason | "pending", ...}) by outcome."""
    if _metrics is not None:
        for u in snapshot.values():
            status = u.get("status")
            _metrics.updates.labels("accepted" if status == "ok" else ("late" if status == "pending" else str(status))).inc()


def payout(wei: int) -> None:
    if _metrics is not None and wei > 0:
        _metrics.payouts.inc(wei)
