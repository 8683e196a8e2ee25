"""Discovery: backoff schedule, bootstrap redial after a drop, address parsing, ping."""

from __future__ import annotations

import itertools

import pytest
import trio

from dainode.errors import P2PError
from dainode.p2p.discovery import backoff_delays, parse_peer_addr, ping
from tests.unit.p2p.helpers import running_nodes, wait_for


def test_backoff_grows_exponentially_with_jitter_and_cap():
    delays = list(itertools.islice(backoff_delays(0.5, 8.0), 8))
    nominal = [0.5, 1, 2, 4, 8, 8, 8, 8]
    for d, n in zip(delays, nominal):
        assert 0.8 * n <= d <= 1.2 * n


@pytest.mark.parametrize("addr", ["/ip4/127.0.0.1/tcp/4040", "nonsense", "/ip4/1.2.3.4/tcp/1/p2p/notanid"])
def test_parse_peer_addr_errors(addr):
    with pytest.raises(P2PError, match="invalid peer multiaddr"):
        parse_peer_addr(addr)


async def test_bootstrap_peer_is_redialled_after_a_drop():
    async with running_nodes(1) as (a,):
        boot = a.listen_addrs()[0]

        def cfg(i, c):
            c.p2p.bootstrap = [boot]
            c.p2p.dial_backoff_max_s = 1.0

        async with running_nodes(1, config_fn=cfg) as (b,):
            await wait_for(lambda: a.peer_id in b.connected_peers(), timeout=10)
            assert await a.disconnect(b.peer_id) is True
            await wait_for(lambda: a.peer_id not in b.connected_peers(), timeout=5)
            with trio.fail_after(10):
                await wait_for(lambda: a.peer_id in b.connected_peers(), timeout=10)
            rtt = await ping(b.host, a.host.get_id())
            assert rtt is not None and 0 < rtt < 1000
            assert await b.disconnect(b.peer_id) is False  # not connected to ourselves


async def test_connections_are_pruned_above_high_water_but_bootstrap_peers_kept(monkeypatch):
    from dainode.p2p.service import P2PService

    monkeypatch.setattr(P2PService, "CONNECTION_GRACE_S", 0.0)

    def content(i, c):
        c.p2p.low_water = 0  # the others do not redial the hub when it drops them

    async with running_nodes(5, config_fn=content) as others:
        boot = others[0]

        def cfg(i, c):
            c.p2p.bootstrap = [boot.listen_addrs()[0]]
            c.p2p.low_water, c.p2p.high_water = 1, 2

        async with running_nodes(1, config_fn=cfg) as (hub,):
            await wait_for(lambda: boot.peer_id in hub.connected_peers(), timeout=10)
            for other in others[1:]:
                await other.connect(hub.listen_addrs()[0])
                await trio.sleep(0.2)
            # enforcement is periodic (1 s): wait until the count stays within high water for 2 s
            with trio.fail_after(15):
                stable_since = None
                while stable_since is None or trio.current_time() - stable_since < 2:
                    ok = len(hub.connected_peers()) <= 2
                    stable_since = (stable_since or trio.current_time()) if ok else None
                    await trio.sleep(0.05)
            assert boot.peer_id in hub.connected_peers()  # protected: it is a bootstrap peer


async def test_mdns_option_finds_a_peer_on_the_lan():
    """p2p.mdns = true (off by default): two nodes with no bootstrap list find each other."""
    async with running_nodes(2, mdns=True) as (a, b):
        await wait_for(lambda: b.peer_id in a.connected_peers(), timeout=20)
    async with running_nodes(1) as (plain,):
        assert plain.host.mDNS is None
