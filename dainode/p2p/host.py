"""Build the node's libp2p host: TCP + Noise + Yamux only, from the node's persistent key."""

from __future__ import annotations

import logging
import os
from typing import Sequence

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.custom_types import TProtocol
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux


class _RoutineLibraryNoise(logging.Filter):
    """Drop py-libp2p records that describe normal operation at warning/error level.

    - kad_dht warns "Failed to read DHT message from stream: " (empty error) whenever a peer
      simply closes its query stream;
    - the TCP transport logs every failed dial at ERROR, and failed dials are routine while a
      peer is down (discovery.py retries with backoff and logs its own attempts at debug).
    Both still show with `--log-level debug`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger("dainode").isEnabledFor(logging.DEBUG):
            return True
        if record.msg == "Failed to read DHT message from stream: %s" and record.args:
            return bool(str(record.args[0]))
        if isinstance(record.msg, str) and record.msg.startswith("Failed to open TCP stream"):
            return False
        return True


def route_library_logs() -> None:
    """Send py-libp2p's warnings through dainode's log handler (one format, one stream).

    libp2p's import-time set-up turns propagation off and installs no handler unless
    LIBP2P_DEBUG is set, so its warnings reached stderr unformatted via logging's last
    resort. With LIBP2P_DEBUG set, the library's own logging set-up is left alone.
    """
    if os.environ.get("LIBP2P_DEBUG"):
        return
    logging.getLogger("libp2p").propagate = True
    # The library pins this logger to INFO and reports its state every few seconds.
    logging.getLogger("libp2p.network.auto_connector").setLevel(logging.WARNING)
    for name in ("libp2p.kad_dht.kad_dht", "libp2p.transport.tcp.tcp"):
        lib = logging.getLogger(name)
        if not any(isinstance(f, _RoutineLibraryNoise) for f in lib.filters):
            lib.addFilter(_RoutineLibraryNoise())


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


def connection_config(low_water: int, high_water: int, grace_period_s: float = 20.0) -> ConnectionConfig:
    """The swarm's own connection manager, set to our watermarks.

    py-libp2p 0.8.1 ships a go-style connection manager (defaults: low 100, high 200), which
    we set to our watermarks so it does not work against us. It cannot do the job alone: its
    pruner never closes a connection that has an open stream (every gossip peer has one) and
    its auto-connector only dials publicly routable addresses; dainode's Discovery does both
    sides itself (DHT lookups; trimming above high water).
    """
    return ConnectionConfig(
        min_connections=min(low_water, high_water),
        low_watermark=low_water,
        high_watermark=high_water,
        max_connections=max(high_water + 16, 2 * high_water),
        grace_period=grace_period_s,
    )


def build_host(
    key_pair: KeyPair,
    listen: Sequence[str],
    *,
    enable_mdns: bool = False,
    low_water: int = 8,
    high_water: int = 64,
    grace_period_s: float = 20.0,
) -> IHost:
    """Create (not start) a host; start it with `async with host.run(listen_addrs)`."""
    return new_host(
        key_pair=key_pair,
        sec_opt=security_options(key_pair),
        muxer_opt=muxer_options(),
        listen_addrs=[multiaddr.Multiaddr(a) for a in listen],
        enable_mDNS=enable_mdns,
        connection_config=connection_config(low_water, high_water, grace_period_s),
    )
