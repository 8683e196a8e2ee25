"""In-process P2P services for fast tests (real libp2p on 127.0.0.1, no daemon processes)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import trio
from eth_account import Account
from libp2p.crypto.ed25519 import create_new_key_pair

from dainode.config import Config
from dainode.p2p.service import P2PService


def make_config(**p2p) -> Config:
    cfg = Config()
    cfg.p2p.listen = ["/ip4/127.0.0.1/tcp/0"]
    cfg.p2p.dht = p2p.pop("dht", False)
    for key, value in p2p.items():
        setattr(cfg.p2p, key, value)
    return cfg


def make_identity():
    return SimpleNamespace(libp2p_key=create_new_key_pair(), account=Account.create())


@contextlib.asynccontextmanager
async def running_nodes(count: int, *, config_fn=None, **p2p):
    """Start `count` P2PServices in one nursery; yields the list; cancels them all on exit."""
    async with trio.open_nursery() as nursery:
        nodes = []
        for i in range(count):
            cfg = make_config(**p2p)
            if config_fn is not None:
                config_fn(i, cfg)
            node = P2PService(cfg, make_identity())
            await nursery.start(node.run)
            nodes.append(node)
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(interval)


async def connect_line(nodes) -> None:
    """a-b, b-c, ...; waits until gossip meshes on every joined topic include the neighbours."""
    for a, b in zip(nodes, nodes[1:]):
        await b.connect(a.listen_addrs()[0])
    topic = "/dai/1/offers"
    for i, node in enumerate(nodes):
        want = (i > 0) + (i < len(nodes) - 1)
        await wait_for(lambda: len(node.gossip.router.mesh.get(topic, ())) >= want)
