"""A small blocking client for the admin socket, used by the CLI."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any

from dainode.errors import NestingTooDeep, NodeNotRunningError, RpcError
from dainode.limits import check_json_depth

ADMIN_SOCKET = "admin.sock"


def socket_path(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / ADMIN_SOCKET


class AdminClient:
    """One connection to a daemon; `call` sends a request and waits for its response line."""

    def __init__(self, path: str | Path, *, timeout: float | None = 30.0):
        self.path = Path(path)
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError):
            self._sock.close()
            raise NodeNotRunningError(f"no dainode is running (no admin socket answers at {self.path})") from None
        except OSError as exc:
            self._sock.close()
            raise NodeNotRunningError(f"cannot reach the admin socket {self.path}: {exc}") from None
        self._file = self._sock.makefile("rb")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_line(self, line: str | bytes) -> str:
        """Send one raw line, return the raw response line ('' if the daemon closed the connection)."""
        data = line.encode() if isinstance(line, str) else line
        self._sock.sendall(data.rstrip(b"\n") + b"\n")
        return self._file.readline().decode("utf-8")

    def call(self, method: str, params: Any = None) -> Any:
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        raw = self.send_line(json.dumps(request))
        if not raw:
            raise NodeNotRunningError("the daemon closed the connection (is it stopping?)")
        try:
            # replies carry peer-supplied data (gossip bodies): bound the nesting before json.loads recurses
            check_json_depth(raw, what="the daemon's reply")
            response = json.loads(raw)
        except NestingTooDeep as exc:
            raise RpcError(RpcError.PARSE_ERROR, str(exc)) from None
        except ValueError as exc:
            raise RpcError(RpcError.PARSE_ERROR, f"the daemon sent a reply that is not JSON: {exc}") from None
        if not isinstance(response, dict):
            raise RpcError(RpcError.PARSE_ERROR, f"the daemon sent a reply that is not a JSON-RPC object: {raw[:80]!r}")
        if "error" in response:
            err = response["error"]
            raise RpcError(err.get("code", RpcError.INTERNAL_ERROR), err.get("message", "unknown error"), err.get("data"))
        return response.get("result")


def call(data_dir: str | Path, method: str, params: Any = None, *, timeout: float | None = 30.0) -> Any:
    """Open, call once, close."""
    with AdminClient(socket_path(data_dir), timeout=timeout) as client:
        return client.call(method, params)
