"""The P2P service: the node's libp2p host with discovery, DHT, signed gossip and request/response."""

from __future__ import annotations

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service

from dainode.config import Config
from dainode.errors import ConfigError, P2PError
from dainode.p2p.discovery import Discovery, parse_peer_addr
from dainode.p2p.gossip import Gossip
from dainode.p2p.host import build_host, route_library_logs
from dainode.p2p.idexchange import IdExchange
from dainode.p2p.reqresp import ReqResp
from dainode.p2p.rpc import P2PRpc
from dainode.p2p.validator import GossipValidator
from dainode.service import Service


class P2PService(Service):
    """Public surface for the other layers (see docs/p2p.md):

    `host` (IHost), `dht` (KadDHT or None), `gossip` (Gossip), `reqresp` (ReqResp),
    `await provide(key)`, `await find_providers(key, limit)`, `await connect(addr)`,
    `await disconnect(peer_id)`, `connected_peers()`, `eth_address_of(peer_id)`, `peer_id`,
    `listen_addrs()`.
    """

    name = "p2p"
    #: grace period of the swarm's own pruner (see host.connection_config; discovery.trim has none)
    CONNECTION_GRACE_S = 20.0

    def __init__(self, config: Config, identity):
        self.config = config
        self.identity = identity
        route_library_logs()
        self.host: IHost = build_host(
            identity.libp2p_key,
            config.p2p.listen,
            enable_mdns=config.p2p.mdns,
            low_water=config.p2p.low_water,
            high_water=config.p2p.high_water,
            grace_period_s=self.CONNECTION_GRACE_S,
        )
        self.validator = GossipValidator(config.gossip, local_peer_id=self.peer_id)
        self.gossip = Gossip(self.host, identity.account, config.gossip, self.validator)
        self.dht: KadDHT | None = KadDHT(self.host, DHTMode.SERVER) if config.p2p.dht else None
        self.reqresp = ReqResp(self.host)
        self.ids = IdExchange(self.reqresp, identity.account)
        self.discovery = Discovery(self.host, self.dht, config.p2p, valued=self.gossip.mesh_peers)
        self._rpc = P2PRpc(self)
        self._ready = trio.Event()

    @property
    def peer_id(self) -> str:
        return self.host.get_id().to_base58()

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs ending in /p2p/<peer id>, with the real (not 0) ports."""
        return [str(a) for a in self.host.get_addrs()]

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listen = [multiaddr.Multiaddr(a) for a in self.config.p2p.listen]
        try:
            async with self.host.run(listen_addrs=listen):
                # py-libp2p logs a failed listen (e.g. port in use) and carries on without
                # it; a node that cannot be reached where it was told to listen must not start.
                bound = self.host.get_transport_addrs()
                if len(bound) < len(listen):
                    raise ConfigError(  # an address this node cannot use: a configuration error (exit 2)
                        f"cannot listen on {', '.join(self.config.p2p.listen)} (bound only {len(bound)} of "
                        f"{len(listen)}; is the port in use?); choose another --listen address",
                        key="p2p.listen",
                    )
                async with trio.open_nursery() as nursery:
                    if self.dht is not None:
                        await nursery.start(_run_libp2p_service, self.dht)
                    await nursery.start(self.gossip.run)
                    nursery.start_soon(self.discovery.run)
                    nursery.start_soon(self.ids.run, self.discovery.connected)
                    self.log.info("libp2p host %s listening on %s", self.peer_id, ", ".join(self.listen_addrs()))
                    self._ready.set()
                    task_status.started()
                    await trio.sleep_forever()
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {', '.join(self.config.p2p.listen)}: {exc.strerror or exc}; choose another --listen address",
                key="p2p.listen",
            ) from exc

    # --- API for other layers -------------------------------------------------------------

    def connected_peers(self) -> list[str]:
        return [p.to_base58() for p, conns in self.host.get_network().connections.items() if conns]

    async def connect(self, addr: str, *, timeout: float = 10.0) -> str:
        """Dial `/ip4/…/tcp/…/p2p/<id>`; returns the peer id. P2PError if it cannot be reached."""
        info = parse_peer_addr(addr)
        await self.discovery.dial(info, timeout=timeout)
        return info.peer_id.to_base58()

    async def disconnect(self, peer_id: str) -> bool:
        """Close every connection to `peer_id`; False if there was none. (A bootstrap peer is redialled.)"""
        pid = _peer_id(peer_id)
        if not self.discovery.is_connected(pid):
            return False
        await self.host.disconnect(pid)
        return True

    async def provide(self, key: bytes) -> bool:
        """Announce on the DHT that we hold `key` (a multihash, e.g. `cid.multihash`)."""
        if self.dht is None:
            return False
        try:
            return bool(await self.dht.provider_store.provide(bytes(key)))
        except Exception as exc:
            raise P2PError(f"DHT provide failed: {type(exc).__name__}: {exc}") from exc

    async def find_providers(self, key: bytes, limit: int = 20) -> list[PeerInfo]:
        """Peers that announced `key` on the DHT (with their addresses), at most `limit`."""
        if self.dht is None:
            return []
        try:
            found = await self.dht.provider_store.find_providers(bytes(key), limit)
        except Exception as exc:
            raise P2PError(f"DHT find_providers failed: {type(exc).__name__}: {exc}") from exc
        me = self.host.get_id()
        return [p for p in found if p.peer_id != me][:limit]

    def eth_address_of(self, peer_id: str) -> str | None:
        """A peer's Ethereum address: proven on connect (/dai/id/1.0.0), else as seen in its signed gossip."""
        return self.ids.proven.get(peer_id) or self.gossip.peer_addresses.get(peer_id)

    def known_eth_addresses(self) -> dict[str, str]:
        return {**self.gossip.peer_addresses, **self.ids.proven}

    def rpc_methods(self) -> dict:
        return self._rpc.methods()


def _peer_id(text: str) -> ID:
    try:
        return ID.from_base58(text)
    except Exception:
        raise P2PError(f"invalid peer id {text!r} (expected a base58 id like 12D3Koo…)") from None


async def _run_libp2p_service(service, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run a py-libp2p (anyio_service) Service inside a trio nursery until cancelled."""
    async with background_trio_service(service):
        task_status.started()
        await trio.sleep_forever()
