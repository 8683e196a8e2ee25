"""The admin client: retries a full accept queue, and says what happened when the daemon is gone or drops a call."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from dainode.admin.client import AdminClient, why_not_answering
from dainode.fsutil import pid_alive
from dainode.errors import NodeNotRunningError


def serve_once(path, handler) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        try:
            handler(conn)
        finally:
            conn.close()
            srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize(
    "handler",
    [
        # closes without reading the request: Linux delivers ECONNRESET to the client
        lambda conn: None,
        # reads the request, then dies half-way through the reply
        lambda conn: (conn.recv(65536), conn.sendall(b'{"jsonrpc":"2.0","id":1,"res')),
    ],
    ids=["reset", "cut-short"],
)
def test_a_dropped_call_is_one_clear_error(tmp_path, handler):
    path = tmp_path / "admin.sock"
    t = serve_once(path, handler)
    client = AdminClient(path, timeout=10)
    with pytest.raises(NodeNotRunningError, match="closed the connection during node_info"):
        client.call("node_info")
    client.close()
    t.join(10)


def test_refused_socket_of_a_dead_daemon_says_it_crashed(tmp_path):
    # a stale socket file: bound once, its process gone
    path = tmp_path / "admin.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "LOCK").write_text(f"{dead.pid}\n")
    with pytest.raises(NodeNotRunningError) as exc:
        AdminClient(path, timeout=5)
    msg = str(exc.value)
    assert f"pid {dead.pid}" in msg and "crashed or was killed" in msg
    assert not pid_alive(dead.pid) and pid_alive(os.getpid())


def test_missing_socket_says_not_running(tmp_path):
    assert "no dainode is running" in why_not_answering(tmp_path / "admin.sock")
    with pytest.raises(NodeNotRunningError, match="no dainode is running"):
        AdminClient(tmp_path / "admin.sock", timeout=5)


def test_full_accept_queue_is_retried(tmp_path):
    # backlog 0 and nobody accepting: connects beyond the queue get EAGAIN until we accept
    path = tmp_path / "admin.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(0)
    fillers = []
    try:
        while True:  # fill the queue
            f = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect(str(path))
            except BlockingIOError:
                f.close()
                break
            fillers.append(f)
            assert len(fillers) < 100
        accepted = []

        def drain():
            for _ in range(len(fillers) + 1):
                accepted.append(srv.accept()[0])

        timer = threading.Timer(0.3, drain)
        timer.start()
        client = AdminClient(path, timeout=10)  # EAGAIN at first; succeeds once the queue drains
        client.close()
        timer.join(10)
        assert len(accepted) == len(fillers) + 1
    finally:
        for c in fillers:
            c.close()
        srv.close()
