"""In-process bitswap peers for unit tests (real py-libp2p hosts on 127.0.0.1)."""

from __future__ import annotations

import contextlib

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import PeerInfo

from dainode.store.bitswap import Bitswap
from dainode.store.cid import CID, verify_block
from dainode.p2p.host import build_host

LISTEN = "/ip4/127.0.0.1/tcp/0"


class MemoryBlocks:
    """BlockAccess over a dict (multihash -> bytes)."""

    def __init__(self, blocks: dict | None = None):
        self.data: dict[bytes, bytes] = {}
        for cid, block in (blocks or {}).items():
            self.data[CID.parse(cid).multihash] = block

    def add(self, cid: CID, block: bytes) -> None:
        self.data[cid.multihash] = block

    async def has(self, cid: bytes) -> bool:
        return CID.parse(cid).multihash in self.data

    async def get(self, cid: bytes) -> bytes | None:
        return self.data.get(CID.parse(cid).multihash)

    async def put(self, cid: bytes, data: bytes) -> None:
        self.verify(cid, data)
        self.data[CID.parse(cid).multihash] = data

    def verify(self, cid: bytes, data: bytes) -> None:
        verify_block(CID.parse(cid), data)


@contextlib.asynccontextmanager
async def running_host(nursery: trio.Nursery):
    host = build_host(create_new_key_pair(), [LISTEN])
    ready = trio.Event()
    done = trio.Event()

    async def run():
        async with host.run(listen_addrs=[multiaddr.Multiaddr(LISTEN)]):
            ready.set()
            await done.wait()

    nursery.start_soon(run)
    await ready.wait()
    try:
        yield host
    finally:
        done.set()


@contextlib.asynccontextmanager
async def bitswap_peers(count: int, blocks: list[MemoryBlocks] | None = None):
    """`count` hosts each running a Bitswap engine; yields [(host, engine)]."""
    async with trio.open_nursery() as nursery:
        async with contextlib.AsyncExitStack() as stack:
            out = []
            for i in range(count):
                host = await stack.enter_async_context(running_host(nursery))
                store = blocks[i] if blocks else MemoryBlocks()
                engine = Bitswap(host, store)
                await nursery.start(engine.run)
                out.append((host, engine))
            yield out
            nursery.cancel_scope.cancel()


async def connect(a, b) -> None:
    await a.connect(PeerInfo(b.get_id(), b.get_transport_addrs()))
