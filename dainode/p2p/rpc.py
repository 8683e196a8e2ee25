"""Admin JSON-RPC methods of the P2P layer: p2p_* (peers, connect, disconnect) and gossip_* (publish, recent, stats)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from dainode.errors import P2PError, RpcError
from dainode.p2p.discovery import ping
from dainode.p2p.envelope import check_body
from dainode.p2p.topics import PREFIX

if TYPE_CHECKING:
    from dainode.p2p.service import P2PService

MAX_RECENT = 256


class P2PRpc:
    def __init__(self, p2p: "P2PService"):
        self.p2p = p2p

    def methods(self) -> dict:
        return {
            "p2p_peers": self.p2p_peers,
            "p2p_connect": self.p2p_connect,
            "p2p_disconnect": self.p2p_disconnect,
            "p2p_info": self.p2p_info,
            "gossip_publish": self.gossip_publish,
            "gossip_recent": self.gossip_recent,
            "gossip_stats": self.gossip_stats,
        }

    async def p2p_peers(self, ping_timeout_s: float = 2.0) -> list[dict]:
        """One object per connected peer: peer_id, multiaddr, eth_address (if known), latency_ms (ping; null if none)."""
        host = self.p2p.host
        network = host.get_network()
        peers = [(pid, conns) for pid, conns in list(network.connections.items()) if conns]
        latencies: dict[str, float | None] = {}

        async def measure(pid) -> None:
            latencies[pid.to_base58()] = await ping(host, pid, timeout=ping_timeout_s)

        async with trio.open_nursery() as nursery:
            for pid, _ in peers:
                nursery.start_soon(measure, pid)
        out = []
        for pid, conns in peers:
            text = pid.to_base58()
            addrs = []
            try:
                addrs = [str(a) for a in conns[0].get_transport_addresses()]
            except Exception:
                pass
            if not addrs:
                addrs = [str(a) for a in host.get_peerstore().addrs(pid)]
            rtt = latencies.get(text)
            out.append(
                {
                    "peer_id": text,
                    "multiaddr": (addrs[0] + "/p2p/" + text) if addrs else None,
                    "eth_address": self.p2p.eth_address_of(text),
                    "latency_ms": round(rtt, 3) if rtt is not None else None,
                    "direction": str(getattr(conns[0], "direction", "")).rsplit(".", 1)[-1].lower() or None,
                }
            )
        return sorted(out, key=lambda p: p["peer_id"])

    async def p2p_connect(self, multiaddr: str) -> dict:
        """Dial a peer by full multiaddr (…/p2p/<id>)."""
        if not isinstance(multiaddr, str) or "/p2p/" not in multiaddr:
            raise RpcError(RpcError.INVALID_PARAMS, "multiaddr must end in /p2p/<peer id>, e.g. /ip4/127.0.0.1/tcp/4040/p2p/12D3Koo…")
        try:
            peer_id = await self.p2p.connect(multiaddr)
        except P2PError as exc:
            if "invalid peer multiaddr" in str(exc):
                raise RpcError(RpcError.INVALID_PARAMS, str(exc)) from None
            raise
        return {"peer_id": peer_id, "connected": True}

    async def p2p_disconnect(self, peer_id: str) -> dict:
        try:
            was = await self.p2p.disconnect(peer_id)
        except P2PError as exc:
            raise RpcError(RpcError.INVALID_PARAMS, str(exc)) from None
        return {"peer_id": peer_id, "disconnected": was}

    async def p2p_info(self) -> dict:
        dht = self.p2p.dht
        return {
            "peer_id": self.p2p.peer_id,
            "listen_addrs": self.p2p.listen_addrs(),
            "connected": len(self.p2p.connected_peers()),
            "dht_routing_table": dht.routing_table.size() if dht is not None else None,
            "dht_lookups": self.p2p.discovery.lookups,
            "topics": sorted(self.p2p.gossip.topics.names()),
            "known_eth_addresses": self.p2p.known_eth_addresses(),
        }

    async def gossip_publish(self, topic: str, body: dict, type: str = "diag") -> dict:
        """Publish a message (type "diag" unless given) on a /dai/1/ topic, signed by this node."""
        if not isinstance(topic, str) or not topic.startswith(PREFIX):
            raise RpcError(RpcError.INVALID_PARAMS, f"topic must start with {PREFIX} (e.g. {PREFIX}offers)")
        if not isinstance(body, dict):
            raise RpcError(RpcError.INVALID_PARAMS, "body must be a JSON object")
        try:
            check_body(body)
        except ValueError as exc:
            raise RpcError(RpcError.INVALID_PARAMS, f"invalid params: {exc}") from None
        if not isinstance(type, str) or not type:
            raise RpcError(RpcError.INVALID_PARAMS, "type must be a non-empty string")
        try:
            msg = await self.p2p.gossip.publish(topic, type, body)
        except P2PError as exc:
            if "invalid gossip topic" in str(exc) or "exceeds" in str(exc):
                raise RpcError(RpcError.INVALID_PARAMS, str(exc)) from None
            raise
        return msg.to_json()

    async def gossip_recent(self, topic: str, limit: int = 20, since: float = 0.0) -> list[dict]:
        """The last `limit` accepted messages on `topic` received after `since` (unix time), oldest first.

        `received_at` is the local receive time; pass the last one seen as `since` to follow a topic.
        """
        if not isinstance(limit, int) or limit < 0 or limit > MAX_RECENT:
            raise RpcError(RpcError.INVALID_PARAMS, f"limit must be an integer 0..{MAX_RECENT}")
        msgs = [m for m in self.p2p.gossip.recent_messages(topic, MAX_RECENT) if m.received_at > since]
        return [m.to_json() for m in msgs[-limit:]] if limit else []

    async def gossip_stats(self) -> dict:
        """Accepted/rejected counts (by topic, by reason, per forwarding peer, with its gossipsub score)."""
        return self.p2p.gossip.stats()
