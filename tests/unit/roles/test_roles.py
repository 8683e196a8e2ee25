"""Roles without a node: layer checks, CID <-> chain form, document checks, the index's event handling, resumable publishing."""

from __future__ import annotations

import pytest
import trio

from dainode.chain.contracts import Event
from dainode.errors import ConfigError
from dainode.roles.base import build_roles
from dainode.roles.context import Keys, RoleContext, cid_from_chain, cid_to_chain
from dainode.roles.index import OfferIndex, Rejected, entry, verify_document
from dainode.roles.offers import OfferPublisher, canonical, check_price
from dainode.state import open_state
from dainode.store.cid import CID, SHA3_256, cid_of, multihash

OWNER = "0x" + "ab" * 20


def ctx(chain=None, state=None, content=None, gossip=None):
    return RoleContext(gossip=gossip, reqresp=None, content=content, chain=chain, state=state or open_state(None),
                       keys=Keys(OWNER, "12D3KooWpeer"))


@pytest.mark.parametrize("role", ["data", "compute", "model"])
def test_a_role_without_its_chain_names_the_flag(role):
    with pytest.raises(ConfigError, match="--chain dev or --chain URL") as info:
        build_roles([role], ctx(chain=None))
    assert role in str(info.value)


def test_unknown_role_is_refused():
    with pytest.raises(ConfigError, match="unknown role 'miner'"):
        build_roles(["miner"], ctx(chain=object()))


def test_cid_chain_round_trip_and_non_sha256_refused():
    cid = cid_of(b"doc")
    digest, codec = cid_to_chain(cid)
    assert len(digest) == 32 and cid_from_chain(digest, codec) == cid
    from dainode.errors import ChainError

    with pytest.raises(ChainError, match="sha2-256"):
        cid_to_chain(CID(1, 0x55, multihash(b"doc", SHA3_256)))


def test_price_checks():
    assert check_price("1000") == 1000
    for bad in ("1.5", "-1", "abc", str(2**80)):
        with pytest.raises(ConfigError):
            check_price(bad)


def doc(price="5", address=OWNER, kind="data"):
    return {"schema": f"dainode.{kind}-offer/1", "kind": kind, "price_wei": price, "provider": {"peer_id": "p", "address": address},
            "dataset": {"rows": 10, "features": [8, 8]}, "shards": [{}, {}], "quality": {"score": 0.9}}


def test_verify_document():
    raw = canonical(doc())
    assert verify_document(raw, kind="data", owner=OWNER.upper().replace("0X", "0x"), price_wei=5)["kind"] == "data"
    cases = [
        (b'{"a": 1}', "canonical"),
        (canonical(doc(address="0x" + "cd" * 20)), "provider"),
        (canonical(doc(price="6")), "price"),
        (canonical(doc(kind="compute")), "schema"),
        (b"\xff", "JSON"),
    ]
    for raw, why in cases:
        with pytest.raises(Rejected, match=why) as info:
            verify_document(raw, kind="data", owner=OWNER, price_wei=5)
        assert info.value.reason == "bad_document"


def ev(name, block, **args):
    return Event("Registry", name, args, block, "0xh", "0xt", 0, "0xR")


def test_index_applies_registry_events():
    state = open_state(None)
    index = OfferIndex(ctx(state=state))
    cid = cid_of(canonical(doc()))
    digest, codec = cid_to_chain(cid)
    index._apply_event(ev("OfferRegistered", 5, offerId=1, owner=OWNER, kind=0, price=5, cid=digest, codec=codec))
    rec = state.get_seen_offer(1)
    assert (rec.kind, rec.owner, rec.cid, rec.active, rec.doc) == ("data", OWNER, str(cid), True, {})
    assert 1 in index._queued  # its document is fetched next
    index._store_doc(1, str(cid), doc())
    assert entry(state.get_seen_offer(1)) | {} == {
        "offer_id": 1, "kind": "data", "owner": OWNER, "peer_id": "p", "price_wei": "5", "cid": str(cid), "active": True,
        "verified": True, "block": 5, "rows": 10, "features": 64, "shards": 2, "quality": 0.9}
    # re-delivery (at least once) keeps the document
    index._apply_event(ev("OfferRegistered", 5, offerId=1, owner=OWNER, kind=0, price=5, cid=digest, codec=codec))
    assert state.get_seen_offer(1).doc
    # an update to another CID drops the old document
    other = cid_of(b"new")
    d2, c2 = cid_to_chain(other)
    index._apply_event(ev("OfferUpdated", 6, offerId=1, price=7, cid=d2, codec=c2))
    rec = state.get_seen_offer(1)
    assert (rec.cid, rec.price_wei, rec.doc) == (str(other), 7, {})
    index._apply_event(ev("OfferWithdrawn", 7, offerId=1))
    assert state.get_seen_offer(1).active is False
    index._apply_event(ev("OfferWithdrawn", 8, offerId=99))  # unknown: ignored
    assert state.get_seen_offer(99) is None


class FakeContent:
    def __init__(self):
        self.puts = 0

    async def put_bytes(self, data):
        self.puts += 1
        return cid_of(data)


class FakeGossip:
    def __init__(self):
        self.sent = []

    async def publish(self, topic, type_, body):
        self.sent.append((topic, type_, body))


class Crash(BaseException):
    pass


class FakeChainPort:
    """A chain that mines what it is sent; `crash_after_journal` kills the caller after the signed bytes were journaled."""

    def __init__(self):
        self.mined: dict[str, dict] = {}
        self.registered = 0
        self.crash_after_journal = False
        self.crash_after_send = False

    def _receipt(self, tx_hash):
        return {"transactionHash": tx_hash, "blockNumber": "0x9", "status": "0x1", "offer_id": 42}

    async def register_offer(self, kind, cid, price, *, on_signed=None):
        tx_hash = f"0x{self.registered + 100:064x}"
        on_signed(tx_hash, 0, b"raw-" + tx_hash.encode())
        if self.crash_after_journal:
            raise Crash
        self.registered += 1
        self.mined[tx_hash] = self._receipt(tx_hash)
        if self.crash_after_send:
            raise Crash
        return 42, self.mined[tx_hash]

    async def receipt_of(self, tx_hash, raw):
        if tx_hash not in self.mined:  # journaled but never sent: the same bytes go out now
            assert raw == b"raw-" + tx_hash.encode()
            self.registered += 1
            self.mined[tx_hash] = self._receipt(tx_hash)
        return self.mined[tx_hash]

    def offer_id_from(self, receipt):
        return receipt["offer_id"]


@pytest.mark.parametrize("point", ["crash_after_journal", "crash_after_send"])
async def test_publishing_resumes_after_a_crash_without_registering_twice(point):
    chain, content, gossip = FakeChainPort(), FakeContent(), FakeGossip()
    c = ctx(chain=chain, content=content, gossip=gossip)
    pub = OfferPublisher(c)
    setattr(chain, point, True)
    with pytest.raises(Crash):
        await pub.publish("data", doc())
    setattr(chain, point, False)
    step = c.state.list_steps(unfinished=True)[0]
    assert "cid" in step.effect and "tx_hash" in step.effect and gossip.sent == []
    await pub.resume_all("data")  # what the role does at its next start
    assert chain.registered == 1 and len(gossip.sent) == 1
    assert c.state.get_step(step.step_id).result["offer_id"] == 42
    assert [o.offer_id for o in c.state.list_own_offers()] == [42]
    again = await pub.publish("data", doc())  # the same request again: the finished step's result
    assert again["offer_id"] == 42 and chain.registered == 1 and len(gossip.sent) == 1


class DownBeforeSigning(FakeChainPort):
    async def register_offer(self, kind, cid, price, *, on_signed=None):
        from dainode.errors import ChainUnavailable

        raise ChainUnavailable("Ethereum endpoint http://127.0.0.1:1 is unreachable")


class DownAfterSigning(FakeChainPort):
    async def register_offer(self, kind, cid, price, *, on_signed=None):
        from dainode.errors import ChainUnavailable

        on_signed("0x" + "77" * 32, 0, b"raw")
        raise ChainUnavailable("Ethereum endpoint http://127.0.0.1:1 is unreachable")


async def test_an_offer_refused_by_an_outage_before_signing_is_not_resumed_at_the_next_start():
    from dainode.errors import ChainUnavailable

    c = ctx(chain=DownBeforeSigning(), content=FakeContent(), gossip=FakeGossip())
    with pytest.raises(ChainUnavailable):
        await OfferPublisher(c).publish("data", doc())
    assert c.state.list_steps(unfinished=True) == []  # the caller was told it failed; nothing to resume


async def test_an_offer_whose_transaction_was_signed_stays_open_through_an_outage():
    from dainode.errors import ChainUnavailable

    c = ctx(chain=DownAfterSigning(), content=FakeContent(), gossip=FakeGossip())
    with pytest.raises(ChainUnavailable):
        await OfferPublisher(c).publish("data", doc())
    [step] = c.state.list_steps(unfinished=True)  # its transaction may land: the next start looks it up
    assert step.effect["tx_hash"] == "0x" + "77" * 32
