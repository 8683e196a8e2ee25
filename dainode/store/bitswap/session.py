"""A fetch session: which providers to ask for the blocks of one DAG, with limits and timeouts.

Strategy (as go-bitswap/Helia sessions): while the session knows no provider, ask every
connected peer with want-have (sendDontHave); peers that answer HAVE (or deliver) become
session peers, and later blocks go as want-block straight to the least loaded of them.
A block nobody connected has triggers a DHT provider lookup (connected peers first).
A peer that sends a bad block is excluded from the session for good.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import trio
from libp2p.peer.id import ID

from dainode.errors import BlockNotFound, P2PError
from dainode.store.bitswap import wire
from dainode.store.bitswap.engine import Bitswap, Want
from dainode.store.cid import CID

log = logging.getLogger("dainode.store.bitswap")

#: Ask another provider if one has not delivered a wanted block in this long.
PEER_TIMEOUT_S = 15.0
#: While no provider is known, re-ask newly connected peers this often.
REBROADCAST_S = 1.0
#: At most one DHT provider lookup per session in this interval.
DISCOVERY_INTERVAL_S = 10.0
#: A HAVE question still unanswered after this long no longer holds back a DHT lookup (a peer that never sends
#: DONT_HAVE must not delay discovery by the full PEER_TIMEOUT_S).
HAVE_ANSWER_S = 3.0


class Session:
    def __init__(self, engine: Bitswap, *, timeout_s: float, max_wants: int):
        self.engine = engine
        self.timeout_s = timeout_s
        self.peers: list[ID] = []
        self.excluded: set[ID] = set()
        self.inflight: Counter[ID] = Counter()
        self._limit = trio.Semaphore(max_wants)
        self._last_discovery = -math.inf
        self._discovering = False
        self.blocks_fetched = 0
        self.bytes_fetched = 0

    def __enter__(self) -> "Session":
        self.engine.sessions.add(self)
        return self

    def __exit__(self, *exc) -> None:
        self.engine.sessions.discard(self)

    # --- called by the engine ----------------------------------------------------------

    def add_peer(self, peer: ID) -> None:
        if peer not in self.excluded and peer not in self.peers:
            self.peers.append(peer)

    def delivered_by(self, peer: ID) -> None:
        self.add_peer(peer)

    def exclude(self, peer: ID) -> None:
        self.excluded.add(peer)
        self.drop_peer(peer)

    def drop_peer(self, peer: ID) -> None:
        if peer in self.peers:
            self.peers.remove(peer)

    # --- fetching ------------------------------------------------------------------------

    async def get(self, cid: bytes) -> bytes:
        """The verified block (local if present, else from the network; stored locally).

        BlockNotFound if no provider delivered it within `timeout_s`.
        """
        async with self._limit:
            local = await self.engine.blocks.get(cid)
            if local is not None:
                return local
            want = self.engine.want(cid, self)
            mine: set[ID] = set()
            try:
                with trio.move_on_after(self.timeout_s):
                    data = await self._fetch(want, mine)
                    self.blocks_fetched += 1
                    self.bytes_fetched += len(data)
                    return data
                raise BlockNotFound(self._not_found_message(want))
            finally:
                for peer in mine:
                    self.inflight[peer] -= 1
                self.engine.release(want, self)

    def _not_found_message(self, want: Want) -> str:
        cid = str(CID.parse(want.cid))
        asked = len(want.sent) + len(want.dont_haves)
        return (
            f"block {cid} not found within {self.timeout_s:g} s (asked {asked} peer(s), "
            f"{len(want.dont_haves)} said they do not have it); connect to a peer that has the content "
            f"or raise store.fetch_timeout_s"
        )

    def _sync(self, want: Want, mine: set[ID]) -> None:
        for peer in list(mine):
            if peer not in want.pending_block:
                mine.discard(peer)
                self.inflight[peer] -= 1

    async def _fetch(self, want: Want, mine: set[ID]) -> bytes:
        engine = self.engine
        tried: set[ID] = set()  # asked for the block and failed to deliver in time
        hinted: set[ID] = set()  # asked for the block on a hunch (likely_provider), before anyone said HAVE
        if not want.sent and not self.peers:
            hint = engine.likely_provider(self.excluded | want.dont_haves)
            if hint is not None:
                engine.send_want(hint, want, block=True)
                hinted.add(hint)
                mine.add(hint)
                self.inflight[hint] += 1
        while not want.done.is_set():
            changed = want.changed
            self._sync(want, mine)
            now = trio.current_time()
            # a hunch is asked alongside, never instead of, the usual search (its block is taken if it comes)
            live = [p for p, t in want.pending_block.items() if now - t < PEER_TIMEOUT_S and p not in self.excluded
                    and p not in hinted]
            for p, t in list(want.pending_block.items()):
                if now - t >= PEER_TIMEOUT_S:
                    tried.add(p)
            wait = PEER_TIMEOUT_S
            if not live:
                candidates = [
                    p
                    for p in want.haves + self.peers
                    if p not in self.excluded and p not in want.dont_haves and p not in tried
                ]
                if candidates:
                    peer = min(candidates, key=lambda p: self.inflight[p])
                    engine.send_want(peer, want, block=True)
                    if peer not in mine:
                        mine.add(peer)
                        self.inflight[peer] += 1
                else:
                    # want.sent forgets a peer whose stream broke, so it is asked again; a peer that never
                    # answered a HAVE question is asked again too (the question or its answer was lost with a
                    # connection, e.g. the peer restarted)
                    targets = [
                        p
                        for p in engine.connected_peers()
                        if (p not in want.sent or self._unanswered(want, p, now))
                        and p not in self.excluded and p not in want.dont_haves
                    ]
                    for p in targets:
                        engine.send_want(p, want, block=False)
                    if not targets and not self._awaiting(want, now):
                        self._maybe_discover(want)
                        tried.clear()  # nobody new: give earlier (slow) providers another chance
                    wait = REBROADCAST_S
            with trio.move_on_after(wait):
                await changed.wait()
        assert want.data is not None
        return want.data

    @staticmethod
    def _unanswered(want: Want, peer: ID, now: float) -> bool:
        return (want.sent.get(peer) == "have" and peer not in want.haves
                and now - want.asked.get(peer, now) >= PEER_TIMEOUT_S)

    def _awaiting(self, want: Want, now: float) -> bool:
        """A connected peer may still answer: a block asked of it (the hunch included) within PEER_TIMEOUT_S, or a
        HAVE question within HAVE_ANSWER_S. Without this, the instant DONT_HAVEs of the peers that lack a block woke
        the loop before the hunch's block arrived, and every fetch cost a DHT provider lookup (dozens of queries
        across the network)."""
        if any(now - t < PEER_TIMEOUT_S for p, t in want.pending_block.items() if p not in self.excluded):
            return True
        return any(kind == "have" and p not in want.haves and p not in want.dont_haves and p not in self.excluded
                   and now - want.asked.get(p, now) < HAVE_ANSWER_S for p, kind in want.sent.items())

    def _maybe_discover(self, want: Want) -> None:
        if self.engine.find_providers is None or self._discovering:
            return
        now = trio.current_time()
        if now - self._last_discovery < DISCOVERY_INTERVAL_S:
            return
        self._last_discovery = now
        self._discovering = True
        self.engine.spawn(self._discover, want)

    async def _discover(self, want: Want) -> None:
        """Connected peers had nothing: look the block up on the DHT and dial the providers."""
        try:
            mh = wire.parse_cid_bytes(want.cid).multihash
            self.engine.stats.provider_lookups += 1
            providers = await self.engine.find_providers(mh)
            self.engine.stats.providers_found += len(providers)
            connected = set(self.engine.connected_peers())
            for info in providers:
                if info.peer_id in self.excluded:
                    continue
                if info.peer_id not in connected and self.engine.connect is not None:
                    try:
                        await self.engine.connect(info)
                    except (P2PError, OSError, trio.TooSlowError) as exc:
                        log.debug("bitswap: cannot dial provider %s: %s", info.peer_id, exc)
                        continue
                want.signal()
        except Exception as exc:  # routing trouble must not kill the engine; the fetch times out instead
            log.info("bitswap: provider lookup failed: %s: %s", type(exc).__name__, exc)
        finally:
            self._discovering = False
