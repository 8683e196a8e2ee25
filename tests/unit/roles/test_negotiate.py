"""The /dai/negotiate/1.0.0 dispatcher: one handler per node, refusals as replies, size limits, local requests."""

from types import SimpleNamespace

import pytest
import trio

from dainode.errors import TaskError
from dainode.roles import negotiate as neg


class FakeReqResp:
    def __init__(self):
        self.handlers = {}
        self.sent = []

    def set_handler(self, protocol, handler):
        self.handlers[protocol] = handler

    async def request(self, peer, protocol, msg, timeout):
        self.sent.append((peer, protocol, msg, timeout))
        return {"v": 1, "type": "x_reply", "ok": True}


def make_ctx():
    return SimpleNamespace(reqresp=FakeReqResp(), keys=SimpleNamespace(peer_id="me"))


def test_one_negotiator_per_node_and_dispatch_by_type():
    ctx = make_ctx()
    n = neg.negotiator(ctx)
    assert neg.negotiator(ctx) is n
    assert neg.PROTOCOL in ctx.reqresp.handlers

    async def handler(msg, peer):
        return neg.reply("ping", got=msg["x"], peer=peer)

    n.add("ping", handler)

    async def main():
        serve = ctx.reqresp.handlers[neg.PROTOCOL]
        assert await serve("peer1", {"v": 1, "type": "ping", "x": 5}) == {"v": 1, "type": "ping_reply", "ok": True, "got": 5,
                                                                         "peer": "peer1"}
        out = await serve("peer1", {"v": 1, "type": "nope"})
        assert out["ok"] is False and out["reason"] == "malformed" and "nope" in out["detail"]
        out = await serve("peer1", {"type": "ping"})
        assert out["ok"] is False and out["reason"] == "malformed"
        # a request to this node's own peer id is served locally, never sent
        assert (await n.request("me", {"v": 1, "type": "ping", "x": 1}, 1.0))["got"] == 1
        assert ctx.reqresp.sent == []
        await n.request("other", {"v": 1, "type": "ping", "x": 1}, 2.0)
        assert ctx.reqresp.sent[0][:2] == ("other", neg.PROTOCOL)

    trio.run(main)


def test_refusals_and_errors_become_replies_and_size_is_limited():
    ctx = make_ctx()
    n = neg.negotiator(ctx)

    async def refuses(msg, peer):
        raise neg.Refused("price", "too cheap")

    async def fails(msg, peer):
        raise TaskError("chain down")

    n.add("a", refuses)
    n.add("b", fails)
    n.add(neg.ROUND_MODEL, refuses)

    async def main():
        serve = ctx.reqresp.handlers[neg.PROTOCOL]
        assert await serve("p", {"v": 1, "type": "a"}) == {"v": 1, "type": "a_reply", "ok": False, "reason": "price",
                                                          "detail": "too cheap"}
        out = await serve("p", {"v": 1, "type": "b"})
        assert out["reason"] == "internal" and "chain down" in out["detail"]
        big = {"v": 1, "type": "a", "pad": b"x" * (neg.MAX_MESSAGE + 1)}
        assert "limited to" in (await serve("p", big))["detail"]
        # pushes may be bigger (up to MAX_PUSH): this one reaches its handler
        push = {"v": 1, "type": neg.ROUND_MODEL, "pad": b"x" * (neg.MAX_MESSAGE + 1)}
        assert (await serve("p", push))["reason"] == "price"

    trio.run(main)


@pytest.mark.parametrize("msg,name,kind", [({"a": -1}, "a", int), ({"a": True}, "a", int), ({"a": ""}, "a", str),
                                           ({"a": b"x" * 64}, "a", bytes), ({}, "a", int)])
def test_need_refuses_bad_fields(msg, name, kind):
    with pytest.raises(neg.Refused) as exc:
        neg.need(msg, name, kind)
    assert exc.value.reason == "malformed" and name in exc.value.detail


def test_wei_is_a_decimal_string():
    assert neg.wei({"p": "123"}, "p") == 123
    for bad in ("-1", "1e18", "0x10", "1" * 41):
        with pytest.raises(neg.Refused):
            neg.wei({"p": bad}, "p")
