"""PinStore: pin semantics, persistence, and garbage collection."""

from __future__ import annotations

import io
import sqlite3

import pytest

from dainode.errors import StoreError
from dainode.store.blockstore import Blockstore
from dainode.store.cid import CID, DAG_PB, cid_of
from dainode.store.pins import DIRECT, RECURSIVE, PinStore
from dainode.store.unixfs import import_file, links_of

KIB = 1024


def _add(bs: Blockstore, data: bytes, **kw):
    return import_file(io.BytesIO(data), bs.put, chunk_size=KIB, max_links=4, **kw)


def test_add_remove_list_and_types(tmp_path):
    pins = PinStore(tmp_path / "pins.sqlite")
    a, b = cid_of(b"a"), cid_of(b"b")
    assert pins.is_pinned(a) is None
    assert pins.add(a) == RECURSIVE
    assert pins.add(b, recursive=False) == DIRECT
    assert pins.add(a, recursive=False) == RECURSIVE  # a recursive pin already keeps it
    assert pins.add(b) == RECURSIVE  # upgraded
    assert {(p.cid, p.type) for p in pins.list()} == {(a, RECURSIVE), (b, RECURSIVE)}
    assert pins.remove(a) is True and pins.remove(a) is False
    assert [p.cid for p in pins.list(RECURSIVE)] == [b] and pins.list(DIRECT) == []
    with pytest.raises(StoreError, match="pin type must be"):
        pins.list("indirect")


def test_v0_and_v1_are_one_pin_and_pins_persist(tmp_path):
    node = b"\x0a\x02\x08\x01"
    v0, v1 = cid_of(node, DAG_PB, 0), cid_of(node, DAG_PB, 1)
    pins = PinStore(tmp_path / "pins.sqlite")
    pins.add(v0)
    assert pins.is_pinned(v1) == RECURSIVE
    pins.close()
    again = PinStore(tmp_path / "pins.sqlite")
    assert [(p.cid, p.type) for p in again.list()] == [(v0, RECURSIVE)]  # shown as pinned


def test_gc_keeps_pinned_dags_and_removes_the_rest(tmp_path):
    bs = Blockstore(tmp_path / "blocks", sync=False)
    pins = PinStore(tmp_path / "pins.sqlite")
    keep = _add(bs, bytes(range(256)) * 40)  # 10 KiB, 3 levels
    shared = _add(bs, bytes(range(256)) * 4 + b"\x07" * KIB)  # first leaf is also one of `keep`'s
    drop = _add(bs, b"\xff" * 9 * KIB)
    direct_root = _add(bs, b"\x01" * 6 * KIB)
    pins.add(keep.cid)
    pins.add(direct_root.cid, recursive=False)
    before = bs.stat()
    result = pins.gc(bs, links_of)
    after = bs.stat()
    assert result["removed"] == before["blocks"] - after["blocks"] > 0
    assert result["freed_bytes"] == before["bytes"] - after["bytes"]
    assert result["missing_pinned"] == 0
    assert _complete(bs, keep.cid)
    assert bs.has(direct_root.cid)
    assert not any(bs.has(c) for c in links_of(direct_root.cid, bs.get(direct_root.cid)))
    assert not bs.has(drop.cid)
    assert not bs.has(shared.cid)
    assert bs.has(cid_of(bytes(range(256)) * 4)) and not bs.has(cid_of(b"\x07" * KIB))
    assert pins.gc(bs, links_of)["removed"] == 0  # nothing left to collect
    pins.remove(keep.cid)
    pins.remove(direct_root.cid)
    pins.gc(bs, links_of)
    assert bs.stat() == {"blocks": 0, "bytes": 0}


def _complete(bs: Blockstore, root: CID) -> bool:
    stack = [root]
    while stack:
        cid = stack.pop()
        block = bs.get(cid)
        if block is None:
            return False
        stack.extend(links_of(cid, block))
    return True


def test_gc_with_a_missing_pinned_block_keeps_what_it_can_reach(tmp_path):
    bs = Blockstore(tmp_path / "blocks", sync=False)
    pins = PinStore(tmp_path / "pins.sqlite")
    res = _add(bs, bytes(range(256)) * 80)
    pins.add(res.cid)
    first_child = links_of(res.cid, bs.get(res.cid))[0]
    bs.delete(first_child)  # e.g. an interrupted fetch
    result = pins.gc(bs, links_of)
    assert result["missing_pinned"] == 1
    assert bs.has(res.cid)


def test_gc_protect_and_unfollowable_codec(tmp_path):
    bs = Blockstore(tmp_path / "blocks", sync=False)
    pins = PinStore(tmp_path / "pins.sqlite")
    loose = cid_of(b"in flight")
    bs.put(loose, b"in flight")
    assert pins.gc(bs, links_of, protect=lambda mh: mh == loose.key())["removed"] == 0
    cbor = CID(1, 0x71, cid_of(b"x").multihash)
    bs.put(cbor, b"x")
    pins.add(cbor)
    with pytest.raises(StoreError, match="codec 0x71"):
        pins.gc(bs, links_of)
    assert bs.has(loose)  # nothing deleted when the walk failed


def test_changes_are_transactions(tmp_path):
    pins = PinStore(tmp_path / "pins.sqlite")
    pins.add(cid_of(b"a"))
    # another connection sees committed state only
    other = sqlite3.connect(tmp_path / "pins.sqlite")
    assert other.execute("SELECT count(*) FROM pins").fetchone() == (1,)
    other.close()

    def delete_then_fail(db):
        db.execute("DELETE FROM pins")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        pins._tx(delete_then_fail)
    assert len(pins.list()) == 1  # rolled back


def test_unopenable_database_is_a_store_error(tmp_path):
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(StoreError, match="cannot open pin database"):
        PinStore(tmp_path / "dir.sqlite")
