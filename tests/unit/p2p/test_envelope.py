"""The signed gossip envelope: round trip, tampering, malformed input."""

from __future__ import annotations

import msgpack
import pytest
from eth_account import Account

from dainode.errors import GossipRejected
from dainode.p2p.envelope import jsonable, open_envelope, seal

TOPIC = "/dai/1/offers"


@pytest.fixture(scope="module")
def account():
    return Account.create()


def _reason(topic, data) -> str:
    with pytest.raises(GossipRejected) as info:
        open_envelope(topic, data)
    return info.value.reason


def test_round_trip(account):
    data = seal(account, TOPIC, "data_offer", {"cid": "bafy", "price": 3, "blob": b"\x00\x01"}, ts=1234)
    env = open_envelope(TOPIC, data)
    assert env["sender"] == account.address
    assert env["type"] == "data_offer" and env["ts"] == 1234 and env["v"] == 1
    assert env["body"] == {"cid": "bafy", "price": 3, "blob": b"\x00\x01"}
    assert set(msgpack.unpackb(data)) == {"v", "type", "body", "sender", "ts", "sig"}


def test_signature_binds_topic_and_body(account):
    data = seal(account, TOPIC, "x", {"a": 1})
    assert _reason("/dai/1/tasks", data) in ("sender_mismatch", "bad_signature")
    env = msgpack.unpackb(data)
    env["body"] = {"a": 2}
    assert _reason(TOPIC, msgpack.packb(env)) in ("sender_mismatch", "bad_signature")


def test_claiming_another_sender_is_sender_mismatch(account):
    other = Account.create()
    env = msgpack.unpackb(seal(other, TOPIC, "x", {}))
    env["sender"] = account.address  # signed by `other`, claims `account`
    assert _reason(TOPIC, msgpack.packb(env)) == "sender_mismatch"


def test_garbage_signature_is_bad_signature(account):
    env = msgpack.unpackb(seal(account, TOPIC, "x", {}))
    env["sig"] = b"\x11" * 64 + b"\x05"  # v byte 5: does not recover at all
    assert _reason(TOPIC, msgpack.packb(env)) == "bad_signature"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda e: e.update(v=2), "unknown_version"),
        (lambda e: e.update(v="1"), "malformed"),
        (lambda e: e.pop("ts"), "malformed"),
        (lambda e: e.update(extra=1), "malformed"),
        (lambda e: e.update(body=[1, 2]), "malformed"),
        (lambda e: e.update(type=""), "malformed"),
        (lambda e: e.update(sig=b"short"), "malformed"),
        (lambda e: e.update(sender="not-an-address"), "malformed"),
        (lambda e: e.update(ts=1.5), "malformed"),
    ],
)
def test_malformed_fields(account, mutate, reason):
    env = msgpack.unpackb(seal(account, TOPIC, "x", {"a": 1}))
    mutate(env)
    assert _reason(TOPIC, msgpack.packb(env)) == reason


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x92\x01\x02", msgpack.packb("text")])
def test_not_an_envelope(data):
    assert _reason(TOPIC, data) == "malformed"


def test_seal_rejects_bad_arguments(account):
    with pytest.raises(ValueError):
        seal(account, TOPIC, "", {})
    with pytest.raises(ValueError):
        seal(account, TOPIC, "x", [1])  # type: ignore[arg-type]


def test_jsonable():
    assert jsonable({"b": b"\xab", "l": (1, b"\x01"), 3: None}) == {"b": "0xab", "l": [1, "0x01"], "3": None}
