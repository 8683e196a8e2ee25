"""A small blocking client for the admin socket, used by the CLI."""

from __future__ import annotations

import errno
import itertools
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from dainode.errors import NestingTooDeep, NodeNotRunningError, RpcError
from dainode.fsutil import pid_alive
from dainode.limits import check_json_depth

ADMIN_SOCKET = "admin.sock"
LOCK_FILE = "LOCK"  # written by the daemon (dainode.node): its pid, under an flock
#: How long to keep retrying a connect the daemon's accept queue has no room for (EAGAIN).
BUSY_RETRY_S = 5.0
#: How long to retry a refused connect: a daemon may be replacing a stale socket as it starts.
REFUSED_RETRY_S = 0.5


def socket_path(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / ADMIN_SOCKET


def daemon_pid(data_dir: str | Path) -> int | None:
    """The pid the last daemon of `data_dir` recorded in its LOCK file (it may have exited since)."""
    try:
        return int((Path(data_dir).expanduser() / LOCK_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def why_not_answering(path: Path) -> str:
    """Say what happened to the daemon behind `path`, from its LOCK file and the process table."""
    pid = daemon_pid(path.parent)
    if not path.exists():
        return f"no dainode is running (no admin socket at {path}); start it with `dainode start --data-dir {path.parent}`"
    if pid is not None and not pid_alive(pid):
        return (
            f"the dainode of {path.parent} (pid {pid}) is no longer running: it crashed or was killed "
            f"(it left a stale admin socket); see its log, then start it again with `dainode start`"
        )
    if pid is not None:
        return f"the dainode of {path.parent} (pid {pid}) is running but its admin socket {path} does not answer (starting or stopping?); try again"
    return f"no dainode answers at {path} (a stale socket left by a daemon that crashed or was killed?); start it with `dainode start`"


class AdminClient:
    """One connection to a daemon; `call` sends a request and waits for its response line."""

    def __init__(self, path: str | Path, *, timeout: float | None = 30.0):
        self.path = Path(path)
        self._ids = itertools.count(1)
        self._sock = self._connect(timeout)
        self._file = self._sock.makefile("rb")

    def _connect(self, timeout: float | None) -> socket.socket:
        started = time.monotonic()
        busy_until = started + (BUSY_RETRY_S if timeout is None else min(BUSY_RETRY_S, timeout))
        delay = 0.005
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(str(self.path))
                return sock
            except OSError as exc:
                sock.close()
                now = time.monotonic()
                if isinstance(exc, FileNotFoundError):
                    raise NodeNotRunningError(why_not_answering(self.path)) from None
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) and now < busy_until:
                    pass  # the accept queue is full: many clients at once; it drains in milliseconds
                elif isinstance(exc, ConnectionRefusedError) and now < started + REFUSED_RETRY_S:
                    pass
                elif isinstance(exc, ConnectionRefusedError):
                    raise NodeNotRunningError(why_not_answering(self.path)) from None
                else:
                    raise NodeNotRunningError(f"cannot reach the admin socket {self.path}: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

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
        try:
            raw = self.send_line(json.dumps(request))
        except TimeoutError:
            raise
        except OSError as exc:  # ECONNRESET, EPIPE: the daemon went away mid-call
            raise self._lost(method, exc) from None
        if not raw.endswith("\n"):  # nothing, or a reply cut short
            raise self._lost(method, None)
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

    def _lost(self, method: str, exc: OSError | None) -> NodeNotRunningError:
        time.sleep(0.2)  # let a dying daemon finish exiting, so the diagnosis sees it gone
        how = f" ({exc.strerror or exc})" if exc is not None else ""
        pid = daemon_pid(self.path.parent)
        if pid is not None and not pid_alive(pid):
            what = f"the dainode (pid {pid}) is no longer running: it crashed or was killed, or was stopped"
        else:
            what = "it may be stopping or have crashed"
        return NodeNotRunningError(f"the daemon closed the connection during {method}{how}; {what}; see its log")


def call(data_dir: str | Path, method: str, params: Any = None, *, timeout: float | None = 30.0) -> Any:
    """Open, call once, close."""
    with AdminClient(socket_path(data_dir), timeout=timeout) as client:
        return client.call(method, params)
