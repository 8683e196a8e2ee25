"""Admin socket limits against a real daemon: many clients at once, oversized batches, slow readers."""

from __future__ import annotations

import json
import socket
import threading

from dainode.admin.client import AdminClient
from tests.integration.daemon import raw_request, random_file

MIB = 1024 * 1024


def test_200_concurrent_clients_all_get_answers(daemon_factory):
    node = daemon_factory("a").start()
    n = 200
    barrier = threading.Barrier(n)
    answers: list[str] = []
    errors: list[str] = []

    def client():
        barrier.wait(30)
        try:
            with AdminClient(node.socket, timeout=60) as c:
                answers.append(c.call("node_info")["peer_id"])
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [], f"{len(errors)} of {n} clients failed, e.g. {errors[:3]}"
    assert answers == [node.info["peer_id"]] * n


def read_line(sock: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def test_huge_store_cat_batch_is_refused_while_another_client_is_served(daemon_factory, tmp_path):
    node = daemon_factory("a").start()
    cid = node.rpc("store_add", path=str(random_file(tmp_path / "big.bin", 16 * MIB)))["cid"]
    batch = [{"jsonrpc": "2.0", "id": i, "method": "store_cat", "params": {"cid": cid, "length": 16 * MIB}} for i in range(30)]

    greedy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    greedy.settimeout(120)
    greedy.connect(str(node.socket))
    try:
        greedy.sendall(json.dumps(batch).encode() + b"\n")  # and does not read yet: a slow reader
        # meanwhile another client is served
        for _ in range(5):
            assert raw_request(node.socket, b'{"jsonrpc":"2.0","id":1,"method":"node_info"}', timeout=30)["result"]["pid"] == node.pid
        reply = read_line(greedy)
    finally:
        greedy.close()
    assert len(reply) < 40 * MIB, len(reply)  # not the 671 MB a 30 x 16 MiB batch would be
    items = json.loads(reply)
    assert [r["id"] for r in items] == list(range(30))
    served = [r for r in items if "result" in r]
    refused = [r for r in items if "error" in r]
    assert len(served) <= 1 and len(refused) >= 29
    assert all(r["error"]["code"] == -32000 and "store_get" in r["error"]["message"] for r in refused), refused[0]
    if served:
        assert served[0]["result"]["size"] == 16 * MIB

    many = raw_request(node.socket, json.dumps([{"jsonrpc": "2.0", "id": i, "method": "node_info"} for i in range(1000)]).encode())
    assert many["error"]["code"] == -32600 and "at most" in many["error"]["message"]
    assert node.rpc("node_info")["pid"] == node.pid  # the daemon is fine
