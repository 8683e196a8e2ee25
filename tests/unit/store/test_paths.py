"""store_add/store_get local files: the data dir, devices, /proc, FIFOs, overwrite, modes, stale temp files, unsupported CIDs."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest
import trio

from dainode.config import Config
from dainode.errors import InvalidCid, PathRefused
from dainode.store.cid import CID, DAG_CBOR, RAW, cid_of, encode_varint
from dainode.store.service import StoreService
from dainode.store.tempfiles import GET_JOURNAL
from tests.unit.store.test_service import FakeHost


@pytest.fixture
async def store(tmp_path):
    data_dir = tmp_path / "node"
    (data_dir / "keys").mkdir(parents=True)
    (data_dir / "keys" / "eth.keystore.json").write_text('{"secret": true}')
    os.chmod(data_dir / "keys" / "eth.keystore.json", 0o600)
    (data_dir / "LOCK").write_text("123\n")
    service = StoreService(Config(), SimpleNamespace(host=FakeHost()), data_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield service
        nursery.cancel_scope.cancel()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def _added(store, tmp_path, data=b"hello dainode\n" * 100) -> str:
    src = tmp_path / "src.txt"
    src.write_bytes(data)
    return (await store.add(src))["cid"]


async def test_add_refuses_the_data_dir_system_trees_and_non_regular_files(store, tmp_path):
    d = store.data_dir
    out = tmp_path / "outside"
    out.mkdir()
    (out / "link").symlink_to(d / "keys" / "eth.keystore.json")
    os.link(d / "keys" / "eth.keystore.json", out / "hardlink")
    os.mkfifo(out / "fifo")
    cases = {
        d / "keys" / "eth.keystore.json": "inside the node's data dir",
        d / "LOCK": "inside the node's data dir",
        out / ".." / "node" / "keys" / "eth.keystore.json": "inside the node's data dir",
        out / "link": "really",
        out / "hardlink": "hard link",
        "/proc/self/environ": "under /proc",
        "/dev/null": "under /dev",
        "/sys/kernel/mm/transparent_hugepage/enabled": "under /sys",
        out / "fifo": "is a FIFO",
        out: "is a directory",
        "relative.txt": "relative path",
    }
    for path, why in cases.items():
        with trio.fail_after(5):  # a FIFO must not block the open
            with pytest.raises(PathRefused, match=why):
                await store.add(path)
    assert (await store.stat())["blocks"] == 0  # nothing was read into the store


async def test_add_warns_when_the_file_is_not_readable_by_others(store, tmp_path):
    f = tmp_path / "secret.txt"
    f.write_text("maybe a secret")
    os.chmod(f, 0o600)
    res = await store.add(f)
    assert len(res["warnings"]) == 1 and "not readable by others (mode 0600)" in res["warnings"][0]
    os.chmod(f, 0o644)
    assert (await store.add(f))["warnings"] == []


async def test_get_refuses_the_data_dir_devices_and_existing_files(store, tmp_path):
    cid = await _added(store, tmp_path)
    d = store.data_dir
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "a.sock"))
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "to-keys").symlink_to(d / "keys" / "eth.keystore.json")
    (tmp_path / "to-new-key").symlink_to(d / "keys" / "new.json")  # a dangling link into the data dir
    keystore = (d / "keys" / "eth.keystore.json").read_bytes()
    cases = {
        d / "keys" / "eth.keystore.json": "inside the node's data dir",
        d / "keys" / "new-file": "inside the node's data dir",
        d / "LOCK": "inside the node's data dir",
        d / "admin.sock": "inside the node's data dir",
        tmp_path / "to-keys": "inside the node's data dir",
        tmp_path / "to-new-key": "inside the node's data dir",
        "/dev/null": "under /dev",
        "/proc/self/fd/1": "under /proc",
        tmp_path / "a.sock": "is a socket",
        tmp_path / "fifo": "is a FIFO",
        tmp_path: "is a directory",
        tmp_path / "src.txt": "exists; pass overwrite: true",
        tmp_path / "nodir" / "x": "does not exist",
    }
    try:
        for path, why in cases.items():
            with pytest.raises(PathRefused, match=why):
                await store.get(cid, path, overwrite=why != "exists; pass overwrite: true")
            with pytest.raises(PathRefused, match=why):  # a background job is refused at once, too
                store.start_get_job(cid, str(path), None, overwrite=why != "exists; pass overwrite: true")
    finally:
        sock.close()
    assert (d / "keys" / "eth.keystore.json").read_bytes() == keystore
    assert not (d / "keys" / "new-file").exists() and not (d / "keys" / "new.json").exists()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
    assert not (d / "admin.sock").exists()


async def test_get_creates_0600_replaces_only_with_overwrite_and_shares_on_request(store, tmp_path):
    data = os.urandom(300_000)
    cid = await _added(store, tmp_path, data)
    out = tmp_path / "out.bin"
    await store.get(cid, out)
    assert out.read_bytes() == data and stat.S_IMODE(os.stat(out).st_mode) == 0o600
    out.write_bytes(b"keep me")
    with pytest.raises(PathRefused, match="exists"):
        await store.get(cid, out)
    assert out.read_bytes() == b"keep me"
    await store.get(cid, out, overwrite=True)
    assert out.read_bytes() == data
    umask = os.umask(0o022)
    os.umask(umask)
    await store.get(cid, tmp_path / "shared.bin", mode="shared")
    assert stat.S_IMODE(os.stat(tmp_path / "shared.bin").st_mode) == 0o644 & ~umask
    with pytest.raises(PathRefused, match='mode must be "private"'):
        await store.get(cid, tmp_path / "x.bin", mode="world")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


async def test_next_get_of_the_same_path_removes_stale_temp_files(store, tmp_path):
    cid = await _added(store, tmp_path)
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".out.bin.dainode-{dead}-7.tmp"
    live = tmp_path / f".out.bin.dainode-{alive}-7.tmp"  # a running process's get: not ours to touch
    other = tmp_path / f".other.bin.dainode-{dead}-1.tmp"  # another path: left for its own next get
    for p in (stale, live, other):
        p.write_bytes(b"x" * 1000)
    await store.get(cid, tmp_path / "out.bin")
    assert not stale.exists() and live.exists() and other.exists()


async def test_start_removes_temp_files_a_killed_get_left(tmp_path):
    d = tmp_path / "node"
    (d / GET_JOURNAL).mkdir(parents=True)
    left = tmp_path / f".big.bin.dainode-{_dead_pid()}-3.tmp"
    left.write_bytes(b"partial")
    (d / GET_JOURNAL / "99999-3").write_bytes(os.fsencode(left))
    service = StoreService(Config(), SimpleNamespace(host=FakeHost()), d)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        nursery.cancel_scope.cancel()
    assert not left.exists() and list((d / GET_JOURNAL).iterdir()) == []


async def test_unsupported_codec_or_hash_is_refused_at_once(store, tmp_path):
    cbor = CID(1, DAG_CBOR, cid_of(b"{}").multihash)
    keccak = CID(1, RAW, encode_varint(0x1B) + encode_varint(32) + bytes(32))
    with trio.fail_after(5):  # not after store.fetch_timeout_s (120 s)
        with pytest.raises(InvalidCid, match="unsupported codec dag-cbor"):
            await store.cat(str(cbor), limit=1024)
        with pytest.raises(InvalidCid, match="unsupported hash keccak-256"):
            await store.cat(str(keccak), limit=1024)
        with pytest.raises(InvalidCid, match="unsupported hash keccak-256"):
            await store.get(str(keccak), tmp_path / "k.bin")
        with pytest.raises(InvalidCid, match="unsupported codec dag-cbor"):
            store.start_get_job(str(cbor), str(tmp_path / "c.bin"), None)
        with pytest.raises(InvalidCid, match="unsupported hash keccak-256"):
            await store.pin_add(str(keccak))
