"""The dashboard and /metrics on real daemons (one anvil, a model provider, 2 `--roles data,compute` nodes) running a real
task: token and Host checks on every route, the task page in a real headless Chromium showing rounds live, /metrics."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.browser import MISSING, Browser
from tests.integration.daemon import DaemonProcess, run_cli
from dainode.localnet.workload import shard_files
from tests.integration.test_task_e2e import COMPUTE_PRICE, DATA_PRICE, MANIFEST, wait_for

ROUNDS = 24
#: Where the task page's screenshot is kept after the run (pytest's tmp dirs are rotated away); gitignored.
OUTPUT = Path(os.environ.get("DAINODE_TEST_OUTPUT") or Path(__file__).resolve().parents[2] / "test-output")
# two providers, more local epochs and 24 rounds: rounds take ~0.1 s here, and the page re-reads the status every
# 0.5 s (SSE_POLL_S), so the task runs for seconds and the page sees several rounds arrive
TASK = (MANIFEST.replace("rounds = 10", f"rounds = {ROUNDS}").replace("providers = 4", "providers = 2")
        .replace("quorum = 4", "quorum = 2").replace("local_epochs = 1", "local_epochs = 8"))
ROUTES = ["/", "/offers", "/tasks", "/metrics", "/api/node", "/api/offers", "/api/tasks", "/tasks/0", "/tasks/0/events",
          "/api/tasks/0", "/tasks/0/report/report.json", "/nothing-here"]


def dash(node: DaemonProcess) -> tuple[str, str]:
    """(base URL, token) of a node's dashboard, as `dainode dashboard --json` prints them."""
    out = run_cli("dashboard", "--json", "--data-dir", str(node.data_dir))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    base, _, token = doc["url"].partition("?token=")
    assert base == node.rpc("node_info")["http_url"] and token == Path(doc["token_file"]).read_text().strip()
    return base, token


def metrics(node: DaemonProcess) -> dict:
    base, token = dash(node)
    text = httpx.get(base + "metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30).text
    out: dict = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(m: dict, name: str, **labels) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    base = tmp_path_factory.mktemp("dash")
    nodes: list[DaemonProcess] = []
    try:
        relay = DaemonProcess(base, "relay", roles=None, chain="dev")
        nodes.append(relay)
        relay.start(timeout=120)
        url = relay.rpc("chain_info")["endpoint"]
        env = {"DAINODE_CHAIN_DEPLOYMENT_FILE": str(relay.data_dir / "deployment.json")}
        mp = DaemonProcess(base, "mp", roles=["model"], chain=url, bootstrap=[relay.multiaddr], env=env)
        nodes.append(mp)
        mp.start(timeout=120)
        providers = []
        for i in range(2):
            n = DaemonProcess(base, f"p{i}", roles=["data", "compute"], chain=url, bootstrap=[relay.multiaddr, mp.multiaddr], env=env)
            nodes.append(n)
            providers.append(n)
            n.start(timeout=120)
        for n in [mp, *providers]:
            assert run_cli("chain", "fund", n.info["address"], "--eth", "10", "--data-dir", str(relay.data_dir)).returncode == 0
        for n, f in zip(providers, shard_files(base, 4)):  # two of four quarters
            for args in (["offer", "data", "--dataset", str(f), "--price", str(DATA_PRICE)], ["offer", "compute", "--price", str(COMPUTE_PRICE)]):
                out = run_cli(*args, "--data-dir", str(n.data_dir), timeout=300)
                assert out.returncode == 0, out.stderr
        wait_for("the model provider indexed the data offers",
                 lambda: len([o for o in mp.rpc("offer_list", kind="data") if o["verified"]]) >= 2, 60)
        yield {"relay": relay, "mp": mp, "providers": providers, "base": base}
    finally:
        for n in nodes:
            n.stop()


@pytest.fixture(scope="module")
def task(net):
    """Creates the module's one 2-provider task on first call (not waited for) and returns its id: the browser test
    calls it only once its browser is up, so the page is open before the rounds start (they take ~0.3 s each)."""
    made: list[int] = []

    def create() -> int:
        if not made:
            manifest = Path(net["base"]) / "task.toml"
            manifest.write_text(TASK)
            out = run_cli("task", "create", str(manifest), "--json", "--data-dir", str(net["mp"].data_dir), timeout=300)
            assert out.returncode == 0, out.stderr
            made.append(json.loads(out.stdout)["task_id"])
        return made[0]

    return create


def final_status(mp: DaemonProcess, task_id: int) -> dict:
    def done():
        s = mp.rpc("task_status", task_id=task_id)
        return s if s["phase"] == "abandoned" or (s["phase"] == "final" and s.get("report_dir")) else None

    status = wait_for("the task is final", done, 300, every=1.0)
    assert status["phase"] == "final", status
    return status


def test_every_route_needs_the_token_and_the_node_own_host(net):
    node = net["mp"]
    base, token = dash(node)
    port = httpx.URL(base).port
    with httpx.Client(timeout=30) as c:
        for route in ROUTES:
            assert c.get(base + route.lstrip("/")).status_code == 401, route
            assert c.get(base + route.lstrip("/"), headers={"Authorization": "Bearer " + "x" * 43}).status_code == 401, route
            assert c.get(base + route.lstrip("/") + "?token=wrong").status_code == 401, route
            # a DNS-rebinding page reaches 127.0.0.1 under its own name: refused before the token is even looked at
            for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
                r = c.get(base + route.lstrip("/"), headers={"Host": host, "Authorization": f"Bearer {token}"})
                assert r.status_code == 421, (route, host, r.status_code)
            # read-only: nothing but GET and HEAD, whatever the route
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                r = c.request(method, base + route.lstrip("/"), headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 405, (route, method, r.status_code)
        auth = {"Authorization": f"Bearer {token}"}
        for route in ("/", "/offers", "/tasks", "/metrics", "/api/node"):
            assert c.get(base + route.lstrip("/"), headers=auth).status_code == 200, route
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            assert c.get(base, headers={**auth, "Host": host}).status_code == 200, host
        # ?token= sets a cookie (HttpOnly, SameSite=Strict) and redirects to the same page without the token
        r = c.get(base + "offers?token=" + token)
        assert r.status_code == 303 and r.headers["location"] == "/offers", r.headers
        cookie = r.headers["set-cookie"]
        assert f"dainode_token_{port}={token}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert c.get(base + "offers", headers={"Cookie": f"dainode_token_{port}={token}"}).status_code == 200
        assert c.get(base + "offers", headers={"Cookie": f"dainode_token_{port + 1}={token}"}).status_code == 401
    info = node.rpc("node_info")
    assert info["http_url"] == base and token not in json.dumps(info)
    assert (node.data_dir / "http.token").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_task_page_shows_rounds_live_then_accuracy_and_payouts_in_chromium(net, task, tmp_path):
    mp = net["mp"]
    base, token = dash(mp)
    with Browser(tmp_path) as b:
        b.get(f"{base}tasks?token={token}")
        assert b.js("return location.pathname + location.search") == "/tasks"  # the token moved into a cookie
        task_id = task()
        b.get(f"{base}tasks/{task_id}")
        # a marker on the window (a reload would lose it) and a record of every round the page displays
        b.js("""window.__marker = 'no-reload'; window.__seen = [document.getElementById('round').textContent];
                new MutationObserver(() => { const t = document.getElementById('round').textContent;
                  if (window.__seen[window.__seen.length - 1] !== t) window.__seen.push(t); })
                  .observe(document.getElementById('round'), {childList: true, characterData: true, subtree: true});""")
        state = "return {marker: window.__marker, seen: window.__seen, phase: document.getElementById('phase').textContent, " \
                "acc: document.getElementById('accuracy').textContent, verify: document.getElementById('verify').textContent, " \
                "payouts: document.getElementById('payouts').innerText, points: document.querySelectorAll('#acc-chart .pt').length, " \
                "bars: document.querySelectorAll('#split-chart rect').length, live: document.getElementById('live').textContent}"
        got = wait_for("the page shows the task final, with its verify result",
                       lambda: (lambda s: s if s["phase"] == "final" and s["verify"] in ("PASS", "FAIL") else None)(b.js(state)),
                       420, every=0.5)
        shot = b.screenshot(tmp_path / "task-page.png")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    keep = shutil.copy(shot, OUTPUT / "dashboard-task-page.png")
    print(f"\nscreenshot: {keep}; rounds seen live: {got['seen']}")
    status = final_status(mp, task_id)
    assert got["marker"] == "no-reload", "the page reloaded"
    shown = [s for s in got["seen"] if "/" in s]
    advancing = sorted({int(s.split("/")[0]) for s in shown})
    assert len(advancing) >= 3 and advancing[-1] == ROUNDS, got["seen"]  # several rounds arrived while the page was open
    assert got["live"].startswith("live")
    final_acc = status["history"][-1]["accuracy"]
    assert got["acc"] == f"{final_acc:.4f}", (got["acc"], final_acc)
    assert got["points"] == ROUNDS and got["bars"] == 2
    assert got["verify"] == "PASS"
    for m in status["matches"]:  # every match's pay, as the chain credited it, is on the page (µETH, rounded down)
        assert f"{int(m['paid_wei']) // 10**12 / 1e6:.6f} ETH" in got["payouts"], (m, got["payouts"])
    for acct in status["credited_wei"]:
        assert acct in got["payouts"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_parse_and_count_one_round_duration_per_round(net, task):
    mp, providers = net["mp"], net["providers"]
    task_id = task()
    final_status(mp, task_id)
    wait_for("the providers withdrew their pay", lambda: all(sample(metrics(p), "dainode_payouts_wei_total") for p in providers), 60)
    m = metrics(mp)
    assert sample(m, "dainode_round_duration_seconds_count") == ROUNDS
    assert sample(m, "dainode_round_duration_seconds_bucket", le="+Inf") == ROUNDS
    assert sample(m, "dainode_round_duration_seconds_sum") > 0
    assert sample(m, "dainode_updates_total", outcome="accepted") == 2 * ROUNDS
    assert sample(m, "dainode_tasks", phase="final") == 1
    assert sample(m, "dainode_transactions_total", outcome="sent") >= ROUNDS + 4  # open, matches, rounds, split, reveals, finalize
    assert sample(m, "dainode_peers") >= 1
    assert sample(m, "dainode_chain_head_block") > 0 and sample(m, "dainode_chain_event_lag_blocks") >= 0
    assert sample(m, "dainode_gossip_messages_total", topic="/dai/1/offers", outcome="accepted") >= 2
    for p in providers:
        pm = metrics(p)
        assert sample(pm, "dainode_payouts_wei_total") > DATA_PRICE
        assert sample(pm, "dainode_round_duration_seconds_count") == 0  # only the model provider runs rounds
        assert sample(pm, "dainode_bitswap_bytes_total", direction="in") > 0
