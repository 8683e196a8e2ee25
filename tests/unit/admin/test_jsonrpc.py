"""JSON-RPC 2.0 protocol handling, without a socket."""

from __future__ import annotations

import json

import pytest

from dainode.admin.jsonrpc import MethodRegistry, handle_message
from dainode.errors import DainodeError, RpcError


def make_registry() -> MethodRegistry:
    reg = MethodRegistry()

    async def add(a: int, b: int = 1) -> int:
        return a + b

    def echo(text: str, times: int | None = None) -> str:
        return text * (times or 1)

    async def fails() -> None:
        raise DainodeError("the chain is down; retry later")

    async def bug() -> None:
        raise KeyError("oops")

    async def unserialisable() -> object:
        return object()

    reg.add_all({"math_add": add, "test_echo": echo, "test_fails": fails, "test_bug": bug, "test_obj": unserialisable})
    return reg


async def rpc(reg: MethodRegistry, payload) -> object:
    line = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    out = await handle_message(reg, line)
    return None if out is None else json.loads(out)


def req(method, params=None, id_=1):
    r = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        r["params"] = params
    return r


async def test_params_by_name_and_by_position():
    reg = make_registry()
    assert (await rpc(reg, req("math_add", [2, 3])))["result"] == 5
    assert (await rpc(reg, req("math_add", {"a": 2})))["result"] == 3
    assert (await rpc(reg, req("test_echo", {"text": "ab", "times": 2})))["result"] == "abab"


@pytest.mark.parametrize(
    "line, code",
    [
        (b"{bad json", -32700),
        (b"\xff\xfe", -32700),
        (json.dumps([]).encode(), -32600),
        (json.dumps({"id": 1, "method": "math_add"}).encode(), -32600),
        (json.dumps({"jsonrpc": "2.0", "id": 1, "method": 5}).encode(), -32600),
        (json.dumps({"jsonrpc": "2.0", "id": [1], "method": "math_add"}).encode(), -32600),
        (json.dumps(req("math_add", "notalist")).encode(), -32600),
        (json.dumps(req("nope_method")).encode(), -32601),
        (json.dumps(req("math_add", [])).encode(), -32602),
        (json.dumps(req("math_add", {"c": 1})).encode(), -32602),
        (json.dumps(req("math_add", ["two"])).encode(), -32602),
        (json.dumps(req("math_add", [True])).encode(), -32602),
        (json.dumps(req("math_add", [1, 2, 3])).encode(), -32602),
    ],
)
async def test_error_codes(line, code):
    resp = await rpc(make_registry(), line)
    assert resp["error"]["code"] == code, resp
    assert resp["error"]["message"]


async def test_application_and_internal_errors_keep_going():
    reg = make_registry()
    err = (await rpc(reg, req("test_fails")))["error"]
    assert err["code"] == RpcError.APPLICATION_ERROR and "chain is down" in err["message"]
    assert (await rpc(reg, req("test_bug")))["error"]["code"] == -32603
    assert (await rpc(reg, req("test_obj")))["error"]["code"] == -32603
    assert (await rpc(reg, req("math_add", [1])))["result"] == 2


async def test_batch_and_notifications():
    reg = make_registry()
    batch = [req("math_add", [1, 1], 1), {"jsonrpc": "2.0", "method": "math_add", "params": [0]}, req("nope_x", None, 3), 7]
    out = await rpc(reg, batch)
    assert [r.get("id") for r in out] == [1, 3, None]
    assert out[0]["result"] == 2 and out[1]["error"]["code"] == -32601 and out[2]["error"]["code"] == -32600
    assert await rpc(reg, {"jsonrpc": "2.0", "method": "math_add", "params": [0]}) is None


def test_registry_rejects_duplicates_and_unnamespaced():
    reg = make_registry()
    with pytest.raises(ValueError):
        reg.add("math_add", lambda: 1)
    with pytest.raises(ValueError):
        reg.add("plain", lambda: 1)
    assert reg.modules() == {"math": "1.0", "test": "1.0"}
