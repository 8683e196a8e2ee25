"""Two real daemons exchange content over bitswap: add/get/cat/pins/gc, a crash mid-get, a tampering peer."""

from __future__ import annotations

import base64
import filecmp
import os
import time

import pytest
import trio
from libp2p.custom_types import TProtocol

from dainode.store.bitswap import wire
from dainode.store.blockstore import Blockstore
from dainode.store.cid import CID, verify_block
from tests.integration.daemon import random_file, run_cli
from tests.unit.store.bitswap.helpers import running_host

KiB, MiB = 1024, 1024 * 1024


FAST_FAIL = {"DAINODE_STORE_FETCH_TIMEOUT_S": "8"}  # a missing block fails in seconds, not 120 s


@pytest.fixture
def pair(daemon_factory):
    a = daemon_factory("a", env=FAST_FAIL).start()
    b = daemon_factory("b", env=FAST_FAIL).start()
    return a, b


def peak_rss(pid: int) -> int:
    """The process's high-water resident set size in bytes (Linux VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def cli(node, *args, timeout=120.0):
    out = run_cli(*args, "--data-dir", str(node.data_dir), timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stderr}\n{node.log_tail()}"
    return out


def check_blockstore(data_dir) -> int:
    """Every block file verifies against its multihash; returns the block count."""
    bs = Blockstore(data_dir / "blocks")
    n = 0
    for mh in bs.keys():
        path = bs._path(mh)
        verify_block(CID(1, 0x55, mh), path.read_bytes())
        n += 1
    return n


@pytest.mark.slow
@pytest.mark.parametrize("size", [0, 1, 256 * KiB, 256 * KiB + 1, 100 * MiB], ids=["0B", "1B", "256KiB", "256KiB+1", "100MiB"])
def test_add_on_a_get_on_b_byte_identical(pair, tmp_path, size):
    a, b = pair
    src = random_file(tmp_path / "src.bin", size)
    cid = cli(a, "add", str(src)).stdout.strip()
    assert CID.parse(cid).version == 1
    dst = tmp_path / "out" / "dst.bin"
    dst.parent.mkdir()
    rss_before = peak_rss(b.pid)
    t0 = time.monotonic()
    got = cli(b, "get", cid, "-o", str(dst), "--peer", a.multiaddr, timeout=300)
    elapsed = time.monotonic() - t0
    assert filecmp.cmp(src, dst, shallow=False)
    assert not [p for p in dst.parent.iterdir() if p.name != "dst.bin"]  # no temp file left
    if size >= 100 * MiB:
        assert "MB/s" in got.stderr
        growth = peak_rss(b.pid) - rss_before
        print(f"100 MiB fetched in {elapsed:.1f} s ({size / elapsed / 1e6:.1f} MB/s), peak RSS grew {growth / MiB:.1f} MiB")
        assert growth < 64 * MiB  # streamed: memory is bounded by the want window, not the file
    stat = b.rpc("bitswap_stat")
    assert stat["bad_blocks"] == 0 and stat["blocks_received"] >= 1
    if size == 0:
        assert a.rpc("store_cat", cid=cid)["data"] == ""
        assert b.rpc("store_cat", cid=cid)["size"] == 0
        assert cli(b, "cat", cid).stdout == ""


def test_cat_offsets_pins_and_gc(pair, tmp_path):
    a, b = pair
    src = random_file(tmp_path / "f.bin", 600 * KiB)  # 3 leaves + root
    data = src.read_bytes()
    cid = a.rpc("store_add", path=str(src))["cid"]
    piece = a.rpc("store_cat", cid=cid, offset=300 * KiB, length=1000)
    assert base64.b64decode(piece["data"]) == data[300 * KiB : 300 * KiB + 1000]
    text = tmp_path / "hello.txt"
    text.write_text("hello dainode\n" * 1000)
    text_cid = cli(a, "add", str(text), "--cid-version", "0").stdout.strip()
    assert text_cid.startswith("Qm")
    assert cli(a, "cat", text_cid).stdout == text.read_text()
    unpinned = a.rpc("store_add", path=str(random_file(tmp_path / "g.bin", 300 * KiB)), pin=False)  # 2 leaves + root
    assert unpinned["pinned"] is False
    only = a.rpc("store_add", path=str(random_file(tmp_path / "h.bin", 10 * KiB)), only_hash=True)
    assert sorted(cli(a, "pin", "ls").stdout.split()) == sorted([cid, "recursive", text_cid, "recursive"])
    assert not any(p["cid"] == only["cid"] for p in a.rpc("store_pin_ls"))
    before = a.rpc("store_stat")["blocks"]
    assert cli(a, "repo", "gc").stdout.startswith("removed 3 blocks")
    assert a.rpc("store_stat")["blocks"] == before - 3
    # pinned content survives gc, byte-identical; the unpinned file is gone (and B never had it)
    assert base64.b64decode(a.rpc("store_cat", cid=cid)["data"]) == data
    failed = run_cli("get", unpinned["cid"], "-o", str(tmp_path / "nope.bin"), "--data-dir", str(a.data_dir), timeout=60)
    assert failed.returncode == 1 and "not found within 8 s" in failed.stderr, failed.stderr
    assert not (tmp_path / "nope.bin").exists()
    assert cli(a, "repo", "gc").stdout.startswith("removed 0 blocks")
    # B fetches and pins A's file; A unpins and collects; A gets it back from B
    b.rpc("store_get", cid=cid, path=str(tmp_path / "x.bin"), providers=[a.multiaddr])
    assert cli(b, "pin", "add", cid).stdout.startswith("pinned")
    cli(a, "pin", "rm", cid)
    cli(a, "pin", "rm", text_cid)
    assert a.rpc("store_gc")["removed"] >= 4
    assert a.rpc("store_stat")["blocks"] == 0
    assert b.rpc("store_gc")["removed"] == 0
    a.rpc("store_get", cid=cid, path=str(tmp_path / "back.bin"), providers=[b.multiaddr])
    assert (tmp_path / "back.bin").read_bytes() == data


def test_daemon_killed_during_get_restarts_with_a_clean_blockstore(pair, tmp_path):
    a, b = pair
    src = random_file(tmp_path / "big.bin", 64 * MiB)
    cid = a.rpc("store_add", path=str(src))["cid"]
    dst = tmp_path / "dst.bin"
    job = b.rpc("store_get", cid=cid, path=str(dst), providers=[a.multiaddr], background=True)
    deadline = time.monotonic() + 60
    while (progress := b.rpc("store_progress", job=job["job"]))["bytes"] < 4 * MiB:
        assert time.monotonic() < deadline, b.log_tail()
        time.sleep(0.01)
    b.kill()  # SIGKILL by PID, mid-transfer
    assert progress["state"] == "running" and progress["bytes"] < 64 * MiB, progress
    assert not dst.exists()
    assert len(list(tmp_path.glob(".dst.bin.dainode-*.tmp"))) == 1  # the partial file of the killed get...
    assert check_blockstore(b.data_dir) > 0
    b.start()
    assert list(tmp_path.glob(".dst.bin.dainode-*.tmp")) == []  # ...is gone once the node is back
    st = b.rpc("store_stat")
    assert st["blocks"] > 0
    assert check_blockstore(b.data_dir) == st["blocks"]
    b.rpc("store_get", cid=cid, path=str(dst), providers=[a.multiaddr], timeout=120)
    assert filecmp.cmp(src, dst, shallow=False)


def test_a_restarted_node_fetches_from_a_peer_that_served_it_before(daemon_factory, tmp_path):
    """Regression (a resumed model provider could not fetch its providers' updates): a SIGKILLed node restarted at
    the same address and peer ID asks a peer that had served it before, and that peer, which dials back to it,
    answers on the new connection instead of dropping the reply with the dead one."""
    from tests.integration.daemon import free_port

    relay = daemon_factory("relay").start()
    a = daemon_factory("a", bootstrap=[relay.multiaddr], listen=f"/ip4/127.0.0.1/tcp/{free_port()}", env=FAST_FAIL)
    a.start()
    b = daemon_factory("b", bootstrap=[relay.multiaddr, a.multiaddr]).start()
    cids = [b.rpc("store_add", path=str(random_file(tmp_path / f"f{i}", 5000)))["cid"] for i in range(3)]
    a.rpc("store_cat", cid=cids[0], timeout=30)  # b now holds a stream to a
    for cid in cids[1:]:
        a.kill()
        a.proc.wait(10)
        time.sleep(1)  # b notices, and redials its bootstrap peer a once it is back
        a.start()
        got = a.rpc("store_cat", cid=cid, timeout=30)
        assert base64.b64decode(got["data"]) == (tmp_path / f"f{cids.index(cid)}").read_bytes()


async def test_tampering_provider_is_counted_and_fetch_completes_from_honest_one(daemon_factory, tmp_path):
    """A raw py-libp2p peer in the test process says HAVE to everything and serves corrupted
    blocks; the daemon drops them, counts the peer, and completes from the honest daemon."""
    honest = await trio.to_thread.run_sync(lambda: daemon_factory("honest").start())
    fetcher = await trio.to_thread.run_sync(lambda: daemon_factory("fetcher").start())
    src = random_file(tmp_path / "f.bin", 3 * MiB)
    cid = (await trio.to_thread.run_sync(lambda: honest.rpc("store_add", path=str(src))))["cid"]
    async with trio.open_nursery() as nursery:
        async with running_host(nursery) as evil:
            served = []

            async def evil_handler(stream):
                peer = stream.muxed_conn.peer_id
                reader = wire.MessageReader(stream)
                out = await evil.new_stream(peer, [TProtocol(wire.PROTOCOL_120)])
                while (payload := await reader.read()) is not None:
                    msg = wire.decode(payload)
                    for e in msg.entries:
                        if e.cancel:
                            continue
                        if e.want_have:
                            await out.write(wire.frame(wire.encode(presences=[(e.cid, True)])))
                        else:
                            served.append(e.cid)
                            bogus = os.urandom(256 * KiB)
                            await out.write(wire.frame(wire.encode(blocks=[(wire.parse_cid_bytes(e.cid), bogus)])))

            evil.set_stream_handler(TProtocol(wire.PROTOCOL_120), evil_handler)
            evil_addr = f"{evil.get_transport_addrs()[0]}/p2p/{evil.get_id().to_base58()}"
            dst = tmp_path / "dst.bin"
            evil_id = evil.get_id().to_base58()

            def rpc(method, **params):
                return trio.to_thread.run_sync(lambda: fetcher.rpc(method, **params))

            # only the evil peer at first, so it is certainly asked; the honest one joins later
            job = await rpc("store_get", cid=cid, path=str(dst), providers=[evil_addr], background=True)
            with trio.fail_after(60):
                while not (await rpc("bitswap_stat"))["bad_blocks_by_peer"].get(evil_id):
                    await trio.sleep(0.05)
            await rpc("p2p_connect", multiaddr=honest.multiaddr)
            with trio.fail_after(60):
                while (progress := await rpc("store_progress", job=job["job"]))["state"] == "running":
                    await trio.sleep(0.05)
            assert progress["state"] == "done", progress
            stat = await rpc("bitswap_stat")
            nursery.cancel_scope.cancel()
    assert dst.read_bytes() == src.read_bytes()
    assert served, "the fetcher never asked the evil peer for a block"
    assert stat["bad_blocks_by_peer"][evil_id] >= 1
    assert stat["blocks_received_from"][honest.info["peer_id"]] >= 13  # root + 12 leaves
    assert check_blockstore(fetcher.data_dir) > 0


def test_provider_found_through_the_dht(daemon_factory, tmp_path):
    """C is connected only to B; B does not have the file; C finds A through A's DHT provider record."""
    quiet = {"DAINODE_P2P_LOW_WATER": "0"}  # no automatic dialling: only the links we make
    a = daemon_factory("a", env=quiet).start()
    b = daemon_factory("b", bootstrap=[a.multiaddr], env=quiet).start()
    src = random_file(tmp_path / "f.bin", 700 * KiB)
    cid = a.rpc("store_add", path=str(src))["cid"]  # pinned, so announced with p2p.provide
    c = daemon_factory("c", bootstrap=[b.multiaddr], env=quiet).start()
    assert a.info["peer_id"] not in [p["peer_id"] for p in c.rpc("p2p_peers")]
    dst = tmp_path / "dst.bin"
    c.rpc("store_get", cid=cid, path=str(dst), timeout=90)
    assert dst.read_bytes() == src.read_bytes()
    stat = c.rpc("bitswap_stat")
    assert stat["provider_lookups"] >= 1 and stat["providers_found"] >= 1
    assert stat["blocks_received_from"].get(a.info["peer_id"], 0) >= 1
