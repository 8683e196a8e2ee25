"""JSON-RPC client: results, error mapping, batches, bounded retries (httpx mock transport)."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from dainode.chain.rpc import RpcClient, block_tag, to_int
from dainode.errors import ChainError, ChainRpcError, ChainUnavailable


def client_with(handler, **kw) -> RpcClient:
    return RpcClient("http://chain.test", transport=httpx.MockTransport(handler), backoff_s=0.001, **kw)


async def test_result_and_error_objects():
    def handler(request):
        body = json.loads(request.content)
        if body["method"] == "eth_chainId":
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"})
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32601, "message": "nope", "data": "0x01"}})

    rpc = client_with(handler)
    assert to_int(await rpc.call("eth_chainId")) == 31337
    with pytest.raises(ChainRpcError) as info:
        await rpc.call("eth_nope", 1)
    assert (info.value.code, info.value.data, info.value.method) == (-32601, "0x01", "eth_nope")
    assert "eth_nope failed" in str(info.value) and isinstance(info.value, ChainError)
    await rpc.aclose()


async def test_batch_answers_are_matched_by_id_not_order():
    def handler(request):
        reqs = json.loads(request.content)
        replies = [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"][0]} for r in reqs]
        replies[0] = {"jsonrpc": "2.0", "id": reqs[0]["id"], "error": {"code": 3, "message": "reverted"}}
        return httpx.Response(200, json=list(reversed(replies)))

    rpc = client_with(handler)
    out = await rpc.batch([("a", [1]), ("b", [2]), ("c", [3])], raise_errors=False)
    assert isinstance(out[0], ChainRpcError) and out[1:] == [2, 3]
    with pytest.raises(ChainRpcError):
        await rpc.batch([("a", [1]), ("b", [2])])
    await rpc.aclose()


async def test_transient_failures_are_retried_then_reported_as_unavailable():
    attempts = []

    def flaky(request):
        attempts.append(1)
        if len(attempts) < 3:
            return httpx.Response(503)
        body = json.loads(request.content)
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": "0x1"})

    rpc = client_with(flaky, retries=3)
    assert await rpc.call("eth_blockNumber") == "0x1" and len(attempts) == 3 and rpc.stats.retries == 2

    def down(request):
        raise httpx.ConnectError("connection refused")

    rpc = client_with(down, retries=2)
    with trio.fail_after(5), pytest.raises(ChainUnavailable, match="unreachable .* after 3 attempts"):
        await rpc.call("eth_blockNumber")


async def test_non_json_reply_is_a_chain_error():
    rpc = client_with(lambda request: httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(ChainError, match="non-JSON"):
        await rpc.call("eth_blockNumber")


def test_block_tags():
    assert block_tag(10) == "0xa" and block_tag("latest") == "latest" and block_tag("12") == "0xc"
    with pytest.raises(ChainError, match="invalid block"):
        block_tag("yesterday")


async def test_anvils_latest_block_race_is_asked_again_but_a_real_range_error_is_not():
    seen = []

    def handler(request):
        body = json.loads(request.content)
        seen.append(body["params"][-1])
        if len(seen) == 1 or body["params"][-1] == "0x99":  # anvil racing its own miner; a block that is not there
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"],
                                             "error": {"code": -32602, "message": "BlockOutOfRangeError: block height is 65 but requested was 64"}})
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": "0x01"})

    rpc = client_with(handler)
    assert await rpc.call("eth_call", {"to": "0x" + "11" * 20}, "latest") == "0x01"  # before the fix: ChainRpcError
    assert seen == ["latest", "latest"]
    with pytest.raises(ChainRpcError, match="BlockOutOfRange"):
        await rpc.call("eth_call", {"to": "0x" + "11" * 20}, "0x99")
    assert seen[2:] == ["0x99"]
    await rpc.aclose()
