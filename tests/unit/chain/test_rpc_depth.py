"""The chain client refuses deeply nested replies (JSON and websocket) with a ChainError instead of recursing."""

from __future__ import annotations

import httpx
import pytest

from dainode.chain.rpc import RpcClient, decode_reply
from dainode.errors import ChainError
from dainode.limits import MAX_JSON_DEPTH


async def test_deeply_nested_http_reply_is_a_chain_error():
    body = b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * 300_000 + b"]" * 300_000 + b"}"

    rpc = RpcClient("http://chain.test", transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)), retries=0)
    with pytest.raises(ChainError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        await rpc.call("eth_chainId")
    await rpc.aclose()


def test_decode_reply_passes_ordinary_replies_and_refuses_deep_text():
    assert decode_reply('{"result": {"a": [1, 2]}}') == {"result": {"a": [1, 2]}}
    with pytest.raises(ChainError, match="websocket message is nested deeper"):
        decode_reply("[" * 100_000, what="websocket message")
