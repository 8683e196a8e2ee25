"""Connectivity: keep bootstrap peers connected (with backoff), find peers through the DHT below low water, trim above high water."""

from __future__ import annotations

import logging
import os
import random
import time

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from dainode.config import P2PConfig
from dainode.errors import P2PError

log = logging.getLogger("dainode.p2p")

DIAL_TIMEOUT_S = 10.0
BACKOFF_START_S = 0.5
CHECK_INTERVAL_S = 0.5
LOOKUP_TIMEOUT_S = 15.0
MAINTAIN_MIN_S = 2.0
MAINTAIN_MAX_S = 60.0
FAILED_DIAL_BACKOFF_S = 30.0
HIGH_WATER_CHECK_S = 1.0


def parse_peer_addr(addr: str) -> PeerInfo:
    """`/ip4/…/tcp/…/p2p/<id>` -> PeerInfo; P2PError with the reason otherwise."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise P2PError(f"invalid peer multiaddr {addr!r}: {exc} (expected /ip4/HOST/tcp/PORT/p2p/PEER_ID)") from None


def backoff_delays(start: float, cap: float):
    """Exponential backoff with +-20% jitter, capped (jitter keeps restarted fleets from dialling in lockstep)."""
    delay = start
    while True:
        yield min(cap, delay) * random.uniform(0.8, 1.2)
        delay = min(cap, delay * 2)


async def ping(host: IHost, peer_id: ID, timeout: float = 2.0) -> float | None:
    """One /ipfs/ping/1.0.0 round trip in milliseconds (float; the library's helper rounds to whole ms)."""
    with trio.move_on_after(timeout):
        stream = None
        try:
            stream = await host.new_stream(peer_id, [PING_PROTOCOL])
            payload = os.urandom(32)
            t0 = time.perf_counter()
            await stream.write(payload)
            got = b""
            while len(got) < 32:
                chunk = await stream.read(32 - len(got))
                if not chunk:
                    return None
                got += chunk
            rtt = (time.perf_counter() - t0) * 1000
            return rtt if got == payload else None
        except Exception:
            return None
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    try:
                        await stream.close()
                    except Exception:
                        pass
    return None


class Discovery:
    """Runs inside the P2P service's nursery; see `run`."""

    def __init__(self, host: IHost, dht, config: P2PConfig, *, protected: set[ID] | None = None, valued=lambda: set()):
        self.host = host
        self.valued = valued  # peers worth keeping when trimming (e.g. gossip mesh members)
        self.dht = dht
        self.config = config
        self.bootstrap = [parse_peer_addr(a) for a in config.bootstrap]
        self.protected: set[ID] = protected if protected is not None else set()
        self.protected.update(info.peer_id for info in self.bootstrap)
        # Also tell the swarm's own pruner (host.connection_config) to leave them alone.
        network = host.get_network()
        for peer_id in self.protected:
            try:
                network.protect(peer_id, "dainode-bootstrap")
            except Exception as exc:
                log.debug("cannot protect %s: %s", peer_id, exc)
        self._failed: dict[ID, float] = {}
        self._wake = trio.Event()
        self.lookups = 0

    def connected(self) -> list[ID]:
        return list(self.host.get_network().connections.keys())

    def is_connected(self, peer_id: ID) -> bool:
        return bool(self.host.get_network().connections.get(peer_id))

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for info in self.bootstrap:
                nursery.start_soon(self._keep_connected, info)
            nursery.start_soon(self._maintain)
            nursery.start_soon(self._enforce_high_water)

    def poke(self) -> None:
        """Re-run maintenance now (e.g. after a disconnect)."""
        self._wake.set()

    async def dial(self, info: PeerInfo, timeout: float = DIAL_TIMEOUT_S) -> None:
        if info.peer_id == self.host.get_id():
            raise P2PError("refusing to dial ourselves")
        with trio.move_on_after(timeout) as scope:
            try:
                await self.host.connect(info)
            except Exception as exc:
                raise P2PError(f"cannot connect to {info.peer_id}: {type(exc).__name__}: {exc}") from exc
        if scope.cancelled_caught:
            raise P2PError(f"cannot connect to {info.peer_id}: no answer within {timeout} s")
        await self._add_to_dht(info.peer_id)

    async def _add_to_dht(self, peer_id: ID) -> None:
        if self.dht is None:
            return
        try:
            # Skip the server-mode probe: identify may not have finished yet, and every
            # dainode runs the DHT in server mode.
            await self.dht.add_peer(peer_id, skip_server_mode_check=True)
        except Exception as exc:
            log.debug("could not add %s to the DHT routing table: %s", peer_id, exc)

    async def _keep_connected(self, info: PeerInfo) -> None:
        """Dial a bootstrap peer until connected; redial with exponential backoff whenever it drops."""
        cap = self.config.dial_backoff_max_s
        delays = backoff_delays(BACKOFF_START_S, cap)
        was_connected = False
        while True:
            if self.is_connected(info.peer_id):
                if not was_connected:
                    log.info("connected to bootstrap peer %s", info.peer_id)
                    await self._add_to_dht(info.peer_id)
                was_connected = True
                delays = backoff_delays(BACKOFF_START_S, cap)
                await trio.sleep(CHECK_INTERVAL_S)
                continue
            if was_connected:
                log.info("lost bootstrap peer %s; reconnecting", info.peer_id)
                was_connected = False
                self.poke()
            try:
                await self.dial(info)
                continue
            except P2PError as exc:
                delay = next(delays)
                log.debug("%s; retrying in %.1f s", exc, delay)
            # The peer may have come back on another address: ask the DHT.
            if self.dht is not None:
                with trio.move_on_after(5):
                    try:
                        found = await self.dht.find_peer(info.peer_id)
                        if found is not None and found.addrs:
                            info = PeerInfo(info.peer_id, list(dict.fromkeys(list(info.addrs) + list(found.addrs))))
                    except Exception:
                        pass
            await trio.sleep(delay)

    async def _maintain(self) -> None:
        """Below p2p.low_water look for peers: DHT lookup, then dial known ones."""
        interval = MAINTAIN_MIN_S
        await trio.sleep(0.5)
        while True:
            before = set(self.connected())
            try:
                await self.maintain_once()
            except Exception as exc:  # maintenance is best effort; the next round retries
                log.warning("peer maintenance failed: %s: %s", type(exc).__name__, exc)
            after = set(self.connected())
            gained = bool(after - before)
            short = len(after) < self.config.low_water
            # Look hard while short of peers and still finding new ones; back off otherwise.
            interval = MAINTAIN_MIN_S if (short and gained) else min(MAINTAIN_MAX_S, interval * 2)
            self._wake = trio.Event()
            with trio.move_on_after(interval):
                await self._wake.wait()
                interval = MAINTAIN_MIN_S

    async def maintain_once(self) -> None:
        connected = self.connected()
        for peer_id in connected:
            if self.dht is not None and not self.dht.routing_table.peer_in_table(peer_id):
                await self._add_to_dht(peer_id)
        if len(connected) >= self.config.low_water:
            return
        if self.dht is not None and connected:
            self.lookups += 1
            with trio.move_on_after(LOOKUP_TIMEOUT_S):
                # A lookup of our own id walks towards our neighbourhood and connects to
                # every peer it queries, which is what fills a sparse topology.
                await self.dht.peer_routing.find_closest_peers_network(self.host.get_id().to_bytes())
        await self._dial_known(self.config.low_water - len(self.connected()))

    async def _dial_known(self, want: int) -> None:
        if want <= 0:
            return
        me = self.host.get_id()
        store = self.host.get_peerstore()
        now = time.monotonic()
        candidates = []
        for peer_id in store.peers_with_addrs():
            if peer_id == me or self.is_connected(peer_id) or self._failed.get(peer_id, 0) > now:
                continue
            candidates.append(peer_id)
        random.shuffle(candidates)
        for peer_id in candidates[:want]:
            try:
                await self.dial(PeerInfo(peer_id, store.addrs(peer_id)), timeout=5)
                log.info("connected to discovered peer %s", peer_id)
            except P2PError as exc:
                self._failed[peer_id] = now + FAILED_DIAL_BACKOFF_S
                log.debug("%s", exc)


    async def _enforce_high_water(self) -> None:
        """Close connections above p2p.high_water.

        py-libp2p's own pruner never closes a connection with an open stream, and every
        gossip peer keeps a pubsub stream open, so it cannot bring the count down for us.
        Bootstrap peers are kept; gossip mesh members go last.
        """
        while True:
            await trio.sleep(HIGH_WATER_CHECK_S)
            connected = self.connected()
            if len(connected) > self.config.high_water:
                await self.trim(connected)

    async def trim(self, connected: list[ID]) -> None:
        excess = len(connected) - self.config.high_water
        valued = self.valued()
        victims = [p for p in connected if p not in self.protected]
        random.shuffle(victims)
        victims.sort(key=lambda p: p in valued)  # stable: non-mesh peers first
        for peer_id in victims[:excess]:
            log.info("closing connection to %s (above p2p.high_water %d)", peer_id, self.config.high_water)
            try:
                await self.host.disconnect(peer_id)
            except Exception as exc:
                log.debug("disconnect %s failed: %s", peer_id, exc)


__all__ = ["Discovery", "parse_peer_addr", "ping", "backoff_delays"]
