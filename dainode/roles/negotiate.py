"""/dai/negotiate/1.0.0: one request handler per node dispatching by message `type` to the roles that serve it."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from dainode.errors import DainodeError

log = logging.getLogger("dainode.tasks")

PROTOCOL = "/dai/negotiate/1.0.0"
VERSION = 1
MAX_MESSAGE = 64 * 1024
MATCH_REQUEST, COMPUTE_REQUEST, MATCH_RECORDED = "match_request", "compute_request", "match_recorded"
ROUND_MODEL = "round_model"  # MP -> CP: the round result and sealed global model bytes, pushed while publish is mined
ROUND_UPDATE = "round_update"  # CP -> MP: the sealed update bytes, pushed while submitUpdate is mined
MAX_PUSH = 1 << 20  # round_model messages (the reqresp frame limit); larger models go by bitswap only
PUSH_TIMEOUT_S = 5.0


def pushes_enabled() -> bool:
    """On by default: pushed bytes are checked against their CID and held in memory (store inbox), so the fetch the
    chain event triggers returns them without a bitswap round trip. (Storing them on disk instead competed with
    the bitswap fetch it was meant to replace.) DAINODE_TASK_PUSH=0 turns them off."""
    import os

    return os.environ.get("DAINODE_TASK_PUSH", "1") != "0"
MATCH_TIMEOUT_S = 30.0
COMPUTE_TIMEOUT_S = 10.0
NOTICE_TIMEOUT_S = 10.0
REASONS = ("malformed", "unknown_offer", "wrong_task", "schema", "price", "escrow", "no_compute", "busy", "capacity",
           "internal", "rate_limited")
# per remote peer: a matching round asks a node a few times a second at most; a flood is refused cheaply, and the
# node stays responsive to everyone else (its own requests are never limited)
RATE_PER_S = 5.0
RATE_BURST = 20.0

Handler = Callable[[dict, str], Awaitable[dict]]


class Refused(Exception):
    """A negotiation refusal: `reason` is one of REASONS, `detail` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def refusal(type_: str, reason: str, detail: str) -> dict:
    return {"v": VERSION, "type": f"{type_}_reply", "ok": False, "reason": reason, "detail": detail[:500]}


def reply(type_: str, **fields: Any) -> dict:
    return {"v": VERSION, "type": f"{type_}_reply", "ok": True, **fields}


def need(msg: dict, name: str, kind: type) -> Any:
    v = msg.get(name)
    if kind is int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise Refused("malformed", f"field {name!r} must be a non-negative integer, got {v!r}")
        return v
    if kind is str:
        if not isinstance(v, str) or not v or len(v) > 200:
            raise Refused("malformed", f"field {name!r} must be a non-empty string, got {v!r:.60}")
        return v
    if kind is bytes:
        if not isinstance(v, (bytes, bytearray)) or len(v) != 65:
            raise Refused("malformed", f"field {name!r} must be 65 signature bytes")
        return bytes(v)
    raise TypeError(kind)


def wei(msg: dict, name: str) -> int:
    v = need(msg, name, str)
    if not v.isdigit() or len(v) > 40:
        raise Refused("malformed", f"field {name!r} must be wei as a decimal string, got {v!r}")
    return int(v)


class Negotiator:
    """Installed once per node on the reqresp port; roles add handlers by message type."""

    def __init__(self, ctx, *, rate_per_s: float = RATE_PER_S, burst: float = RATE_BURST):
        from dainode.roles.rejections import RateLimit, rejections

        self.ctx = ctx
        self.handlers: dict[str, Handler] = {}
        self.limit = RateLimit(rate_per_s, burst)
        self.rejections = rejections(ctx)
        self._limited_logged = 0.0
        ctx.reqresp.set_handler(PROTOCOL, self._serve)

    def stats(self) -> dict:
        """Refused requests by reason; `malformed_frame`: bytes that were not a msgpack map (refused by the transport)."""
        from dainode.roles.rejections import NEGOTIATION

        out = dict(self.rejections.counts.get(NEGOTIATION, {}))
        bad = getattr(self.ctx.reqresp, "bad_frames", None)
        if callable(bad) and bad(PROTOCOL):
            out["malformed_frame"] = bad(PROTOCOL)
        return dict(sorted(out.items()))

    def _refuse(self, type_: str, reason: str, detail: str, peer: str) -> dict:
        from dainode.roles.rejections import NEGOTIATION

        self.rejections.count(NEGOTIATION, reason)
        if reason == "rate_limited":
            import time

            if time.monotonic() - self._limited_logged > 5.0:  # one line per burst, not one per request
                self._limited_logged = time.monotonic()
                log.warning("negotiation from %s refused: %s (%d so far)", peer, detail,
                            self.rejections.counts[NEGOTIATION]["rate_limited"])
        else:
            log.info("negotiation %s from %s refused: %s: %s", type_, peer, reason, detail)
        return refusal(type_, reason, detail)

    def add(self, type_: str, handler: Handler) -> None:
        self.handlers[type_] = handler

    async def _serve(self, peer_id: Any, msg: Any) -> dict:
        import msgpack

        peer = str(peer_id or "")
        if peer != self.ctx.keys.peer_id and not self.limit.allow(peer):
            return self._refuse("unknown", "rate_limited", f"more than {self.limit.burst:g} requests at once or "
                                f"{self.limit.rate:g}/s from this peer; retry later", peer)
        limit = MAX_PUSH if isinstance(msg, dict) and msg.get("type") in (ROUND_MODEL, ROUND_UPDATE) else MAX_MESSAGE
        if len(msgpack.packb(msg, use_bin_type=True)) > limit:
            return self._refuse("unknown", "malformed", f"this negotiation message is limited to {limit} bytes", peer)
        if not isinstance(msg, dict) or msg.get("v") != VERSION or not isinstance(msg.get("type"), str):
            return self._refuse("unknown", "malformed", f"a {PROTOCOL} message is a map with v = {VERSION} and a type", peer)
        type_ = msg["type"]
        handler = self.handlers.get(type_)
        if handler is None:
            return self._refuse(type_, "malformed", f"this node does not serve {type_!r} (its roles: {sorted(self.handlers)})",
                                peer)
        try:
            return await handler(msg, peer)
        except Refused as exc:
            return self._refuse(type_, exc.reason, exc.detail, peer)
        except DainodeError as exc:
            log.warning("%s could not be served: %s", type_, exc)
            return self._refuse(type_, "internal", str(exc), peer)

    async def request(self, peer_id: str, msg: dict, timeout: float) -> dict:
        """Send to `peer_id` (or serve locally when it is this node); a refusal comes back as a dict with ok False."""
        if peer_id == self.ctx.keys.peer_id:
            return await self._serve(peer_id, msg)
        out = await self.ctx.reqresp.request(peer_id, PROTOCOL, msg, timeout=timeout)
        if not isinstance(out, dict):
            raise Refused("malformed", f"peer {peer_id} answered {type(out).__name__}, not a map")
        return out


def negotiator(ctx) -> Negotiator:
    """The node's one Negotiator (created on first use: data and compute roles share it)."""
    n = getattr(ctx, "_negotiator", None)
    if n is None:
        n = Negotiator(ctx)
        object.__setattr__(ctx, "_negotiator", n)
    return n
