"""Blockstore: layout, verification on write and read, crash leftovers, limits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from dainode.errors import InvalidBlock
from dainode.store.blockstore import MAX_BLOCK_SIZE, Blockstore
from dainode.store.cid import CID, DAG_PB, IDENTITY, RAW, cid_of, multihash


def test_put_get_has_delete(tmp_path):
    bs = Blockstore(tmp_path)
    data = b"hello block"
    cid = cid_of(data)
    assert not bs.has(cid) and bs.get(cid) is None
    bs.put(cid, data)
    bs.put(cid, data)  # idempotent
    assert bs.has(cid) and bs.get(cid) == data
    assert list(bs.cids()) == [cid]
    assert bs.stat() == {"blocks": 1, "bytes": len(data)}
    bs.delete(cid)
    bs.delete(cid)  # absent: no error
    assert not bs.has(cid) and bs.stat() == {"blocks": 0, "bytes": 0}


def test_kubo_flatfs_layout_and_shared_key(tmp_path):
    bs = Blockstore(tmp_path)
    bs.put(cid_of(b""), b"")
    # the same path kubo's flatfs (next-to-last/2) uses for the empty block
    assert (tmp_path / "QV" / "CIQOHMGEIKMPYHAUTL57JSEZN64SIJ5OIHSGJG4TJSSJLGI3PBJLQVI.data").is_file()
    node = b"\x0a\x02\x08\x01"  # the empty UnixFS directory
    v0, v1 = cid_of(node, DAG_PB, 0), cid_of(node, DAG_PB, 1)
    bs.put(v0, node)
    assert bs.get(v1) == node and bs.stat()["blocks"] == 2


def test_put_refuses_a_block_that_does_not_match(tmp_path):
    bs = Blockstore(tmp_path)
    with pytest.raises(InvalidBlock, match="does not hash to"):
        bs.put(cid_of(b"a"), b"b")
    assert bs.stat()["blocks"] == 0


def test_block_size_limit_is_2_mib(tmp_path):
    bs = Blockstore(tmp_path, sync=False)
    ok = bytes(MAX_BLOCK_SIZE)  # py-libp2p 0.8.1 refuses anything over 512 KiB
    bs.put(cid_of(ok), ok)
    assert bs.get(cid_of(ok)) == ok
    big = bytes(MAX_BLOCK_SIZE + 1)
    with pytest.raises(InvalidBlock, match="limit is 2097152"):
        bs.put(cid_of(big), big)


def test_corrupt_or_truncated_file_is_treated_as_absent_and_removed(tmp_path):
    bs = Blockstore(tmp_path)
    a, b = b"a" * 1000, b"b" * 1000
    ca, cb = cid_of(a), cid_of(b)
    bs.put(ca, a)
    bs.put(cb, b)
    path_a = bs._path(ca.multihash)
    path_a.write_bytes(a[:500])  # truncated
    path_b = bs._path(cb.multihash)
    path_b.write_bytes(b"c" * 1000)  # same size, flipped content
    assert bs.get(ca) is None and not path_a.exists()
    assert bs.get(cb) is None and not path_b.exists()
    bs.put(ca, a)  # can be stored again
    assert bs.get(ca) == a


def test_put_replaces_a_truncated_file(tmp_path):
    bs = Blockstore(tmp_path)
    data = b"x" * 100
    cid = cid_of(data)
    bs.put(cid, data)
    bs._path(cid.multihash).write_bytes(data[:10])
    bs.put(cid, data)
    assert bs.get(cid) == data


def test_leftover_temp_file_of_a_dead_writer_is_ignored_and_cleaned(tmp_path):
    bs = Blockstore(tmp_path)
    bs.put(cid_of(b"keep"), b"keep")
    # a writer process that died between write and rename leaves its temp file behind
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from dainode.store.blockstore import Blockstore\n"
        "from dainode.store.cid import cid_of\n"
        "bs = Blockstore(Path(sys.argv[1]))\n"
        "tmp = bs._tmp_path(); tmp.write_bytes(b'half a blo')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env={**os.environ})
    leftovers = list((tmp_path / ".tmp").iterdir())
    assert len(leftovers) == 1
    assert [c for c in bs.cids()] == [cid_of(b"keep")]  # not listed as a block
    assert bs.stat() == {"blocks": 1, "bytes": 4}
    Blockstore(tmp_path)  # reopening (daemon restart) cleans it
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_temp_file_of_a_live_writer_is_kept(tmp_path):
    bs = Blockstore(tmp_path)
    tmp = bs._tmp_path()  # named after this (running) process
    tmp.write_bytes(b"in flight")
    Blockstore(tmp_path)
    assert tmp.exists()


def test_foreign_files_are_not_blocks(tmp_path):
    bs = Blockstore(tmp_path)
    (tmp_path / "AB").mkdir()
    (tmp_path / "AB" / "not-base32!.data").write_bytes(b"x")
    (tmp_path / "AB" / "README").write_bytes(b"x")
    (tmp_path / "SHARDING").write_text("/repo/flatfs/shard/v1/next-to-last/2\n")
    assert list(bs.cids()) == []


def test_identity_cids_are_inline(tmp_path):
    bs = Blockstore(tmp_path)
    cid = CID(1, RAW, multihash(b"inline", IDENTITY))
    bs.put(cid, b"inline")
    assert bs.get(cid) == b"inline" and bs.has(cid)
    assert bs.stat()["blocks"] == 0
    with pytest.raises(InvalidBlock):
        bs.put(cid, b"other")


def test_concurrent_puts_of_the_same_and_different_blocks(tmp_path):
    bs = Blockstore(tmp_path, sync=False)
    blocks = [bytes([i]) * 5000 for i in range(20)]
    errors = []

    def worker():
        try:
            for data in blocks:
                bs.put(cid_of(data), data)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert bs.stat() == {"blocks": 20, "bytes": 20 * 5000}
    assert all(bs.get(cid_of(d)) == d for d in blocks)
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_writer_killed_mid_write_leaves_no_corrupt_block(tmp_path):
    """SIGKILL a process that writes blocks in a loop: every block file left is complete."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from dainode.store.blockstore import Blockstore\n"
        "from dainode.store.cid import cid_of\n"
        "bs = Blockstore(Path(sys.argv[1]))\n"
        "i = 0\n"
        "while True:\n"
        "    data = os.urandom(64 * 1024 + i)\n"
        "    bs.put(cid_of(data), data)\n"
        "    i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _count_blocks(tmp_path) < 20:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    bs = Blockstore(tmp_path)  # restart
    cids = list(bs.cids())
    assert len(cids) >= 20
    assert all(bs.get(c) is not None for c in cids)  # get() returns None for a corrupt file
    assert len(list(bs.cids())) == len(cids)
    assert list((tmp_path / ".tmp").iterdir()) == []


def _count_blocks(root):
    return sum(1 for p in root.glob("*/*.data"))
