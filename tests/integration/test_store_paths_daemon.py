"""A real daemon's store_add/store_get refuse its own data dir, devices and /proc, and existing files; unsupported CIDs fail fast."""

from __future__ import annotations

import os
import stat

import pytest

from dainode.errors import RpcError
from dainode.identity import ETH_KEYSTORE
from dainode.store.cid import CID, DAG_CBOR, RAW, cid_of, encode_varint
from tests.integration.daemon import run_cli


def refused(node, method, **params) -> str:
    with pytest.raises(RpcError) as info:
        node.rpc(method, **params)
    assert info.value.code == -32602, info.value.message
    return info.value.message


def test_admin_socket_cannot_reach_the_nodes_files_or_devices(daemon_factory, tmp_path):
    node = daemon_factory("a").start()
    d = node.data_dir
    keystore = (d / ETH_KEYSTORE).read_bytes()
    for path in (d / ETH_KEYSTORE, d / "LOCK", tmp_path / "a" / ".." / "a" / "keys" / "libp2p.keystore.json"):
        assert "inside the node's data dir" in refused(node, "store_add", path=str(path))
    assert "under /proc" in refused(node, "store_add", path="/proc/self/environ")
    assert "under /dev" in refused(node, "store_add", path="/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    assert "is a FIFO" in refused(node, "store_add", path=str(tmp_path / "fifo"))

    src = tmp_path / "src.txt"
    src.write_text("hello\n" * 1000)
    os.chmod(src, 0o600)
    added = run_cli("add", str(src), "--data-dir", str(d))
    assert added.returncode == 0 and "not readable by others" in added.stderr, added.stderr
    cid = added.stdout.strip()

    for path in (d / ETH_KEYSTORE, d / "LOCK", d / "admin.sock", d / "keys" / "new.json"):
        for background in (False, True):
            msg = refused(node, "store_get", cid=cid, path=str(path), overwrite=True, background=background)
            assert "inside the node's data dir" in msg
    assert "under /dev" in refused(node, "store_get", cid=cid, path="/dev/null", overwrite=True)
    assert "is a FIFO" in refused(node, "store_get", cid=cid, path=str(tmp_path / "fifo"), overwrite=True)
    assert (d / ETH_KEYSTORE).read_bytes() == keystore and stat.S_ISSOCK(os.stat(d / "admin.sock").st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert node.rpc("node_info")["peer_id"] == node.info["peer_id"]

    out = tmp_path / "out.txt"
    got = run_cli("get", cid, "-o", str(out), "--data-dir", str(d), "--quiet")
    assert got.returncode == 0, got.stderr
    assert out.read_text() == src.read_text() and stat.S_IMODE(os.stat(out).st_mode) == 0o600
    out.write_text("mine")
    again = run_cli("get", cid, "-o", str(out), "--data-dir", str(d), "--quiet")
    assert again.returncode == 1 and "exists" in again.stderr and "--overwrite" in again.stderr, again.stderr
    assert out.read_text() == "mine"
    again = run_cli("get", cid, "-o", str(out), "--data-dir", str(d), "--quiet", "--overwrite", "--shared")
    assert again.returncode == 0, again.stderr
    umask = os.umask(0o022)  # the daemon inherited the test's umask
    os.umask(umask)
    assert out.read_text() == src.read_text() and stat.S_IMODE(os.stat(out).st_mode) == 0o644 & ~umask


def test_cat_of_an_unsupported_codec_or_hash_fails_at_once(daemon_factory):
    node = daemon_factory("a").start()  # default store.fetch_timeout_s (120 s): waiting would time the CLI out
    cbor = CID(1, DAG_CBOR, cid_of(b"{}").multihash)
    keccak = CID(1, RAW, encode_varint(0x1B) + encode_varint(32) + bytes(32))
    for cid, needle in ((cbor, "unsupported codec dag-cbor"), (keccak, "unsupported hash keccak-256")):
        out = run_cli("cat", str(cid), "--data-dir", str(node.data_dir), timeout=30)
        assert out.returncode == 1 and needle in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
