"""Offer documents (canonical JSON on IPFS) and the crash-safe publish step: IPFS add -> registerOffer -> announce."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from dainode.canonical import canonical_json
from dainode.errors import ChainError, ChainUnavailable, DainodeError, TransactionReverted
from dainode.p2p.topics import OFFERS
from dainode.state import OfferRecord

log = logging.getLogger("dainode.offers")

DATA_SCHEMA = "dainode.data-offer/1"
COMPUTE_SCHEMA = "dainode.compute-offer/1"
SCHEMAS = {"data": DATA_SCHEMA, "compute": COMPUTE_SCHEMA}
STEP_KIND = "offer_publish"
ANNOUNCE = "offer"  # gossip message type of an offer announcement on /dai/1/offers
WITHDRAWN = "offer_withdrawn"
MAX_PRICE_WEI = 2**80 - 1  # Registry packs prices in uint80


canonical = canonical_json  # the offer document bytes whose CID goes on chain


def check_price(price_wei: Any) -> int:
    from dainode.errors import ConfigError

    try:
        price = int(str(price_wei), 10)
    except ValueError:
        raise ConfigError(f"price {price_wei!r} is not a whole number of wei (e.g. --price 1000000000000000)", key="price") from None
    if not 0 <= price <= MAX_PRICE_WEI:
        raise ConfigError(f"price {price} wei is outside 0..{MAX_PRICE_WEI} (the Registry stores uint80)", key="price")
    return price


def summary(kind: str, doc: dict) -> dict:
    """The few fields `offer list` shows for a document."""
    if not doc:
        return {}
    if kind == "data":
        ds = doc.get("dataset", {})
        feats = ds.get("features", [])
        n_features = 1
        for f in feats:
            n_features *= int(f)
        return {"rows": ds.get("rows"), "features": n_features if feats else None, "shards": len(doc.get("shards", [])),
                "quality": (doc.get("quality") or {}).get("score")}
    return {"capacity": doc.get("capacity"), "backend": (doc.get("jax") or {}).get("backend")}


class OfferPublisher:
    """One offer publication as a State step (intent -> effect -> result), resumable after SIGKILL:

    intent (kind, document) -> IPFS add (effect cid) -> sign registerOffer (effect tx_hash + raw bytes, written
    before they leave the node) -> receipt (effect offer_id) -> gossip announcement -> result. A resumed step
    looks its transaction up by hash and re-sends the same bytes; it signs a new one only when the chain can
    never include the old one, so an offer is registered exactly once.
    """

    def __init__(self, ctx):
        self.ctx = ctx

    def step_id(self, kind: str, doc: dict) -> str:
        return f"offer-{kind}-{hashlib.sha256(canonical(doc)).hexdigest()[:20]}"

    async def publish(self, kind: str, doc: dict) -> dict:
        state = self.ctx.state
        sid = self.step_id(kind, doc)
        step = state.begin_step(sid, STEP_KIND, {"kind": kind, "doc": doc})
        if step.finished:
            if step.error:
                raise DainodeError(step.error)
            return step.result
        try:
            return await self.resume(sid)
        except TransactionReverted as exc:
            # The chain refused it (nothing landed): record that, so a restart does not retry it forever.
            state.fail_step(sid, str(exc))
            raise
        except ChainUnavailable as exc:
            # The endpoint went away before a transaction was signed: nothing can land, and the
            # caller is told it failed (and will likely ask again). Left unfinished, the next start
            # would register it anyway: a second offer nobody asked for. Once signed, the step
            # stays open: its transaction may land, and the next start looks it up by hash.
            if not state.get_step(sid).effect.get("tx_hash"):
                state.fail_step(sid, f"the chain was unavailable before registerOffer was sent: {exc}")
            raise

    async def resume(self, sid: str) -> dict:
        state, ctx = self.ctx.state, self.ctx
        chain = ctx.require_chain("offers")
        step = state.get_step(sid)
        kind, doc = step.intent["kind"], step.intent["doc"]
        price = int(doc["price_wei"])
        from dainode.store.cid import CID

        if "cid" not in step.effect:
            cid = await ctx.content.put_bytes(canonical(doc))
            step = state.record_effect(sid, cid=str(cid))
            log.info("offer document %s on IPFS (%s)", cid, sid)
        cid = CID.parse(step.effect["cid"])
        if "offer_id" not in step.effect:
            receipt = None
            if step.effect.get("tx_hash"):
                raw = bytes.fromhex(step.effect["raw"]) if step.effect.get("raw") else None
                receipt = await chain.receipt_of(step.effect["tx_hash"], raw)
                if receipt is None:
                    log.warning("offer tx %s can never be mined (its nonce was used); signing again", step.effect["tx_hash"])
            if receipt is None:
                def journal(tx_hash: str, nonce: int, raw: bytes) -> None:
                    state.record_effect(sid, tx_hash=tx_hash, raw=raw.hex(), nonce=nonce)

                _, receipt = await chain.register_offer(kind, cid, price, on_signed=journal)
            if int(receipt.get("status", "0x1"), 16) != 1:
                raise ChainError(f"registerOffer transaction {receipt.get('transactionHash')} failed")
            offer_id = chain.offer_id_from(receipt)
            with state.transaction():
                step = state.record_effect(sid, offer_id=offer_id, tx=receipt["transactionHash"], block=int(receipt["blockNumber"], 16))
                state.put_own_offer(OfferRecord(
                    key=sid, kind=kind, offer_id=offer_id, owner=ctx.keys.address, peer_id=ctx.keys.peer_id,
                    price_wei=price, cid=str(cid), active=True, doc=doc, block=step.effect["block"],
                ))
            log.info("offer %d registered on chain (tx %s)", offer_id, receipt["transactionHash"])
        offer_id = step.effect["offer_id"]
        if not step.effect.get("announced"):
            await self.announce(kind, offer_id, str(cid), price)
            step = state.record_effect(sid, announced=True)
        result = {"offer_id": offer_id, "cid": str(cid), "tx": step.effect["tx"], "kind": kind}
        state.finish_step(sid, result)
        return result

    async def announce(self, kind: str, offer_id: int, cid: str, price_wei: int) -> None:
        body = {"offer_id": int(offer_id), "kind": kind, "cid": cid, "price_wei": str(price_wei)}
        await self.ctx.gossip.publish(OFFERS, ANNOUNCE, body)

    async def resume_all(self, kind: str) -> None:
        """Finish what a crash interrupted (called when the role starts)."""
        for step in self.ctx.state.list_steps(STEP_KIND, unfinished=True):
            if step.intent.get("kind") != kind:
                continue
            log.info("resuming interrupted offer publication %s", step.step_id)
            try:
                await self.resume(step.step_id)
            except TransactionReverted as exc:
                self.ctx.state.fail_step(step.step_id, str(exc))
                log.warning("interrupted offer publication %s was refused by the chain: %s", step.step_id, exc)
            except DainodeError as exc:
                log.warning("could not resume offer publication %s: %s (retried at next start)", step.step_id, exc)


def base_document(kind: str, ctx, price_wei: int) -> dict:
    return {
        "schema": SCHEMAS[kind],
        "kind": kind,
        "price_wei": str(price_wei),
        "provider": {"peer_id": ctx.keys.peer_id, "address": ctx.keys.address},
        "created": int(time.time()),
    }
