"""The dashboard's ASGI app: Host check, token, GET/HEAD only, routes to pages, JSON, server-sent events and /metrics."""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode

import trio

from dainode import metrics
from dainode.dashboard import pages
from dainode.dashboard.auth import cookie_name, host_allowed, request_token, token_ok
from dainode.dashboard.views import DashboardData, Unavailable

log = logging.getLogger("dainode.http")

SSE_POLL_S = 0.5  # how often an open task page's status is re-read (only while a browser has it open)
SSE_KEEPALIVE_S = 15.0
TASK_RE = re.compile(r"^/tasks/(\d{1,12})(/events|/report/([A-Za-z0-9_.-]+))?$")
API_TASK_RE = re.compile(r"^/api/tasks/(\d{1,12})$")


class Request:
    def __init__(self, scope: dict):
        self.method = scope["method"]
        self.path = scope["path"]
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.query = parse_qs(scope.get("query_string", b"").decode("latin-1"))


class DashboardApp:
    """ASGI 3 app. Every request: Host must name this server (421), the token must match (401), and only GET/HEAD (405)."""

    def __init__(self, data: DashboardData, token: str):
        self.data = data
        self.token = token
        self.allowed: frozenset[str] = frozenset()
        self.port = 0

    def bound(self, allowed: frozenset[str], port: int) -> None:
        self.allowed, self.port = allowed, port

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets: server-sent events are enough
        req = Request(scope)
        if not host_allowed(req.headers.get("host"), self.allowed):
            await respond(send, 421, b"misdirected request: this dashboard answers only to its own address (localhost:PORT)\n")
            return
        qtoken = (req.query.get("token") or [None])[0]
        given, where = request_token(req.headers, qtoken, self.port)
        if not token_ok(given, self.token):
            await respond(send, 401, b"a token is required: run `dainode dashboard` for the URL with the token, "
                          b"or send Authorization: Bearer <data-dir>/http.token\n", headers=[(b"www-authenticate", b"Bearer")])
            return
        if req.method not in ("GET", "HEAD"):
            await respond(send, 405, b"the dashboard is read-only: GET and HEAD only\n", headers=[(b"allow", b"GET, HEAD")])
            return
        if where == "query":  # move the token into a cookie and out of the address bar and history
            rest = {k: v for k, v in req.query.items() if k != "token"}
            location = req.path + ("?" + urlencode(rest, doseq=True) if rest else "")
            cookie = f"{cookie_name(self.port)}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await respond(send, 303, b"", headers=[(b"location", location.encode()), (b"set-cookie", cookie.encode())])
            return
        try:
            await self.route(req, receive, send)
        except Unavailable as exc:
            await self.html(send, 404, pages.message_page("Not available", str(exc), nonce="-"), req)

    async def route(self, req: Request, receive, send) -> None:
        path = req.path
        nonce = secrets.token_urlsafe(12)
        if path == "/":
            return await self.html(send, 200, pages.node_page(await self.data.node_page(), nonce=nonce), req, nonce)
        if path == "/offers":
            try:
                offers: Any = await self.data.offers_page()
            except Unavailable as exc:
                offers = str(exc)
            return await self.html(send, 200, pages.offers_page(offers, nonce=nonce), req, nonce)
        if path == "/tasks":
            try:
                tasks: Any = await self.data.tasks_page()
            except Unavailable as exc:
                tasks = str(exc)
            return await self.html(send, 200, pages.tasks_page(tasks, nonce=nonce), req, nonce)
        if path == "/metrics":
            m = metrics.enable()
            await self.data.refresh_metrics(m)
            body = m.render()
            return await respond(send, 200, body, ctype=b"text/plain; version=0.0.4; charset=utf-8", head=req.method == "HEAD")
        if path in ("/api/node", "/api/offers", "/api/tasks"):
            fn = {"/api/node": self.data.node_page, "/api/offers": self.data.offers_page, "/api/tasks": self.data.tasks_page}[path]
            return await self.json(send, await fn(), req)
        m_api = API_TASK_RE.match(path)
        if m_api:
            return await self.json(send, await self.data.task_page(int(m_api.group(1))), req)
        m_task = TASK_RE.match(path)
        if m_task:
            tid = int(m_task.group(1))
            if m_task.group(2) == "/events":
                return await self.events(tid, receive, send)
            status = await self.data.task_page(tid)
            if m_task.group(3):
                f = self.data.report_file(status, m_task.group(3))
                if f is None:
                    return await respond(send, 404, b"no such report file for this task on this node\n")
                ctype = b"image/png" if f.suffix == ".png" else b"application/json"
                body = await trio.to_thread.run_sync(f.read_bytes)
                return await respond(send, 200, body, ctype=ctype, head=req.method == "HEAD")
            return await self.html(send, 200, pages.task_page(status, nonce=nonce), req, nonce)
        await respond(send, 404, b"not found\n")

    async def html(self, send, status: int, body: bytes, req: Request, nonce: str = "-") -> None:
        csp = (f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self'; "
               "connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'")
        await respond(send, status, body, ctype=b"text/html; charset=utf-8", headers=[(b"content-security-policy", csp.encode())],
                      head=req.method == "HEAD")

    async def json(self, send, value: Any, req: Request) -> None:
        await respond(send, 200, json.dumps(value, sort_keys=True).encode(), ctype=b"application/json", head=req.method == "HEAD")

    async def events(self, task_id: int, receive, send) -> None:
        """Server-sent events: one `status` event whenever the task page's data changes, until the browser goes away."""
        first = await self.data.task_page(task_id)  # an unknown task is a 404, before the stream starts
        await send({"type": "http.response.start", "status": 200, "headers": _headers(b"text/event-stream", [(b"x-accel-buffering", b"no")])})
        async with trio.open_nursery() as nursery:
            async def disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(disconnect)
            last, quiet = None, 0.0
            view: dict | None = first
            while True:
                if view is None:
                    try:
                        view = await self.data.task_page(task_id)
                    except Unavailable as exc:
                        log.debug("task %d events: %s", task_id, exc)
                text = json.dumps(view, sort_keys=True) if view is not None else None
                if text is not None and text != last:
                    await send({"type": "http.response.body", "body": f"event: status\ndata: {text}\n\n".encode(), "more_body": True})
                    last, quiet = text, 0.0
                elif quiet >= SSE_KEEPALIVE_S:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    quiet = 0.0
                view = None
                await trio.sleep(SSE_POLL_S)
                quiet += SSE_POLL_S


def _headers(ctype: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", ctype), (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"), *(extra or [])]


async def respond(send, status: int, body: bytes, *, ctype: bytes = b"text/plain; charset=utf-8",
                  headers: list[tuple[bytes, bytes]] | None = None, head: bool = False) -> None:
    hdrs = _headers(ctype, headers) + [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _lifespan(receive, send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
