"""The P2P service: runs the node's libp2p host for as long as the node runs."""

from __future__ import annotations

import trio
import multiaddr
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair

from dainode.config import Config
from dainode.errors import P2PError
from dainode.p2p.host import build_host
from dainode.service import Service


class P2PService(Service):
    name = "p2p"

    def __init__(self, config: Config, key_pair: KeyPair):
        self.config = config
        self.host: IHost = build_host(key_pair, config.p2p.listen, enable_mdns=config.p2p.mdns)

    @property
    def peer_id(self) -> str:
        return self.host.get_id().to_base58()

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs ending in /p2p/<peer id>, with the real (not 0) ports."""
        return [str(a) for a in self.host.get_addrs()]

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listen = [multiaddr.Multiaddr(a) for a in self.config.p2p.listen]
        try:
            async with self.host.run(listen_addrs=listen):
                # py-libp2p logs a failed listen (e.g. port in use) and carries on without
                # it; a node that cannot be reached where it was told to listen must not start.
                bound = self.host.get_transport_addrs()
                if len(bound) < len(listen):
                    raise P2PError(
                        f"cannot listen on {', '.join(self.config.p2p.listen)} (bound only {len(bound)} of "
                        f"{len(listen)}; is the port in use?); choose another --listen address"
                    )
                self.log.info("libp2p host %s listening on %s", self.peer_id, ", ".join(self.listen_addrs()))
                task_status.started()
                await trio.sleep_forever()
        except OSError as exc:
            raise P2PError(f"cannot listen on {', '.join(self.config.p2p.listen)}: {exc}") from exc
