"""The host: Noise + Yamux only; stable peer id; port 0 reports the real port."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.secio.transport import ID as SECIO_ID
from libp2p.security.secio.transport import Transport as SecioTransport

from dainode.p2p.host import build_host, muxer_options, security_options
from tests.unit.p2p.helpers import running_nodes


def _foreign_host(kind: str):
    key = create_new_key_pair()
    if kind == "plaintext":
        sec = {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key)}
    elif kind == "secio":
        sec = {TProtocol(SECIO_ID): SecioTransport(key)}
    else:
        sec = security_options(key)
    return new_host(key_pair=key, sec_opt=sec, muxer_opt=muxer_options())


async def _try_connect(host, addr: str) -> bool:
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        with trio.move_on_after(5):
            try:
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
                return True
            except Exception:
                return False
    return False


@pytest.mark.parametrize("kind, ok", [("noise", True), ("plaintext", False), ("secio", False)])
async def test_only_noise_peers_can_connect(kind, ok):
    async with running_nodes(1) as (node,):
        connected = await _try_connect(_foreign_host(kind), node.listen_addrs()[0])
        assert connected is ok
        assert (len(node.connected_peers()) == 1) is ok


def test_default_new_host_would_offer_plaintext():
    """Why host.py passes explicit maps: the library default includes plaintext and mplex."""
    key = create_new_key_pair()
    default = new_host(key_pair=key)
    ours = build_host(key, ["/ip4/127.0.0.1/tcp/0"])
    offered = lambda h: set(map(str, h.get_network().upgrader.security_multistream.transports))  # noqa: E731
    assert "/plaintext/2.0.0" in offered(default)
    assert offered(ours) == {"/noise"}
    muxers = lambda h: set(map(str, h.get_network().upgrader.muxer_multistream.transports))  # noqa: E731
    assert muxers(ours) == {"/yamux/1.0.0"}


async def test_peer_id_from_key_and_real_port():
    key = create_new_key_pair()
    host = build_host(key, ["/ip4/127.0.0.1/tcp/0"])
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        addr = str(host.get_addrs()[0])
    assert host.get_id().to_base58() == build_host(key, []).get_id().to_base58()
    assert addr.endswith("/p2p/" + host.get_id().to_base58())
    assert "/tcp/0/" not in addr


def test_library_logs_go_through_our_handler_without_routine_noise(caplog, monkeypatch):
    import logging

    from dainode.p2p.host import route_library_logs

    monkeypatch.delenv("LIBP2P_DEBUG", raising=False)
    monkeypatch.setattr(logging.getLogger("libp2p"), "propagate", False)  # the library's import-time state
    monkeypatch.setattr(logging.getLogger("dainode"), "level", logging.INFO)
    route_library_logs()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("libp2p.pubsub.gossipsub").warning("a real warning")
        logging.getLogger("libp2p.transport.tcp.tcp").error("Failed to open TCP stream: all attempts failed")
        logging.getLogger("libp2p.kad_dht.kad_dht").warning("Failed to read DHT message from stream: %s", "")
        logging.getLogger("libp2p.kad_dht.kad_dht").warning("Failed to read DHT message from stream: %s", "bad varint")
        logging.getLogger("libp2p.network.auto_connector").info("AUTO_CONNECTOR_STATE: ...")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["a real warning", "Failed to read DHT message from stream: bad varint"]
