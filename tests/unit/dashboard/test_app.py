"""The dashboard ASGI app on a fake node: status codes (401/421/405/303), read-only method list, /metrics text format."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dainode import metrics
from dainode.admin.jsonrpc import MethodRegistry
from dainode.dashboard.app import DashboardApp
from dainode.dashboard.auth import allowed_hosts
from dainode.dashboard.views import READ_METHODS, DashboardData
from dainode.errors import RpcError

TOKEN = "t" * 43
PORT = 5999
BASE = f"http://localhost:{PORT}"
# Every admin method that changes something (a test below fails if the dashboard may call one)
STATE_CHANGING = {"node_stop", "p2p_connect", "p2p_disconnect", "gossip_publish", "store_add", "store_get", "store_pin_add",
                  "store_pin_rm", "store_gc", "chain_fund", "offer_create_data", "offer_create_compute", "offer_withdraw",
                  "task_create", "task_update"}


class FakeNode:
    def __init__(self):
        self.registry = MethodRegistry()
        self.calls: list[str] = []
        status = {"task_id": 7, "phase": "training", "round": 1, "rounds": 3, "history": [{"round": 0, "accuracy": 0.5, "loss": 1.0}],
                  "matches": [], "pool_wei": "10", "credited_wei": {}, "refund_wei": "0", "escrow_wei": "10", "failures": [],
                  "report_dir": None, "name": "t"}

        def method(name, value):
            async def fn(**kw):
                self.calls.append(name)
                if isinstance(value, Exception):
                    raise value
                return value
            return fn

        for name, value in {"node_info": {"peer_id": "12D3Koo", "address": "0xabc", "roles": [], "listen_addrs": [], "uptime_s": 1},
                            "p2p_peers": [], "gossip_stats": {"accepted": 0, "rejected": 0}, "store_stat": {"blocks": 1},
                            "bitswap_stat": {"bytes_received": 5, "blocks_received": 1, "bytes_sent": 7, "blocks_sent": 2},
                            "chain_info": RpcError(RpcError.APPLICATION_ERROR, "no chain here"),
                            "chain_balance": RpcError(RpcError.APPLICATION_ERROR, "no chain here"),
                            "offer_list": [], "task_list": [{"task_id": 7, "phase": "training", "round": 1, "rounds": 3}],
                            "task_status": status, "task_audits": [], "node_stop": {"stopping": True}}.items():
            self.registry.add(name, method(name, value))

    @property
    def p2p(self):
        raise AttributeError("no host in this fake")


@pytest.fixture
def client():
    node = FakeNode()
    app = DashboardApp(DashboardData(node), TOKEN)
    app.bound(allowed_hosts("127.0.0.1", PORT), PORT)
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    c.node = node
    return c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path", ["/", "/offers", "/tasks", "/tasks/7", "/tasks/7/events", "/api/tasks/7", "/metrics", "/nope"])
async def test_no_token_401_foreign_host_421_writes_405(client, path):
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await client.get(path, headers={**AUTH, "Host": "attacker.example"})).status_code == 421
    assert (await client.get(path, headers={"Host": "attacker.example"})).status_code == 421
    for method in ("POST", "PUT", "DELETE"):
        assert (await client.request(method, path, headers=AUTH)).status_code == 405
    assert client.node.calls == []  # nothing was called on the node for any refused request


async def test_pages_render_and_a_missing_section_says_why(client):
    r = await client.get("/", headers=AUTH)
    assert r.status_code == 200 and "12D3Koo" in r.text and "unavailable: no chain here" in r.text
    assert "script-src 'nonce-" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
    r = await client.get("/tasks/7", headers=AUTH)
    assert r.status_code == 200 and "EventSource" in r.text and '"phase": "training"' in r.text
    assert (await client.get("/tasks/8/report/../../keys", headers=AUTH)).status_code == 404
    assert "node_stop" not in client.node.calls


async def test_query_token_becomes_a_cookie_and_leaves_the_address(client):
    r = await client.get(f"/tasks/7?token={TOKEN}&x=1")
    assert r.status_code == 303 and r.headers["location"] == "/tasks/7?x=1"
    assert r.headers["set-cookie"] == f"dainode_token_{PORT}={TOKEN}; HttpOnly; SameSite=Strict; Path=/"
    assert (await client.get("/tasks", headers={"Cookie": f"dainode_token_{PORT}={TOKEN}"})).status_code == 200


def test_the_dashboard_calls_only_read_methods():
    assert not READ_METHODS & STATE_CHANGING


async def test_the_dashboard_refuses_to_call_a_state_changing_method():
    data = DashboardData(FakeNode())
    with pytest.raises(AssertionError, match="must not call node_stop"):
        await data.call("node_stop")


async def test_metrics_parse_and_the_round_histogram_counts_each_round(client, monkeypatch):
    monkeypatch.setattr(metrics, "_metrics", metrics.Metrics())
    for seconds in (0.08, 0.3, 12.0):
        metrics.round_done(seconds)
    metrics.updates({0: {"status": "ok"}, 1: {"status": "bad_shape"}, 2: {"status": "pending"}})
    metrics.gossip("/dai/1/offers", "accepted")
    metrics.gossip("/dai/1/offers", "stale")
    metrics.tx("sent"), metrics.tx("sent"), metrics.tx("failed")
    metrics.payout(10**18)
    r = await client.get("/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    s = {(x.name, tuple(sorted(x.labels.items()))): x.value
         for fam in text_string_to_metric_families(r.text) for x in fam.samples}
    assert s[("dainode_round_duration_seconds_count", ())] == 3
    assert s[("dainode_round_duration_seconds_bucket", (("le", "0.1"),))] == 1
    assert s[("dainode_round_duration_seconds_bucket", (("le", "+Inf"),))] == 3
    assert s[("dainode_round_duration_seconds_sum", ())] == pytest.approx(12.38)
    assert s[("dainode_updates_total", (("outcome", "accepted"),))] == 1
    assert s[("dainode_updates_total", (("outcome", "bad_shape"),))] == 1
    assert s[("dainode_updates_total", (("outcome", "late"),))] == 1
    assert s[("dainode_gossip_messages_total", (("outcome", "stale"), ("topic", "/dai/1/offers")))] == 1
    assert s[("dainode_transactions_total", (("outcome", "sent"),))] == 2
    assert s[("dainode_transactions_total", (("outcome", "failed"),))] == 1
    assert s[("dainode_payouts_wei_total", ())] == 1e18
    assert s[("dainode_bitswap_bytes_total", (("direction", "in"),))] == 5
    assert s[("dainode_bitswap_blocks_total", (("direction", "out"),))] == 2
    assert s[("dainode_tasks", (("phase", "training"),))] == 1
    assert ("dainode_chain_head_block", ()) not in s  # no chain: the gauge is absent, not a made-up 0


def test_hooks_are_no_ops_and_import_nothing_until_enabled():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, dainode.metrics as m\nm.tx('sent'); m.round_done(1.0); m.gossip('t', 'accepted'); m.payout(5)\n"
            "m.updates({0: {'status': 'ok'}})\nprint('prometheus_client' in sys.modules, m.current())")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.strip() == "False None", out.stderr
