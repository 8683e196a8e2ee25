"""JSON-RPC 2.0 protocol handling, without a socket."""

from __future__ import annotations

import json

import pytest

from dainode.admin.jsonrpc import MethodRegistry, handle_message, reply_budget
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


def limits_registry(calls: list) -> MethodRegistry:
    reg = MethodRegistry()

    def blob(n: int) -> str:
        calls.append(n)
        return "x" * n

    def budget() -> int:
        return reply_budget.get()

    reg.add_all({"test_blob": blob, "test_budget": budget})
    return reg


async def test_batch_count_is_bounded():
    reg = make_registry()
    out = await handle_message(reg, json.dumps([req("math_add", [i], i) for i in range(101)]).encode(), max_batch=100)
    err = json.loads(out)["error"]
    assert err["code"] == -32600 and "101" in err["message"] and "at most 100" in err["message"]
    ok = json.loads(await handle_message(reg, json.dumps([req("math_add", [i], i) for i in range(100)]).encode(), max_batch=100))
    assert [r["result"] for r in ok] == [i + 1 for i in range(100)]


async def test_batch_reply_size_is_bounded_and_the_rest_is_not_run():
    calls: list = []
    reg = limits_registry(calls)
    mib = 1024 * 1024
    batch = [req("test_blob", [mib], i) for i in range(30)]
    out = await handle_message(reg, json.dumps(batch).encode(), max_reply_bytes=4 * mib)
    assert len(out) < 4 * mib + 64 * 1024
    replies = json.loads(out)
    assert [r["id"] for r in replies] == list(range(30))
    assert all(len(r["result"]) == mib for r in replies[:3])
    refused = replies[3:]
    assert all(r["error"]["code"] == -32000 for r in refused)
    assert "too large" in refused[0]["error"]["message"] and "store_get" in refused[0]["error"]["message"]
    assert "not run" in refused[-1]["error"]["message"]
    assert len(calls) == 4  # three fitted, the fourth did not; the other 26 never ran


async def test_single_reply_over_the_limit_is_refused_and_methods_see_their_budget():
    calls: list = []
    reg = limits_registry(calls)
    resp = json.loads(await handle_message(reg, json.dumps(req("test_blob", [5000])).encode(), max_reply_bytes=4096))
    assert resp["id"] == 1 and resp["error"]["code"] == -32000 and "5" in resp["error"]["message"]
    assert json.loads(await handle_message(reg, json.dumps(req("test_budget")).encode(), max_reply_bytes=4096))["result"] == 4096
    two = json.loads(await handle_message(reg, json.dumps([req("test_blob", [1000], 1), req("test_budget", None, 2)]).encode(),
                                          max_reply_bytes=4096))
    assert 2000 < two[1]["result"] < 3100  # the second call sees what the first one left
