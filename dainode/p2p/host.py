"""Build the node's libp2p host: TCP + Noise + Yamux only, from the node's persistent key."""

from __future__ import annotations

from typing import Sequence

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux


def security_options(key_pair: KeyPair) -> dict:
    """Noise only.

    `new_host()` in py-libp2p 0.8.1 offers Noise, TLS, secio and *plaintext* by
    default, so an incoming peer could negotiate an unencrypted, unauthenticated
    connection. We pass an explicit map with Noise alone.
    """
    noise_static = create_x25519_key_pair()
    return {TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(key_pair, noise_privkey=noise_static.private_key)}


def muxer_options() -> dict:
    """Yamux only (the library's default map also offers mplex, which is deprecated upstream)."""
    return {TProtocol(YAMUX_PROTOCOL_ID): Yamux}


def build_host(key_pair: KeyPair, listen: Sequence[str], *, enable_mdns: bool = False) -> IHost:
    """Create (not start) a host; start it with `async with host.run(listen_addrs)`."""
    return new_host(
        key_pair=key_pair,
        sec_opt=security_options(key_pair),
        muxer_opt=muxer_options(),
        listen_addrs=[multiaddr.Multiaddr(a) for a in listen],
        enable_mDNS=enable_mdns,
    )
