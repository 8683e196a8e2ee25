"""The admin socket: newline-delimited JSON-RPC 2.0 on a mode-0600 Unix socket."""

from __future__ import annotations

import errno
import os
import socket as stdsocket
from pathlib import Path

import trio

from dainode.admin.jsonrpc import MAX_BATCH, MAX_REPLY_BYTES, MethodRegistry, encode, handle_message
from dainode.errors import DainodeError, RpcError
from dainode.service import Service

MAX_REQUEST_BYTES = 1024 * 1024
# Connections the kernel queues before accept(); 64 made 200 concurrent CLI calls fail with
# EAGAIN. Linux caps it at net.core.somaxconn (4096 by default since 5.4).
LISTEN_BACKLOG = 1024
# A client that does not read its reply within this time is dropped, so its reply's memory is
# freed (each connection has its own task: a slow reader never delays other clients).
SEND_TIMEOUT_S = 30.0
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


class AdminServer(Service):
    name = "admin"

    def __init__(
        self,
        socket_path: Path,
        registry: MethodRegistry,
        *,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        max_batch: int = MAX_BATCH,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ):
        self.socket_path = Path(socket_path)
        self.registry = registry
        self.max_request_bytes = max_request_bytes
        self.max_reply_bytes = max_reply_bytes
        self.max_batch = max_batch
        self.send_timeout_s = send_timeout_s
        self.connections = 0

    def _bind(self) -> trio.socket.SocketType:
        path = str(self.socket_path)
        if len(path.encode()) > MAX_SOCKET_PATH:
            raise DainodeError(f"admin socket path {path!r} is longer than {MAX_SOCKET_PATH} bytes; use a shorter --data-dir")
        if self.socket_path.exists():
            if _socket_answers(path):
                raise DainodeError(f"another dainode is already serving {path}; stop it first (`dainode stop`)")
            self.socket_path.unlink()  # stale socket of a daemon that was killed
        sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        # Bind under a restrictive umask so the socket is never reachable by others, then
        # make the mode explicit (0600: only the node's user may administer it).
        old_umask = os.umask(0o177)
        try:
            sock._sock.bind(path)  # trio's bind is async only for name resolution; a path needs none
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(LISTEN_BACKLOG)
        return sock

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        sock = self._bind()
        listener = trio.SocketListener(sock)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                self.log.info("admin socket listening on %s", self.socket_path)
                await trio.serve_listeners(self._serve_connection, [listener], handler_nursery=nursery)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
            self.socket_path.unlink(missing_ok=True)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """One client: read lines, answer each in order. Any failure closes only this connection."""
        self.connections += 1
        buffer = bytearray()
        try:
            async with stream:
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        if len(buffer) > self.max_request_bytes:
                            await self._refuse_oversized(stream)
                            return
                        chunk = await stream.receive_some(65536)
                        if not chunk:
                            return
                        buffer += chunk
                        continue
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    if len(line) > self.max_request_bytes:
                        await self._refuse_oversized(stream)
                        return
                    if not line.strip():
                        continue
                    response = await handle_message(
                        self.registry, line, max_batch=self.max_batch, max_reply_bytes=self.max_reply_bytes
                    )
                    if response is not None:
                        with trio.move_on_after(self.send_timeout_s) as sending:
                            await stream.send_all(response)
                        if sending.cancelled_caught:
                            self.log.warning(
                                "admin client did not read a %d-byte reply within %.0f s; connection closed",
                                len(response), self.send_timeout_s,
                            )
                            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; nothing to do
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                self.log.warning("admin connection failed: %s", exc)
        finally:
            self.connections -= 1

    async def _refuse_oversized(self, stream: trio.SocketStream) -> None:
        err = RpcError(RpcError.INVALID_REQUEST, f"request too large: over {self.max_request_bytes} bytes; connection closed")
        try:
            await stream.send_all(encode({"jsonrpc": "2.0", "id": None, "error": err.to_json()}))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


def _socket_answers(path: str) -> bool:
    s = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
