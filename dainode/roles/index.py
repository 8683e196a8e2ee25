"""The offer index every node keeps: Registry events (backfill + live) and gossip announcements, each checked
against the chain, documents fetched by CID and verified, stored in State."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from typing import Any

import trio

from dainode.errors import ChainError, DainodeError, RpcError
from dainode.p2p.topics import OFFERS
from dainode.roles.context import cid_from_chain
from dainode.roles.offers import ANNOUNCE, SCHEMAS, WITHDRAWN, canonical, summary
from dainode.service import Service
from dainode.state import OfferRecord
from dainode.store.cid import CID

log = logging.getLogger("dainode.offers")

REASONS = ("malformed", "unknown_offer", "inactive", "wrong_owner", "wrong_kind", "cid_mismatch", "fetch_failed", "bad_document")
FETCH_TIMEOUT_S = 20.0
MAX_DOC_BYTES = 1 << 20
EVENTS = ["OfferRegistered", "OfferUpdated", "OfferWithdrawn"]


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def verify_document(raw: bytes, *, kind: str, owner: str, price_wei: int) -> dict:
    """The fetched bytes (already hash-checked against the CID by the store) must be this offer's document."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected("bad_document", f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or canonical(doc) != raw:
        raise Rejected("bad_document", "not canonical JSON")
    if doc.get("schema") != SCHEMAS.get(kind) or doc.get("kind") != kind:
        raise Rejected("bad_document", f"schema {doc.get('schema')!r} / kind {doc.get('kind')!r} is not a {kind} offer")
    provider = doc.get("provider") or {}
    if str(provider.get("address", "")).lower() != owner.lower():
        raise Rejected("bad_document", f"document names provider {provider.get('address')!r}, the chain owner is {owner}")
    if doc.get("price_wei") != str(price_wei):
        raise Rejected("bad_document", f"document price {doc.get('price_wei')!r} differs from the chain's {price_wei}")
    return doc


def entry(o: OfferRecord, *, with_doc: bool = False) -> dict:
    out = {
        "offer_id": o.offer_id, "kind": o.kind, "owner": o.owner, "peer_id": o.peer_id, "price_wei": str(o.price_wei),
        "cid": o.cid, "active": o.active, "verified": bool(o.doc), "block": o.block, **summary(o.kind, o.doc),
    }
    if with_doc:
        out["document"] = o.doc
    return out


class OfferIndex(Service):
    name = "offers"

    def __init__(self, ctx):
        self.ctx = ctx
        self.accepted = 0
        self.dropped: Counter[str] = Counter()
        self.events = 0
        self._fetch_send, self._fetch_recv = trio.open_memory_channel[int](1024)
        self._queued: set[int] = set()

    def stats(self) -> dict:
        return {"accepted": self.accepted, "dropped": sum(self.dropped.values()),
                "dropped_by_reason": {r: self.dropped.get(r, 0) for r in REASONS}, "chain_events": self.events}

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.ctx.gossip.add_stats("offers", self.stats)
        if self.ctx.chain is None:
            log.info("no chain (--chain none): the offer index cannot check offers and stays empty")
            task_status.started()
            await trio.sleep_forever()
        sub = self.ctx.gossip.subscribe(OFFERS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._gossip_loop, sub, nursery)
            nursery.start_soon(self._chain_loop)
            nursery.start_soon(self._fetch_loop)
            for o in self.ctx.state.list_seen_offers():
                if not o.doc:
                    self._queue_fetch(o.offer_id)
            task_status.started()
            await trio.sleep_forever()

    # --- chain events: the source of truth ---------------------------------------------------

    async def _chain_loop(self) -> None:
        backoff = 1.0
        while True:
            try:
                async with self.ctx.chain.subscribe("offer-index", "Registry", EVENTS) as events:
                    async for ev in events:
                        self.events += 1
                        self._apply_event(ev)
                        backoff = 1.0
            except ChainError as exc:  # an endpoint outage must not stop the node: resume from the cursor
                log.warning("offer index: chain events unavailable (%s); retrying in %.0f s", exc, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def _apply_event(self, ev) -> None:
        state = self.ctx.state
        offer_id = int(ev.args["offerId"])
        old = state.get_seen_offer(offer_id)
        if ev.name == "OfferRegistered":
            kind = "data" if int(ev.args["kind"]) == 0 else "compute"
            cid = str(cid_from_chain(ev.args["cid"], ev.args["codec"]))
            if ev.removed:
                if old is not None:
                    state.put_seen_offer(replace(old, active=False, block=ev.block_number))
                return
            keep = old is not None and old.cid == cid
            rec = OfferRecord(
                key=str(offer_id), kind=kind, offer_id=offer_id, owner=ev.args["owner"], price_wei=int(ev.args["price"]), cid=cid,
                active=True if old is None else old.active, doc=old.doc if keep else {}, peer_id=old.peer_id if keep else "",
                block=ev.block_number,
            )
        elif ev.name == "OfferUpdated":
            if old is None or ev.removed:
                return
            cid = str(cid_from_chain(ev.args["cid"], ev.args["codec"]))
            keep = old.cid == cid and old.price_wei == int(ev.args["price"])
            rec = replace(old, price_wei=int(ev.args["price"]), cid=cid, doc=old.doc if keep else {}, block=ev.block_number)
        else:  # OfferWithdrawn
            if old is None:
                return
            rec = replace(old, active=bool(ev.removed), block=ev.block_number)
        state.put_seen_offer(rec)
        if not rec.doc and rec.active:
            self._queue_fetch(offer_id)

    # --- documents ---------------------------------------------------------------------------

    def _queue_fetch(self, offer_id: int) -> None:
        if offer_id in self._queued:
            return
        try:
            self._fetch_send.send_nowait(offer_id)
            self._queued.add(offer_id)
        except trio.WouldBlock:
            pass  # retried from State at the next start

    async def _fetch_loop(self) -> None:
        retry: dict[int, float] = {}
        limit = trio.Semaphore(4)
        async with trio.open_nursery() as nursery:
            async for offer_id in self._fetch_recv:
                await limit.acquire()
                nursery.start_soon(self._fetch_one, offer_id, limit, retry, nursery)

    async def _fetch_one(self, offer_id: int, limit: trio.Semaphore, retry: dict[int, float], nursery: trio.Nursery) -> None:
        try:
            rec = self.ctx.state.get_seen_offer(offer_id)
            if rec is None or rec.doc or not rec.active:
                return
            try:
                doc = await self._fetch_doc(CID.parse(rec.cid), kind=rec.kind, owner=rec.owner, price_wei=rec.price_wei)
            except (Rejected, DainodeError) as exc:
                delay = retry.get(offer_id, 1.0)
                retry[offer_id] = min(delay * 2, 60.0)
                log.info("offer %d: document %s not usable yet (%s); retrying in %.0f s", offer_id, rec.cid, exc, delay)
                nursery.start_soon(self._requeue_later, offer_id, delay)
                return
            retry.pop(offer_id, None)
            self._store_doc(offer_id, rec.cid, doc)
        finally:
            self._queued.discard(offer_id)
            limit.release()

    async def _requeue_later(self, offer_id: int, delay: float) -> None:
        await trio.sleep(delay)
        self._queue_fetch(offer_id)

    def _store_doc(self, offer_id: int, cid: str, doc: dict) -> None:
        rec = self.ctx.state.get_seen_offer(offer_id)
        if rec is None or rec.cid != cid or rec.doc == doc:
            return  # updated meanwhile, or already indexed by the other path (gossip / chain events)
        peer = str((doc.get("provider") or {}).get("peer_id", ""))
        self.ctx.state.put_seen_offer(replace(rec, doc=doc, peer_id=peer))
        log.info("offer %d (%s by %s) indexed", offer_id, rec.kind, rec.owner)

    async def _fetch_doc(self, cid: CID, *, kind: str, owner: str, price_wei: int) -> dict:
        raw = None
        with trio.move_on_after(FETCH_TIMEOUT_S):
            try:
                raw = await self.ctx.content.get_bytes(cid, limit=MAX_DOC_BYTES)
            except DainodeError as exc:
                raise Rejected("fetch_failed", str(exc)) from None
        if raw is None:
            raise Rejected("fetch_failed", f"{cid} not found within {FETCH_TIMEOUT_S:g} s")
        return verify_document(raw, kind=kind, owner=owner, price_wei=price_wei)

    # --- gossip announcements: the fast path, every claim checked -------------------------------

    async def _gossip_loop(self, sub, nursery: trio.Nursery) -> None:
        limit = trio.Semaphore(8)
        async for msg in sub:
            if msg.type not in (ANNOUNCE, WITHDRAWN):
                continue
            await limit.acquire()
            nursery.start_soon(self._check_announcement, msg, limit)

    async def _check_announcement(self, msg, limit: trio.Semaphore) -> None:
        try:
            await self._verify_announcement(msg)
            self.accepted += 1
        except Rejected as exc:
            self.dropped[exc.reason] += 1
            log.info("dropped offer announcement from %s (%s): %s", msg.sender, msg.peer_id, exc)
        except DainodeError as exc:  # chain unreachable etc.: not the sender's fault, not counted as forged
            log.warning("could not check an offer announcement from %s: %s", msg.sender, exc)
        except Exception:  # a bug must not take the node down with it
            log.exception("offer announcement from %s: internal error while checking it", msg.sender)
        finally:
            limit.release()

    async def _verify_announcement(self, msg) -> None:
        body = msg.body
        try:
            offer_id = int(body["offer_id"])
            kind = str(body.get("kind", ""))
            cid = CID.parse(body["cid"]) if msg.type == ANNOUNCE else None
        except (KeyError, TypeError, ValueError, DainodeError) as exc:
            raise Rejected("malformed", f"{type(exc).__name__}: {exc}") from None
        chain = self.ctx.chain
        on_chain = await chain.offer(offer_id)
        if not on_chain.exists:
            raise Rejected("unknown_offer", f"offer {offer_id} is not in the Registry")
        if on_chain.owner.lower() != msg.sender.lower():
            raise Rejected("wrong_owner", f"offer {offer_id} belongs to {on_chain.owner}, the announcement is signed by {msg.sender}")
        if msg.type == WITHDRAWN:
            if on_chain.active:
                raise Rejected("inactive", f"offer {offer_id} is still active on chain")
            old = self.ctx.state.get_seen_offer(offer_id)
            if old is not None:
                self.ctx.state.put_seen_offer(replace(old, active=False))
            return
        if not on_chain.active:
            raise Rejected("inactive", f"offer {offer_id} was withdrawn")
        if on_chain.kind != kind:
            raise Rejected("wrong_kind", f"offer {offer_id} is a {on_chain.kind} offer, announced as {kind!r}")
        chain_cid = await chain.offer_cid(offer_id)
        if chain_cid is None or chain_cid.to_v1() != cid.to_v1():
            raise Rejected("cid_mismatch", f"offer {offer_id} has CID {chain_cid} on chain, announced {cid}")
        rec = self.ctx.state.get_seen_offer(offer_id)
        if rec is not None and rec.doc and rec.cid == str(chain_cid):
            return  # already indexed (e.g. from the chain events)
        doc = await self._fetch_doc(chain_cid, kind=kind, owner=on_chain.owner, price_wei=on_chain.price_wei)
        rec = self.ctx.state.get_seen_offer(offer_id) or OfferRecord(
            key=str(offer_id), kind=kind, offer_id=offer_id, owner=on_chain.owner, price_wei=on_chain.price_wei, cid=str(chain_cid),
        )
        if rec.cid != str(chain_cid):
            rec = replace(rec, cid=str(chain_cid), price_wei=on_chain.price_wei)
        self.ctx.state.put_seen_offer(rec)
        self._store_doc(offer_id, str(chain_cid), doc)

    # --- admin RPC -----------------------------------------------------------------------------

    def rpc_methods(self) -> dict[str, Any]:
        return {"offer_list": self.rpc_list, "offer_get": self.rpc_get, "offer_withdraw": self.rpc_withdraw}

    async def rpc_list(self, kind: str | None = None, active: bool | None = None) -> list[dict]:
        """Offers on the network this node has checked (own ones included), by offer id."""
        if kind not in (None, "data", "compute"):
            raise RpcError(RpcError.INVALID_PARAMS, f"kind must be data or compute, not {kind!r}")
        return [entry(o) for o in self.ctx.state.list_seen_offers(kind, active=active)]

    async def rpc_get(self, offer_id: int) -> dict:
        rec = self.ctx.state.get_seen_offer(int(offer_id))
        if rec is None:
            raise RpcError(RpcError.APPLICATION_ERROR, f"offer {offer_id} is not in this node's index; see `dainode offer list`")
        return entry(rec, with_doc=True)

    async def rpc_withdraw(self, offer_id: int) -> dict:
        """Withdraw one of this node's offers on chain, then tell the network."""
        chain = self.ctx.require_chain("offers")
        on_chain = await chain.offer(int(offer_id))
        if not on_chain.exists:
            raise RpcError(RpcError.APPLICATION_ERROR, f"offer {offer_id} does not exist in the Registry")
        if on_chain.owner.lower() != self.ctx.keys.address.lower():
            raise RpcError(RpcError.APPLICATION_ERROR, f"offer {offer_id} belongs to {on_chain.owner}, not to this node ({self.ctx.keys.address})")
        tx = None
        if on_chain.active:
            receipt = await chain.withdraw_offer(int(offer_id))
            tx = receipt["transactionHash"]
        for own in self.ctx.state.list_own_offers():
            if own.offer_id == int(offer_id):
                self.ctx.state.put_own_offer(replace(own, active=False))
        old = self.ctx.state.get_seen_offer(int(offer_id))
        if old is not None:
            self.ctx.state.put_seen_offer(replace(old, active=False))
        await self.ctx.gossip.publish(OFFERS, WITHDRAWN, {"offer_id": int(offer_id)})
        return {"offer_id": int(offer_id), "withdrawn": True, "tx": tx}
