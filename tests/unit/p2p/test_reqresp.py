"""Request/response between in-process nodes: success, refusal, timeouts, limits, garbage."""

from __future__ import annotations

import msgpack
import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.utils.varint import encode_varint_prefixed

from dainode.errors import DainodeError, ProtocolError, RemoteError, RequestTimeout
from dainode.p2p.reqresp import ReqResp
from tests.unit.p2p.helpers import running_nodes

PROTO = "/dai/negotiate/1.0.0"


async def test_request_response_round_trip_and_errors():
    async with running_nodes(2) as (a, b):
        await a.connect(b.listen_addrs()[0])
        seen = []

        async def negotiate(peer_id: str, request: dict) -> dict:
            seen.append(peer_id)
            if request.get("price", 0) < 10:
                raise DainodeError("price below 10")
            if request.get("buggy"):
                return {}["missing"]  # a handler bug
            if request.get("slow"):
                await trio.sleep(5)
            return {"accepted": True, "echo": request, "blob": b"\x00\xff"}

        b.reqresp.set_handler(PROTO, negotiate)
        reply = await a.reqresp.request(b.peer_id, PROTO, {"price": 12, "task": "t1"})
        assert reply == {"accepted": True, "echo": {"price": 12, "task": "t1"}, "blob": b"\x00\xff"}
        assert seen == [a.peer_id]

        with pytest.raises(RemoteError, match="price below 10"):
            await a.reqresp.request(b.peer_id, PROTO, {"price": 1})
        with pytest.raises(RemoteError, match="internal error"):
            await a.reqresp.request(b.peer_id, PROTO, {"price": 50, "buggy": True})
        with trio.fail_after(3):
            with pytest.raises(RequestTimeout):
                await a.reqresp.request(b.peer_id, PROTO, {"price": 20, "slow": True}, timeout=0.5)
        with pytest.raises(ProtocolError, match="cannot open"):
            await a.reqresp.request(b.peer_id, "/dai/unknown/1.0.0", {})
        with pytest.raises(ProtocolError, match="exceeds"):
            await a.reqresp.request(b.peer_id, PROTO, {"x": b"\x00" * (a.reqresp.max_size + 1)})
        # the server is still fine after all that
        assert (await a.reqresp.request(b.peer_id, PROTO, {"price": 99}))["accepted"] is True


async def test_garbage_and_oversized_frames_from_a_peer():
    async with running_nodes(2) as (a, b):
        await a.connect(b.listen_addrs()[0])
        small = ReqResp(b.host, max_size=64)

        async def ok(peer_id, request):
            return {"ok": 1}

        small.set_handler(PROTO, ok)

        async def raw_exchange(frame: bytes) -> dict:
            stream = await a.host.new_stream(b.host.get_id(), [TProtocol(PROTO)])
            await stream.write(frame)
            data = await stream.read(4096)
            return msgpack.unpackb(data[1:])  # 1-byte varint prefix for these short answers

        assert "not msgpack" in (await raw_exchange(encode_varint_prefixed(b"\xc1")))["error"]
        answer = await raw_exchange(encode_varint_prefixed(msgpack.packb([1, 2])))
        assert "expected a map" in answer["error"]
        answer = await raw_exchange(encode_varint_prefixed(b"\x80" * 100))
        assert "larger than 64" in answer["error"]

        # a server that answers garbage gives the requester a ProtocolError
        async def garbage_server(stream):
            await stream.read(100)
            await stream.write(encode_varint_prefixed(b"\x92\x01\x02"))
            await stream.close()

        b.host.set_stream_handler(TProtocol("/dai/garbage/1.0.0"), garbage_server)
        with pytest.raises(ProtocolError, match="expected a map"):
            await a.reqresp.request(b.peer_id, "/dai/garbage/1.0.0", {"q": 1})


async def test_deeply_nested_frames_are_a_protocol_error():
    from dainode.limits import MAX_MSGPACK_DEPTH
    from dainode.p2p.reqresp import decode

    with pytest.raises(ProtocolError, match=f"nested deeper than {MAX_MSGPACK_DEPTH}"):
        decode(b"\x81\xa1x" + b"\x91" * 500 + b"\xc0")
    with pytest.raises(ProtocolError, match="not msgpack"):
        decode(b"\x81\xa1x" + b"\x91" * 100_000 + b"\xc0")
    assert decode(b"\x81\xa1x" + b"\x91" * 10 + b"\xc0")["x"]


async def test_a_connection_that_breaks_mid_request_is_a_dainode_error():
    """Regression: a peer SIGKILLed while a request was being written raised py-libp2p's StreamError through
    request(); the model provider's push to that peer did not expect it, and its model service crashed."""
    from libp2p.network.stream.exceptions import StreamError

    from dainode.errors import StreamBroken

    class BrokenStream:
        async def write(self, data):
            raise StreamError("Write operation failed: TCP connection reset by remote peer")

        async def reset(self):
            pass

    class Host:
        async def new_stream(self, peer, protocols):
            return BrokenStream()

    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    rr = ReqResp(Host())
    with pytest.raises(StreamBroken, match="broke off: StreamError"):
        await rr.request(ID.from_pubkey(create_new_key_pair().public_key), "/test/1", {"x": 1}, timeout=5)
