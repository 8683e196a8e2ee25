"""Role-facing event subscriptions: backfill from a durable per-consumer cursor with eth_getLogs, then live."""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, Iterable

import trio
from dainode.chain.contracts import ContractSet, Event
from dainode.chain.rpc import RpcClient, to_int
from dainode.errors import ChainError

log = logging.getLogger("dainode.chain")

LOG_CHUNK = 2000  # blocks per eth_getLogs call (within common endpoint range limits)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if isinstance(a, (bytes, bytearray)) and isinstance(b, str):
        return "0x" + bytes(a).hex() == b.lower()
    return a == b


class EventSubscription:
    """Events of one contract (optionally some event names and indexed-argument values) for one consumer.

    At least once across restarts: the consumer's cursor (State.get_cursor(consumer)) moves
    past a block only when the consumer came back for more after every event of that block,
    so a crash re-delivers the last block's events (consumers must be idempotent).
    Reorged-out events arrive again with `removed=True`.
    """

    def __init__(
        self, rpc: RpcClient, contracts: ContractSet, watcher, state, consumer: str, contract: str, *,
        events: Iterable[str] | None = None, args: dict[str, Any] | None = None, start_block: int = 0, confirmations: int = 0,
    ):
        self.rpc = rpc
        self.watcher = watcher
        self.state = state
        self.consumer = consumer
        self.contract = contracts[contract]
        if not self.contract.address:
            raise ChainError(f"{contract} has no deployed address; cannot subscribe to its events")
        by_name = {item["name"]: topic for topic, item in self.contract.events.items()}
        self.events = None if events is None else set(events)
        for name in self.events or ():
            if name not in by_name:
                raise ChainError(f"{contract} has no event {name!r}; its events: {', '.join(sorted(by_name))}")
        self.topics = [("0x" + by_name[n].hex()) for n in sorted(self.events)] if self.events else None
        self.args = dict(args or {})
        self.start_block = start_block
        self.confirmations = confirmations
        self._live: trio.MemoryReceiveChannel | None = None
        self._backfill: deque[Event] = deque()
        self._backfill_to = -1
        self._last: Event | None = None
        self._cursor = -1
        self.delivered = 0

    # --- filtering and cursor -----------------------------------------------------------

    def matches(self, ev: Event) -> bool:
        if ev.contract != self.contract.name or (self.events is not None and ev.name not in self.events):
            return False
        return all(name in ev.args and _same(ev.args[name], want) for name, want in self.args.items())

    def _load_cursor(self) -> int:
        if self.state is not None:
            cur = self.state.get_cursor(self.consumer)
            if cur is not None:
                return cur.block
        return self.start_block - 1

    def _save_cursor(self, block: int) -> None:
        if block <= self._cursor:
            return
        self._cursor = block
        if self.state is not None:
            from dainode.state import Cursor

            self.state.set_cursor(Cursor(self.consumer, block))

    @property
    def cursor(self) -> int:
        return self._cursor

    # --- opening: live first, then backfill ----------------------------------------------

    async def open(self) -> "EventSubscription":
        # Registered before the backfill range is fixed, so nothing falls between the two.
        self._live = self.watcher.subscribe(self.contract.name, buffer=math.inf)
        self._cursor = self._load_cursor()
        head = to_int(await self.rpc.call("eth_blockNumber"))
        self._backfill_to = head - self.confirmations
        first = self._cursor + 1
        while first <= self._backfill_to:
            upto = min(self._backfill_to, first + LOG_CHUNK - 1)
            flt: dict[str, Any] = {"fromBlock": hex(first), "toBlock": hex(upto), "address": self.contract.address}
            if self.topics:
                flt["topics"] = [self.topics]
            raw = await self.rpc.call("eth_getLogs", flt) or []
            raw.sort(key=lambda e: (to_int(e["blockNumber"]), to_int(e["logIndex"])))
            for entry in raw:
                ev = self.contract.decode_log(entry)
                if ev is not None and self.matches(ev):
                    self._backfill.append(ev)
            first = upto + 1
        log.debug("subscription %s: %d backfilled events from block %d to %d", self.consumer, len(self._backfill), self._cursor + 1, self._backfill_to)
        return self

    async def aclose(self) -> None:
        if self._live is not None:
            await self._live.aclose()

    async def __aenter__(self) -> "EventSubscription":
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __aiter__(self):
        return self

    async def __anext__(self) -> Event:
        if self._live is None:
            raise ChainError("open the subscription first (async with chain.subscribe(...) as sub)")
        # Everything returned so far was handled (the consumer came back for more).
        if self._last is not None:
            self._save_cursor(self._last.block_number - 1)
        while True:
            if self._backfill:
                ev = self._backfill.popleft()
            else:
                # Backfill done and handled: every matching event up to its end was seen.
                if self._last is None or self._last.block_number <= self._backfill_to:
                    self._save_cursor(self._backfill_to)
                try:
                    ev = self._live.receive_nowait()
                except trio.WouldBlock:
                    if self._last is not None:
                        self._save_cursor(self._last.block_number)
                    watched = self.watcher.cursor.block
                    if watched is not None and (self._last is None or watched >= self._last.block_number):
                        self._save_cursor(watched)  # the watcher already stays `confirmations` behind the head
                    try:
                        ev = await self._live.receive()
                    except (trio.EndOfChannel, trio.ClosedResourceError):
                        raise StopAsyncIteration from None
                if ev.block_number <= self._backfill_to and not ev.removed:
                    continue  # already delivered by the backfill
                if not self.matches(ev):
                    continue
            if self._last is not None and ev.block_number > self._last.block_number and not ev.removed:
                self._save_cursor(self._last.block_number)
            self._last = ev
            self.delivered += 1
            return ev
