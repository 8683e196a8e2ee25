"""anvil's pruned-head race (BlockOutOfRangeError, requested < height): typed, retried at the new head, bounded."""

from __future__ import annotations

import json

import httpx
import pytest

from dainode.chain import rpc as rpc_mod
from dainode.chain.rpc import RpcClient, reads_latest
from dainode.errors import ChainRpcError, ChainStateGone


def gone(request_id, height=13, requested=12):
    msg = f"BlockOutOfRangeError: block height is {height} but requested was {requested}"
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": msg}}


def client(handler) -> RpcClient:
    return RpcClient("http://chain.test", transport=httpx.MockTransport(handler), backoff_s=0.001)


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(rpc_mod, "STATE_GONE_BACKOFF_S", 0.0)


async def test_a_read_at_latest_that_races_a_new_block_is_retried():
    seen = []

    def handler(request):
        body = json.loads(request.content)
        seen.append(body["method"])
        if len(seen) <= 2:
            return httpx.Response(200, json=gone(body["id"]))
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": "0x01"})

    rpc = client(handler)
    assert await rpc.call("eth_call", {"to": "0x" + "11" * 20}, "latest") == "0x01"
    assert seen == ["eth_call"] * 3 and rpc.stats.retries == 2
    await rpc.aclose()


async def test_retries_are_bounded_and_the_error_says_what_to_do():
    calls = []

    def handler(request):
        body = json.loads(request.content)
        calls.append(1)
        return httpx.Response(200, json=gone(body["id"]))

    rpc = client(handler)
    with pytest.raises(ChainStateGone, match="still so after 5 retries.*--prune-history 64") as info:
        await rpc.call("eth_getBalance", "0x" + "11" * 20, "latest")
    assert len(calls) == rpc_mod.STATE_GONE_RETRIES + 1
    assert (info.value.height, info.value.requested) == (13, 12) and isinstance(info.value, ChainRpcError)
    await rpc.aclose()


async def test_an_explicit_old_block_is_not_retried():
    calls = []

    def handler(request):
        body = json.loads(request.content)
        calls.append(1)
        return httpx.Response(200, json=gone(body["id"], 90, 5))

    rpc = client(handler)
    with pytest.raises(ChainStateGone):
        await rpc.call("eth_call", {"to": "0x" + "11" * 20}, "0x5")
    assert len(calls) == 1
    await rpc.aclose()


async def test_a_future_block_is_a_plain_rpc_error_not_retried():
    def handler(request):
        body = json.loads(request.content)
        return httpx.Response(200, json=gone(body["id"], 5, 9))

    rpc = client(handler)
    with pytest.raises(ChainRpcError) as info:
        await rpc.call("eth_getBalance", "0x" + "11" * 20, "latest")
    assert not isinstance(info.value, ChainStateGone)
    await rpc.aclose()


async def test_a_batch_with_a_raced_head_read_is_asked_again():
    rounds = []

    def handler(request):
        reqs = json.loads(request.content)
        rounds.append(len(reqs))
        replies = [{"jsonrpc": "2.0", "id": r["id"], "result": "0x2"} for r in reqs]
        if len(rounds) == 1:
            replies[0] = gone(reqs[0]["id"])  # eth_estimateGas: no block given means latest
        return httpx.Response(200, json=replies)

    rpc = client(handler)
    out = await rpc.batch([("eth_estimateGas", [{"data": "0x"}]), ("eth_maxPriorityFeePerGas", [])], raise_errors=False)
    assert out == ["0x2", "0x2"] and rounds == [2, 2]
    await rpc.aclose()


def test_reads_latest():
    assert reads_latest("eth_call", [{}, "latest"]) and reads_latest("eth_getCode", ["0xab", "pending"])
    assert reads_latest("eth_estimateGas", [{}]) and not reads_latest("eth_call", [{}, "0x10"])
    assert not reads_latest("eth_getBalance", ["0xab", "0x3"])
