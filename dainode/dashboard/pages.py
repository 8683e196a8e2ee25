"""The dashboard's HTML: server-rendered pages, and the task page's inline script (server-sent events, SVG charts)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:baseline}
header a{color:#cfe0ff;text-decoration:none}header b{font-size:16px}
main{padding:16px 20px;max-width:1200px}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;margin:4px 0 10px}td,th{border:1px solid #dde1e6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}.mono{font-family:ui-monospace,monospace;font-size:12px}.bad{color:#b00020}.ok{color:#0a7d32}
.muted{color:#6b7280}pre{background:#fff;border:1px solid #dde1e6;padding:6px;max-height:300px;overflow:auto;font-size:12px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e6;padding:8px 12px;min-width:140px}
.card .v{font-size:20px;font-weight:600}svg{background:#fff;border:1px solid #dde1e6}
"""


def _json(value: Any) -> str:
    """JSON for a <script type=application/json> block: `</` can never close the element."""
    return json.dumps(value, sort_keys=True).replace("</", "<\\/")


def layout(title: str, body: str, *, nonce: str, script: str = "") -> bytes:
    js = f"<script nonce=\"{nonce}\">{script}</script>" if script else ""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)} · dainode</title>"
            f"<style>{STYLE}</style></head><body><header><b>dainode</b><a href=\"/\">Node</a><a href=\"/offers\">Offers</a>"
            f"<a href=\"/tasks\">Tasks</a><a href=\"/metrics\">Metrics</a><span class=muted>read-only</span></header>"
            f"<main><h1 style=\"font-size:20px\">{escape(title)}</h1>{body}</main>{js}</body></html>").encode()


def cell(value: Any) -> str:
    if value is None:
        return "<span class=muted>—</span>"
    if isinstance(value, (list, dict)):
        return f"<span class=mono>{escape(json.dumps(value, sort_keys=True))}</span>"
    return escape(str(value))


def table(rows: list[dict], columns: list[tuple[str, str]], *, empty: str = "none") -> str:
    if not rows:
        return f"<p class=muted>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(label)}</th>" for _, label in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k, _ in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def kv(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{cell(v)}</td></tr>" for k, v in rows) + "</table>"


def unavailable(section: Any) -> str | None:
    if isinstance(section, dict) and set(section) == {"unavailable"}:
        return f"<p class=muted>unavailable: {escape(section['unavailable'])}</p>"
    return None


def eth(wei: Any) -> str:
    try:
        return f"{int(wei) / 10**18:.6f} ETH"
    except (TypeError, ValueError):
        return "—"


def node_page(d: dict, *, nonce: str) -> bytes:
    info, parts = d["info"], []
    parts.append(unavailable(info) or kv([("peer id", info.get("peer_id")), ("account", info.get("address")),
                                          ("roles", ", ".join(info.get("roles") or []) or "relay only"),
                                          ("addresses", info.get("listen_addrs")), ("version", info.get("version")),
                                          ("uptime", f"{info.get('uptime_s', 0):.0f} s")]))
    parts.append("<h2>Connected peers</h2>")
    peers = d["peers"]
    parts.append(unavailable(peers) or table(peers, [("peer_id", "peer id"), ("multiaddr", "address"), ("eth_address", "account"),
                                                     ("latency_ms", "latency (ms)"), ("direction", "direction")], empty="no peers"))
    parts.append("<h2>Gossip</h2>")
    g = d["gossip"]
    if unavailable(g):
        parts.append(unavailable(g))
    else:
        rows = [{"topic": t, "accepted": n} for t, n in sorted((g.get("accepted_by_topic") or {}).items())]
        parts.append(f"<p>accepted {g.get('accepted', 0)}, rejected {g.get('rejected', 0)}</p>")
        parts.append(table(rows, [("topic", "topic"), ("accepted", "accepted")], empty="no messages yet"))
        rej = [{"reason": r, "count": n} for r, n in sorted((g.get("rejected_by_reason") or {}).items()) if n]
        parts.append(table(rej, [("reason", "rejected because"), ("count", "messages")], empty="nothing rejected"))
    parts.append("<h2>Chain</h2>")
    c, b = d["chain"], d["balance"]
    parts.append(unavailable(c) or kv([("endpoint", c.get("endpoint")), ("chain id", c.get("chain_id")), ("head", c.get("head")),
                                       ("events processed up to", (c.get("events") or {}).get("cursor")),
                                       ("account balance", b.get("eth") + " ETH" if isinstance(b, dict) and "eth" in b else None),
                                       ("contracts", c.get("contracts"))]))
    parts.append("<h2>Store</h2>")
    s, bs = d["store"], d["bitswap"]
    parts.append(unavailable(s) or kv([("blocks", s.get("blocks")), ("bytes", s.get("bytes")), ("pins", s.get("pins")),
                                       ("bitswap in", _bitswap(bs, "received")), ("bitswap out", _bitswap(bs, "sent"))]))
    return layout("Node", "".join(parts), nonce=nonce)


def _bitswap(bs: Any, key: str) -> str | None:
    if not isinstance(bs, dict) or "unavailable" in bs:
        return None
    return f"{bs.get(f'blocks_{key}', 0)} blocks, {bs.get(f'bytes_{key}', 0)} bytes"


def offers_page(offers: list[dict] | str, *, nonce: str) -> bytes:
    if isinstance(offers, str):
        return layout("Offers", f"<p class=muted>unavailable: {escape(offers)}</p>", nonce=nonce)
    parts = []
    for kind in ("data", "compute"):
        rows = [o for o in offers if o.get("kind") == kind]
        parts.append(f"<h2>{kind.capitalize()} offers ({len(rows)})</h2>")
        if not rows:
            parts.append("<p class=muted>none indexed yet</p>")
            continue
        head = "<tr><th>id</th><th>owner</th><th>price</th><th>active</th><th>verified</th><th>CID</th><th>document</th></tr>"
        body = "".join(
            f"<tr><td>{cell(o.get('offer_id'))}</td><td class=mono>{cell(o.get('owner'))}</td><td>{escape(eth(o.get('price_wei')))}</td>"
            f"<td>{cell(o.get('active'))}</td><td>{cell(o.get('verified'))}</td><td class=mono>{cell(o.get('cid'))}</td>"
            f"<td><details><summary>{'schema' if kind == 'data' else 'spec'}</summary>"
            f"<pre>{escape(json.dumps(o.get('document'), indent=1, sort_keys=True))}</pre></details></td></tr>"
            for o in rows)
        parts.append(f"<table>{head}{body}</table>")
    return layout("Offers", "".join(parts), nonce=nonce)


def tasks_page(tasks: list[dict] | str, *, nonce: str) -> bytes:
    if isinstance(tasks, str):
        return layout("Tasks", f"<p class=muted>unavailable: {escape(tasks)}</p>", nonce=nonce)
    if not tasks:
        return layout("Tasks", "<p class=muted>this node takes part in no task yet</p>", nonce=nonce)
    body = "".join(f"<tr><td><a href=\"/tasks/{int(t['task_id'])}\">{int(t['task_id'])}</a></td><td>{cell(t.get('name'))}</td>"
                   f"<td>{cell(', '.join(t.get('roles') or []))}</td><td>{cell(t.get('phase'))}</td>"
                   f"<td>{cell(t.get('round'))} / {cell(t.get('rounds'))}</td></tr>" for t in tasks)
    return layout("Tasks", f"<table><tr><th>task</th><th>name</th><th>our roles</th><th>phase</th><th>round</th></tr>{body}</table>",
                  nonce=nonce)


def message_page(title: str, text: str, *, nonce: str) -> bytes:
    return layout(title, f"<p>{escape(text)}</p>", nonce=nonce)


TASK_BODY = """
<div class=cards>
 <div class=card><div class=muted>phase</div><div class=v id=phase>…</div></div>
 <div class=card><div class=muted>round</div><div class=v id=round>…</div></div>
 <div class=card><div class=muted>accuracy</div><div class=v id=accuracy>—</div></div>
 <div class=card><div class=muted>loss</div><div class=v id=loss>—</div></div>
 <div class=card><div class=muted>pool</div><div class=v id=pool>—</div></div>
 <div class=card><div class=muted>verify</div><div class=v id=verify>—</div></div>
</div>
<p class=muted id=live>connecting…</p>
<h2>Accuracy and loss per round</h2><div id=chart></div>
<h2>Matches</h2><div id=matches></div>
<h2>Updates rejected</h2><div id=rejected></div>
<h2>Payouts</h2><div id=payouts></div>
<h2>Contribution split</h2><div id=split></div>
<h2>Report</h2><div id=report></div>
<h2>Failures</h2><div id=failures></div>
<script type="application/json" id=initial>__INITIAL__</script>
"""

TASK_SCRIPT = r"""
const TASK = __TASK_ID__;
const $ = id => document.getElementById(id);
const esc = s => String(s == null ? "—" : s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const eth = w => w == null ? "—" : (Number(BigInt(w) / 1000000000000n) / 1e6).toFixed(6) + " ETH";
function tbl(rows, cols, empty) {
  if (!rows.length) return `<p class=muted>${empty}</p>`;
  return "<table><tr>" + cols.map(c => `<th>${c[1]}</th>`).join("") + "</tr>" +
    rows.map(r => "<tr>" + cols.map(c => `<td>${c[2] ? c[2](r[c[0]], r) : esc(r[c[0]])}</td>`).join("") + "</tr>").join("") + "</table>";
}
function chart(history, rounds) {
  const W = 560, H = 220, L = 40, R = 40, T = 10, B = 30, n = Math.max(rounds, history.length, 1);
  const x = i => L + (n <= 1 ? 0 : i * (W - L - R) / (n - 1));
  const losses = history.map(h => h.loss).filter(v => v != null), lmax = Math.max(1e-9, ...losses);
  const ya = v => T + (1 - v) * (H - T - B), yl = v => T + (1 - v / lmax) * (H - T - B);
  const line = (f, key) => history.filter(h => h[key] != null).map(h => `${x(h.round).toFixed(1)},${f(h[key]).toFixed(1)}`).join(" ");
  let s = `<svg id=acc-chart width=${W} height=${H} viewBox="0 0 ${W} ${H}">`;
  for (let k = 0; k <= 4; k++) { const y = T + k * (H - T - B) / 4;
    s += `<line x1=${L} x2=${W - R} y1=${y} y2=${y} stroke="#eee"/><text x=${L - 4} y=${y + 4} font-size=10 text-anchor=end fill="#1565c0">${(1 - k / 4).toFixed(2)}</text>` +
         `<text x=${W - R + 4} y=${y + 4} font-size=10 fill="#c62828">${(lmax * (1 - k / 4)).toPrecision(2)}</text>`; }
  for (let i = 0; i < n; i++) s += `<text x=${x(i)} y=${H - 12} font-size=10 text-anchor=middle>${i}</text>`;
  s += `<polyline fill=none stroke="#1565c0" stroke-width=2 points="${line(ya, "accuracy")}"/>`;
  s += `<polyline fill=none stroke="#c62828" stroke-width=2 stroke-dasharray="4 3" points="${line(yl, "loss")}"/>`;
  history.forEach(h => { if (h.accuracy != null) s += `<circle class=pt cx=${x(h.round)} cy=${ya(h.accuracy)} r=3 fill="#1565c0"/>`; });
  s += `<text x=${L} y=${H - 1} font-size=11 fill="#1565c0">accuracy (left)</text><text x=${W - R} y=${H - 1} font-size=11 text-anchor=end fill="#c62828">loss (right)</text></svg>`;
  return s;
}
function bars(items) {
  const total = items.reduce((a, b) => a + b.v, 0);
  if (!items.length || total <= 0) return "<p class=muted>no split posted yet</p>";
  const W = 560, rowH = 24;
  let s = `<svg id=split-chart width=${W} height=${items.length * rowH + 10}>`;
  items.forEach((it, i) => { const w = Math.max(1, it.v / total * (W - 260));
    s += `<text x=4 y=${i * rowH + 20} font-size=12>${esc(it.label)}</text><rect x=150 y=${i * rowH + 7} width=${w} height=16 fill="#2e7d32"/>` +
         `<text x=${156 + w} y=${i * rowH + 20} font-size=12>${(100 * it.v / total).toFixed(1)}% · ${eth(String(it.v))}</text>`; });
  return s + "</svg>";
}
function render(s) {
  window.__renders = (window.__renders || 0) + 1;
  const last = s.history.length ? s.history[s.history.length - 1] : null;
  $("phase").textContent = s.phase; $("round").textContent = `${s.round} / ${s.rounds}`;
  $("accuracy").textContent = last && last.accuracy != null ? last.accuracy.toFixed(4) : "—";
  $("loss").textContent = last && last.loss != null ? last.loss.toFixed(4) : "—";
  $("pool").textContent = eth(s.pool_wei);
  const v = s.verify;
  $("verify").innerHTML = v ? `<span class=${v.verdict === "PASS" ? "ok" : (v.verdict === "FAIL" ? "bad" : "muted")}>${esc(v.verdict)}</span>` : "—";
  $("chart").innerHTML = chart(s.history, s.rounds);
  $("matches").innerHTML = tbl(s.matches, [["match_id", "match"], ["data_provider", "data provider"], ["compute_provider", "compute provider"],
    ["data_provided", "data in"], ["updates_accepted", "updates accepted"], ["updates_rejected", "rejected", r => esc(r.length)],
    ["data_price_wei", "data price", eth], ["compute_price_wei", "compute price", eth]], "no match yet");
  const rej = []; s.matches.forEach(m => m.updates_rejected.forEach(r => rej.push({match_id: m.match_id, ...r})));
  $("rejected").innerHTML = tbl(rej, [["match_id", "match"], ["round", "round"], ["reason", "reason"], ["evidence_cid", "evidence"]], "none");
  const credited = Object.entries(s.credited_wei || {}).map(([a, w]) => ({account: a, wei: w}));
  $("payouts").innerHTML = tbl(s.matches, [["match_id", "match"], ["compute_earned_wei", "compute earned", eth], ["bonus_wei", "bonus", eth],
      ["earned_wei", "earned", eth], ["paid_wei", "paid", eth]], "no match yet") +
    tbl(credited, [["account", "account credited on chain"], ["wei", "amount", eth]], "nothing credited yet") +
    `<p>refund to the model provider: ${eth(s.refund_wei)} · still in escrow: ${eth(s.escrow_wei)}</p>`;
  $("split").innerHTML = bars(s.matches.filter(m => BigInt(m.bonus_wei) > 0n).map(m => ({label: `match ${m.match_id}`, v: Number(m.bonus_wei)})));
  $("report").innerHTML = s.report_files.length ? s.report_files.map(f => `<a href="/tasks/${TASK}/report/${f}">${f}</a>`).join(" · ") +
    (s.report_files.includes("accuracy_loss.png") ? `<br><img src="/tasks/${TASK}/report/accuracy_loss.png" width=420>` : "") +
    (s.report_files.includes("contribution_payout.png") ? ` <img src="/tasks/${TASK}/report/contribution_payout.png" width=420>` : "")
    : "<p class=muted>no report on this node (the model provider writes it when the task ends)</p>";
  $("failures").innerHTML = s.failures.length ? "<ul>" + s.failures.map(f => `<li class=bad>${esc(f)}</li>`).join("") + "</ul>" : "<p class=muted>none</p>";
}
render(JSON.parse($("initial").textContent));
const es = new EventSource(`/tasks/${TASK}/events`);
es.addEventListener("status", e => { render(JSON.parse(e.data)); $("live").textContent = "live · updated " + new Date().toLocaleTimeString(); });
es.onerror = () => { $("live").textContent = "disconnected; retrying…"; };
"""


def task_page(status: dict, *, nonce: str) -> bytes:
    tid = int(status["task_id"])
    title = f"Task {tid}" + (f" · {status['name']}" if status.get("name") else "")
    body = TASK_BODY.replace("__INITIAL__", _json(status))
    return layout(title, body, nonce=nonce, script=TASK_SCRIPT.replace("__TASK_ID__", str(tid)))
