"""Bitswap interop with a real Helia node (helia 7, @helia/bitswap, js-libp2p TCP/Noise/Yamux on 127.0.0.1)."""

from __future__ import annotations

import os

import pytest

from tests.integration.helia import HeliaPeer

KiB = 1024
SIZE = 1024 * KiB + 123  # 5 leaves (one partial) under a dag-pb root


@pytest.fixture
def helia(tmp_path):
    with HeliaPeer(tmp_path / "helia.log") as peer:
        yield peer


def test_dainode_fetches_a_file_added_in_helia(daemon_factory, helia, tmp_path):
    node = daemon_factory("a").start()
    src = tmp_path / "from-helia.bin"
    src.write_bytes(os.urandom(SIZE))
    cid = helia.call("add", path=str(src), chunkSize=256 * KiB, rawLeaves=True, cidVersion=1)["cid"]
    dst = tmp_path / "fetched.bin"
    res = node.rpc("store_get", cid=cid, path=str(dst), providers=[helia.multiaddr], timeout=60)
    assert res["size"] == SIZE
    assert dst.read_bytes() == src.read_bytes()
    stat = node.rpc("bitswap_stat")
    assert stat["blocks_received_from"].get(helia.peer_id) == 6 and stat["bad_blocks"] == 0


def test_helia_fetches_a_file_added_in_dainode(daemon_factory, helia, tmp_path):
    node = daemon_factory("a").start()
    src = tmp_path / "from-dainode.bin"
    src.write_bytes(os.urandom(SIZE))
    cid = node.rpc("store_add", path=str(src))["cid"]
    helia.call("dial", addr=node.multiaddr)
    dst = tmp_path / "helia-got.bin"
    got = helia.call("get", cid=cid, path=str(dst), timeoutMs=30000, timeout=60)
    assert got["size"] == SIZE
    assert dst.read_bytes() == src.read_bytes()
    stat = node.rpc("bitswap_stat")
    assert stat["blocks_sent_to"].get(helia.peer_id) == 6
