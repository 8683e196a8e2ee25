"""Gossip bodies: bounded nesting, 64-bit integers and finite floats, on publish (seal) and on receipt."""

from __future__ import annotations

import math

import msgpack
import pytest
from eth_account import Account

from dainode.errors import GossipRejected
from dainode.limits import MAX_MSGPACK_DEPTH
from dainode.p2p.envelope import check_body, open_envelope, seal

TOPIC = "/dai/1/offers"


def nested(depth: int):
    v: list = []
    for _ in range(depth - 1):
        v = [v]
    return v


@pytest.mark.parametrize(
    "body, why",
    [
        ({"n": 2**64}, "64-bit"),
        ({"n": -(2**63) - 1}, "64-bit"),
        ({"x": [1.5, math.nan]}, "not a finite number"),
        ({"x": math.inf}, "not a finite number"),
        ({"x": nested(MAX_MSGPACK_DEPTH)}, "nested deeper"),
        ({"x": {1.5: 2}}, "map keys"),
    ],
)
def test_bad_bodies_are_refused_by_seal(body, why):
    with pytest.raises(ValueError, match=why):
        seal(Account.create(), TOPIC, "diag", body)


def test_ordinary_and_boundary_bodies_pass():
    check_body({"n": 2**64 - 1, "m": -(2**63), "f": 0.5, "b": b"\x00", "l": nested(MAX_MSGPACK_DEPTH - 1), "k": {3: "int key"}})


def _raw_envelope(body_bytes: bytes) -> bytes:
    """A structurally valid envelope with a hand-made msgpack body (signature not checked)."""
    head = msgpack.packb({"v": 1, "type": "diag", "sender": "0x" + "11" * 20, "ts": 1, "sig": b"\x00" * 65})
    # fixmap of 5 -> 6 entries, then "body": <raw>
    return bytes([0x86]) + head[1:] + msgpack.packb("body") + body_bytes


@pytest.mark.parametrize(
    "raw_body, reason",
    [
        (b"\x81\xa1x" + b"\x91" * 200 + b"\xc0", "nested deeper"),  # 200 levels: below msgpack's own 1024 stack
        (b"\x81\xa1x" + b"\x91" * 5000 + b"\xc0", "not msgpack"),  # beyond msgpack's stack: StackError
        (b"\x81\xa1x\xcb" + msgpack.packb(math.nan)[1:], "finite"),
    ],
)
def test_bad_bodies_from_peers_are_rejected_as_malformed(raw_body, reason):
    with pytest.raises(GossipRejected, match=reason) as err:
        open_envelope(TOPIC, _raw_envelope(raw_body), verify=False)
    assert err.value.reason == "malformed"
