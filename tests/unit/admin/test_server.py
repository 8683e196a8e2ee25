"""The admin socket server, in-process on a real Unix socket."""

from __future__ import annotations

import json
import os
import stat

import trio

from dainode.admin.jsonrpc import MethodRegistry
from dainode.admin.server import AdminServer


def registry() -> MethodRegistry:
    reg = MethodRegistry()

    async def slow(seconds: float) -> str:
        await trio.sleep(seconds)
        return "done"

    reg.add_all({"node_ping": lambda: "pong", "test_slow": slow, "test_big": lambda: "x" * (8 * 1024 * 1024)})
    return reg


async def connect(path) -> trio.SocketStream:
    return await trio.open_unix_socket(str(path))


async def read_line(stream: trio.SocketStream) -> bytes:
    buf = b""
    with trio.fail_after(10):
        while not buf.endswith(b"\n"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                return buf
            buf += chunk
    return buf


async def call(stream, method, params=None, id_=1):
    req = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        req["params"] = params
    await stream.send_all(json.dumps(req).encode() + b"\n")
    return json.loads(await read_line(stream))


async def test_socket_mode_many_clients_and_cleanup(tmp_path):
    path = tmp_path / "admin.sock"
    server = AdminServer(path, registry())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

        results = []

        async def client(i):
            s = await connect(path)
            async with s:
                results.append((await call(s, "test_slow", [0.2], i))["result"])

        with trio.fail_after(10):  # 30 clients waiting 0.2 s each must overlap, not queue
            async with trio.open_nursery() as clients:
                for i in range(30):
                    clients.start_soon(client, i)
        assert results == ["done"] * 30
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_oversized_request_is_refused_and_others_unaffected(tmp_path):
    path = tmp_path / "admin.sock"
    server = AdminServer(path, registry(), max_request_bytes=1024)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        good = await connect(path)
        big = await connect(path)
        await big.send_all(b"[" + b"1," * 2000)  # no newline yet, already over the limit
        resp = json.loads(await read_line(big))
        assert resp["error"]["code"] == -32600 and "too large" in resp["error"]["message"]
        assert await big.receive_some(10) == b""  # the server closed it
        # a half-written request from a client that then vanishes
        rude = await connect(path)
        await rude.send_all(b'{"jsonrpc": "2.0", "id": 1, "meth')
        await rude.aclose()
        assert (await call(good, "node_ping"))["result"] == "pong"
        await good.aclose()
        nursery.cancel_scope.cancel()


async def test_stale_socket_file_is_replaced(tmp_path):
    path = tmp_path / "admin.sock"
    path.write_text("left over by a killed daemon")
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(path, registry()).run)
        s = await connect(path)
        assert (await call(s, "node_ping"))["result"] == "pong"
        await s.aclose()
        nursery.cancel_scope.cancel()


async def test_a_client_that_does_not_read_is_dropped_and_others_are_served(tmp_path):
    path = tmp_path / "admin.sock"
    server = AdminServer(path, registry(), send_timeout_s=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        reader = await connect(path)
        sloth = await connect(path)
        await sloth.send_all(b'{"jsonrpc":"2.0","id":1,"method":"test_big"}\n')  # 8 MB reply it never reads
        with trio.fail_after(10):
            while server.connections < 2:
                await trio.sleep(0.01)
        assert (await call(reader, "node_ping"))["result"] == "pong"
        with trio.fail_after(10):  # the send times out and the server drops the non-reader
            while server.connections > 1:
                await trio.sleep(0.05)
        assert (await call(reader, "node_ping", id_=2))["result"] == "pong"
        await reader.aclose()
        await sloth.aclose()
        nursery.cancel_scope.cancel()
