"""Registry on a real anvil: register/update/withdraw offers, their events, the getter, every revert."""

from __future__ import annotations

import pytest

from tests.integration.contracts_anvil import ZERO, Reverted, anvil_fixture, deploy, events, send

anvil = pytest.fixture(scope="module")(anvil_fixture)

DATA, COMPUTE = 0, 1
CID1, CID2 = b"\x01" * 32, b"\x02" * 32
RAW, DAG_PB = 0x55, 0x70


def _reverts(name, fn, *args, **kw):
    with pytest.raises(Reverted) as ei:
        fn(*args, **kw)
    assert ei.value.name == name, f"expected {name}, got {ei.value}"
    return ei.value


def test_offer_lifecycle(anvil):
    w3 = anvil.w3
    owner, other = w3.eth.accounts[1:3]
    reg = deploy(w3, "Registry")
    assert reg.functions.nextOfferId().call() == 1
    assert tuple(reg.functions.offer(1).call()) == (ZERO, DATA, 0, False)
    rcpt = send(reg, "registerOffer", DATA, CID1, RAW, 5 * 10**15, sender=owner)
    assert events(reg, rcpt, "OfferRegistered") == [
        {"offerId": 1, "owner": owner, "kind": DATA, "price": 5 * 10**15, "cid": CID1, "codec": RAW}]
    rcpt = send(reg, "registerOffer", COMPUTE, CID2, DAG_PB, 7, sender=other)
    assert events(reg, rcpt, "OfferRegistered")[0]["offerId"] == 2
    assert tuple(reg.functions.offer(1).call()) == (owner, DATA, 5 * 10**15, True)
    assert tuple(reg.functions.offer(2).call()) == (other, COMPUTE, 7, True)

    rcpt = send(reg, "updateOffer", 1, CID2, DAG_PB, 9, sender=owner)
    assert events(reg, rcpt, "OfferUpdated") == [{"offerId": 1, "price": 9, "cid": CID2, "codec": DAG_PB}]
    assert tuple(reg.functions.offer(1).call()) == (owner, DATA, 9, True)

    rcpt = send(reg, "withdrawOffer", 1, sender=owner)
    assert events(reg, rcpt, "OfferWithdrawn") == [{"offerId": 1}]
    assert tuple(reg.functions.offer(1).call()) == (owner, DATA, 9, False)
    # Nodes rebuild the catalogue (with CIDs) from the events alone.
    logs = reg.events.OfferRegistered().get_logs(from_block=0)
    assert [(e["args"]["offerId"], e["args"]["cid"]) for e in logs] == [(1, CID1), (2, CID2)]


def test_registry_reverts(anvil):
    w3 = anvil.w3
    owner, other = w3.eth.accounts[1:3]
    reg = deploy(w3, "Registry")
    _reverts("EmptyCid", send, reg, "registerOffer", DATA, bytes(32), RAW, 1, sender=owner)
    e = _reverts("PriceTooLarge", send, reg, "registerOffer", DATA, CID1, RAW, 2**80, sender=owner)
    assert e.args == (2**80,)
    send(reg, "registerOffer", DATA, CID1, RAW, 2**80 - 1, sender=owner)  # the largest price fits
    e = _reverts("NotOfferOwner", send, reg, "updateOffer", 1, CID2, RAW, 1, sender=other)
    assert e.args == (1, other)
    _reverts("NotOfferOwner", send, reg, "updateOffer", 99, CID2, RAW, 1, sender=owner)
    _reverts("EmptyCid", send, reg, "updateOffer", 1, bytes(32), RAW, 1, sender=owner)
    _reverts("PriceTooLarge", send, reg, "updateOffer", 1, CID2, RAW, 2**80, sender=owner)
    _reverts("NotOfferOwner", send, reg, "withdrawOffer", 1, sender=other)
    send(reg, "withdrawOffer", 1, sender=owner)
    e = _reverts("OfferNotActive", send, reg, "withdrawOffer", 1, sender=owner)
    assert e.args == (1,)
    _reverts("OfferNotActive", send, reg, "updateOffer", 1, CID2, RAW, 1, sender=owner)
