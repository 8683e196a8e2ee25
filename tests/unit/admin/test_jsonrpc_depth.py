"""The JSON-RPC layer refuses too-deep input before json.loads, and never emits NaN."""

from __future__ import annotations

import json

import pytest

from dainode.admin.jsonrpc import MethodRegistry, handle_message
from dainode.errors import RpcError
from dainode.limits import MAX_JSON_DEPTH


def registry() -> MethodRegistry:
    r = MethodRegistry()

    async def echo(value=None):
        return value

    r.add("test_echo", echo)
    return r


async def test_deep_request_gets_invalid_request_not_a_crash():
    line = b"[" * 200_000 + b"]" * 200_000
    reply = json.loads(await handle_message(registry(), line))
    assert reply["error"]["code"] == RpcError.INVALID_REQUEST
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in reply["error"]["message"]


async def test_deep_params_are_refused_and_shallow_ones_pass():
    deep = "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5)
    line = f'{{"jsonrpc":"2.0","id":1,"method":"test_echo","params":[{deep}]}}'.encode()
    reply = json.loads(await handle_message(registry(), line))
    assert reply["error"]["code"] == RpcError.INVALID_REQUEST
    ok = f'{{"jsonrpc":"2.0","id":2,"method":"test_echo","params":[{"[" * 10 + "]" * 10}]}}'.encode()
    assert json.loads(await handle_message(registry(), ok))["result"] == json.loads("[" * 10 + "]" * 10)


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
async def test_nan_is_never_echoed(const):
    line = f'{{"jsonrpc":"2.0","id":1,"method":"test_echo","params":[{const}]}}'.encode()
    raw = await handle_message(registry(), line)
    reply = json.loads(raw, parse_constant=lambda c: pytest.fail(f"reply contains {c}: {raw!r}"))
    assert reply["error"]["code"] == RpcError.INTERNAL_ERROR
    raw = await handle_message(registry(), f'{{"jsonrpc":"2.0","id":{const},"method":"test_echo"}}'.encode())
    reply = json.loads(raw, parse_constant=lambda c: pytest.fail(f"reply contains {c}: {raw!r}"))
    assert reply["error"]["code"] == RpcError.INVALID_REQUEST and reply["id"] is None
