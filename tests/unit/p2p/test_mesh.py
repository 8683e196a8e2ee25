"""Gossipsub mesh maintenance: py-libp2p 0.8.1 behaviours that inflate the mesh, each shown without our fix."""

from __future__ import annotations

from libp2p.pubsub.gossipsub import GossipSub

from dainode.p2p import topics
from tests.unit.p2p.helpers import running_nodes, wait_for

PEERS = 5


def _cfg(i, c):
    c.gossip.mesh_degree = 2  # D=2, D_low=1, D_high=4
    c.gossip.heartbeat_s = 1000  # the test drives the mesh heartbeat itself


async def _star(nodes):
    """b..f each connect to a; returns a's router once a knows all of them are on the topic."""
    a, *others = nodes
    for n in others:
        await n.connect(a.listen_addrs()[0])
    router = a.gossip.router
    await wait_for(lambda: len(a.gossip.pubsub.peer_topics.get(topics.OFFERS, ())) == PEERS)
    return router, [n.gossip.pubsub.my_id for n in others]


def _heartbeats(router, count: int) -> list:
    """Run `count` mesh heartbeats with a fixed 2-peer mesh; returns every peer grafted."""
    grafted = []
    for _ in range(count):
        to_graft, _ = router.mesh_heartbeat()
        grafted += [p for p, ts in to_graft.items() if topics.OFFERS in ts]
    return grafted


async def test_no_opportunistic_grafting_while_the_mesh_scores_well():
    async with running_nodes(1 + PEERS, config_fn=_cfg) as nodes:
        router, peers = await _star(nodes)
        router.mesh[topics.OFFERS] = set(peers[:2])
        assert _heartbeats(router, router.OPPORTUNISTIC_GRAFT_TICKS + 1) == []
        assert len(router.mesh[topics.OFFERS]) == 2


async def test_library_grafts_two_more_peers_every_heartbeat():
    async with running_nodes(1 + PEERS, config_fn=_cfg) as nodes:
        router, peers = await _star(nodes)
        router.mesh[topics.OFFERS] = set(peers[:2])
        router._perform_opportunistic_grafting = GossipSub._perform_opportunistic_grafting.__get__(router)
        # All scores are 0, so every non-mesh peer qualifies: the mesh grows past D at once.
        assert len(_heartbeats(router, 1)) == 2
        assert len(router.mesh[topics.OFFERS]) == 4


async def test_opportunistic_grafting_when_mesh_peers_misbehave():
    async with running_nodes(1 + PEERS, config_fn=_cfg) as nodes:
        router, peers = await _star(nodes)
        router.mesh[topics.OFFERS] = set(peers[:2])
        for p in peers[:2]:
            for _ in range(3):
                router.scorer.on_invalid_message(p, topics.OFFERS)
        grafted = _heartbeats(router, router.OPPORTUNISTIC_GRAFT_TICKS)
        assert grafted and set(grafted) <= set(peers[2:])


async def test_heartbeat_and_degrees_stay_as_configured():
    def cfg(i, c):
        c.gossip.heartbeat_s = 0.5

    async with running_nodes(1, config_fn=cfg) as (a,):
        r = a.gossip.router

        def health_update():
            r.last_health_update = 0  # due now (the library re-rates health every 30 s)
            r._update_network_health()
            r._adapt_gossip_parameters()

        health_update()
        assert (r.heartbeat_interval, r.adaptive_degree_low, r.adaptive_degree_high) == (0.5, 4, 12)
        r.adaptive_gossip_enabled = True  # the library default
        health_update()
        # a lone node rates its health "critical": 30 s heartbeat, D_low 7, D_high 16
        assert r.heartbeat_interval >= 30 and r.adaptive_degree_high > 12
