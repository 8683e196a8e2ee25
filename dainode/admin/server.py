"""The admin socket: newline-delimited JSON-RPC 2.0 on a mode-0600 Unix socket."""

from __future__ import annotations

import errno
import os
import socket as stdsocket
from pathlib import Path

import trio

from dainode.admin.jsonrpc import MethodRegistry, encode, handle_message
from dainode.errors import DainodeError, RpcError
from dainode.service import Service

MAX_REQUEST_BYTES = 1024 * 1024
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


class AdminServer(Service):
    name = "admin"

    def __init__(self, socket_path: Path, registry: MethodRegistry, *, max_request_bytes: int = MAX_REQUEST_BYTES):
        self.socket_path = Path(socket_path)
        self.registry = registry
        self.max_request_bytes = max_request_bytes
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
        sock.listen(64)
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
                    response = await handle_message(self.registry, line)
                    if response is not None:
                        await stream.send_all(response)
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
