"""Contract event watcher: cursor on disk, confirmations, reorg detection by parent hash, ws heads or polling."""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from dainode.chain.contracts import ContractSet, Event
from dainode.chain.rpc import RpcClient, decode_reply, to_int
from dainode.errors import ChainError
from dainode.fsutil import atomic_write

log = logging.getLogger("dainode.chain")

CURSOR_VERSION = 1
REORG_WINDOW = 128  # blocks whose hashes (and logs) are remembered to detect and undo reorgs
CHUNK = 256  # blocks per step near the head (every header is fetched to chain parent hashes)
DEEP_CHUNK = 2000  # blocks per eth_getLogs step far below the head (within common endpoint range limits)


def ws_url_for(endpoint: str) -> str | None:
    """The websocket URL next to an HTTP endpoint (anvil and geth serve both on one port)."""
    if endpoint.startswith("http://"):
        return "ws://" + endpoint[len("http://"):]
    if endpoint.startswith("https://"):
        return "wss://" + endpoint[len("https://"):]
    if endpoint.startswith(("ws://", "wss://")):
        return endpoint
    return None


class Cursor:
    """The last processed blocks (number, hash, raw logs) — in the node's State (consumer `key`), or
    atomically as a JSON file at `path` for users without a State."""

    def __init__(self, path: Path | None, *, state=None, key: str = "chain.watcher"):
        self.path = Path(path) if path else None
        self.state = state
        self.key = key
        self.recent: list[tuple[int, str, list[dict]]] = []

    @property
    def block(self) -> int | None:
        return self.recent[-1][0] if self.recent else None

    @property
    def hash(self) -> str | None:
        return self.recent[-1][1] if self.recent else None

    def load(self) -> bool:
        if self.state is not None:
            cur = self.state.get_cursor(self.key)
            if cur is None:
                return False
            try:
                self.recent = [(int(n), str(h), list(logs)) for n, h, logs in cur.doc["recent"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise ChainError(f"event cursor {self.key!r} in the node's state is damaged ({exc})") from None
            return True
        if self.path is None or not self.path.exists():
            return False
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("version") != CURSOR_VERSION:
                raise ValueError(f"unknown cursor version {doc.get('version')!r}")
            self.recent = [(int(n), str(h), list(logs)) for n, h, logs in doc["recent"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ChainError(f"event cursor {self.path} is damaged ({exc}); delete it to rescan from the deployment block") from None
        return True

    def save(self) -> None:
        if self.state is not None:
            from dainode.state import Cursor as StateCursor

            doc = {"version": CURSOR_VERSION, "recent": [list(r) for r in self.recent]}
            self.state.set_cursor(StateCursor(self.key, self.block if self.block is not None else -1, self.hash or "", doc))
            return
        if self.path is None:
            return
        doc = {"version": CURSOR_VERSION, "block": self.block, "hash": self.hash, "recent": [list(r) for r in self.recent]}
        atomic_write(self.path, json.dumps(doc, separators=(",", ":")).encode("utf-8"), mode=0o600)

    def push(self, number: int, block_hash: str, logs: list[dict]) -> None:
        self.recent.append((number, block_hash, logs))
        del self.recent[:-REORG_WINDOW]

    def truncate_after(self, number: int) -> list[tuple[int, str, list[dict]]]:
        dropped = [r for r in self.recent if r[0] > number]
        self.recent = [r for r in self.recent if r[0] <= number]
        return dropped


class EventWatcher:
    """Delivers decoded contract events to subscribers, in chain order, at least once.

    The cursor advances only after a block's events were handed over, so a crash
    re-delivers rather than loses. A reorg (a new block whose parentHash is not the stored
    hash, or a stored hash that is no longer canonical) delivers the orphaned events again
    with `removed=True`, newest first, then the events of the new canonical blocks.
    """

    def __init__(
        self,
        rpc: RpcClient,
        contracts: ContractSet,
        *,
        cursor_path: Path | None,
        state=None,
        cursor_key: str = "chain.watcher",
        start_block: int = 0,
        confirmations: int = 0,
        poll_interval_s: float = 1.0,
        ws_url: str | None = None,
        backoff_max_s: float = 30.0,
    ):
        self.rpc = rpc
        self.contracts = contracts
        self.cursor = Cursor(cursor_path, state=state, key=cursor_key)
        self.start_block = start_block
        self.confirmations = confirmations
        self.poll_interval_s = poll_interval_s
        self.ws_url = ws_url
        self.backoff_max_s = backoff_max_s
        self.head: int | None = None
        self.ws_connected = False
        self.reorgs = 0
        self.delivered = 0
        self.errors = 0
        self._subs: list[tuple[str | None, trio.MemorySendChannel]] = []
        self._heads: deque[dict] = deque(maxlen=64)  # headers from the websocket, not processed yet
        self.fast_heads = 0  # blocks processed from a websocket header with one eth_getLogs
        self._wake = trio.Event()
        self._synced = trio.Condition()

    # --- subscriptions -------------------------------------------------------------------

    def subscribe(self, contract: str | None = None, *, buffer: int = 1024) -> trio.MemoryReceiveChannel:
        """A channel of Event objects (optionally of one contract). Close it to unsubscribe.
        A full buffer makes the watcher wait (back-pressure), it never drops events."""
        send, recv = trio.open_memory_channel(buffer)
        self._subs.append((contract, send))
        return recv

    async def _deliver(self, event: Event) -> None:
        self.delivered += 1
        for entry in list(self._subs):
            name, chan = entry
            if name is not None and name != event.contract:
                continue
            try:
                await chan.send(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subs.remove(entry)

    # --- running -------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if not self.cursor.load():
            log.info("event watcher starts at block %d (no cursor yet)", self.start_block)
        async with trio.open_nursery() as nursery:
            if self.ws_url:
                nursery.start_soon(self._ws_heads)
            task_status.started()
            await self._sync_loop()

    async def _sync_loop(self) -> None:
        backoff = 0.2
        while True:
            self._wake = trio.Event()
            try:
                if not await self._apply_heads():
                    await self.sync_once()
                backoff = 0.2
            except (ChainError, KeyError, TypeError, ValueError) as exc:
                # KeyError/TypeError/ValueError: a malformed reply from the endpoint; it is not
                # trusted, so it must not take the node down — retry as after an outage.
                self.errors += 1
                log.warning("event watcher: %s: %s; retrying in %.1f s from block %s", type(exc).__name__, exc, backoff, self.cursor.block)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            # With a live head subscription, polling is only a safety net.
            interval = max(self.poll_interval_s * 5, 5.0) if self.ws_connected else self.poll_interval_s
            with trio.move_on_after(interval):
                await self._wake.wait()

    def poke(self) -> None:
        """Sync now (e.g. after sending a transaction)."""
        self._wake.set()

    async def wait_synced(self, block: int) -> None:
        """Wait until every block up to `block` has been processed."""
        async with self._synced:
            while self.cursor.block is None or self.cursor.block < block:
                self.poke()
                await self._synced.wait()

    async def _ws_heads(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with open_websocket_url(self.ws_url, connect_timeout=5, disconnect_timeout=1) as ws:
                    await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
                    reply = decode_reply(await ws.get_message(), what="eth_subscribe reply")
                    if "error" in reply:
                        log.info("endpoint refuses eth_subscribe (%s); polling every %.1f s", reply["error"], self.poll_interval_s)
                        return
                    self.ws_connected = True
                    backoff = 0.5
                    log.debug("subscribed to new heads over %s", self.ws_url)
                    self.poke()  # catch up on anything mined while we were away
                    while True:
                        msg = decode_reply(await ws.get_message(), what="websocket message")
                        head = (msg.get("params") or {}).get("result") or {}
                        if "number" in head:
                            self.head = to_int(head["number"])
                            self._heads.append(head)
                        self.poke()
            except (
                OSError, HandshakeError, ConnectionClosed, ValueError, AttributeError, TypeError, ChainError, trio.TooSlowError,
                trio.BrokenResourceError, trio.ClosedResourceError,
            ) as exc:
                if self.ws_connected:
                    log.info("head subscription lost (%s); polling until it is back", type(exc).__name__)
            finally:
                self.ws_connected = False
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    # --- one synchronisation step -----------------------------------------------------------

    async def _apply_heads(self) -> bool:
        """Process websocket headers that chain onto the cursor, one eth_getLogs (by block hash) each, instead of
        sync_once's head number + canonical check + header range. False when a full sync_once is needed: a
        poke without a header, a gap, a header on another parent (reorg), confirmations to wait for."""
        if not self._heads:
            return False
        while self._heads:
            head = self._heads.popleft()
            try:
                number, block_hash, parent = to_int(head["number"]), str(head["hash"]), str(head["parentHash"])
            except (KeyError, TypeError, ValueError):
                self._heads.clear()
                return False
            known = {n: h for n, h, _ in self.cursor.recent}
            if known.get(number) == block_hash:
                continue  # processed already (a sync after our own transaction got there first)
            if self.confirmations or self.cursor.block is None or number != self.cursor.block + 1 or parent != self.cursor.hash:
                self._heads.clear()
                return False
            if not await self._process_head(number, block_hash):
                self._heads.clear()
                return False
        async with self._synced:
            self._synced.notify_all()
        return True

    async def _process_head(self, number: int, block_hash: str) -> bool:
        addresses = [c.address for c in self.contracts.contracts.values() if c.address]
        logs = await self.rpc.call("eth_getLogs", {"blockHash": block_hash, "address": addresses}) if addresses else []
        logs = logs or []
        if any(lg.get("blockHash") != block_hash or to_int(lg.get("blockNumber", "0x0")) != number for lg in logs):
            return False  # the endpoint answered for another block: let sync_once sort it out
        block_logs = sorted(logs, key=lambda e: to_int(e["logIndex"]))
        for raw in block_logs:
            event = self.contracts.decode_log(raw)
            if event is not None:
                await self._deliver(event)
        self.cursor.push(number, block_hash, block_logs)
        self.cursor.save()
        self.fast_heads += 1
        return True

    async def sync_once(self) -> int:
        """Process what is new (reorgs first). Returns the number of events delivered."""
        delivered_before = self.delivered
        head = to_int(await self.rpc.call("eth_blockNumber"))
        self.head = head
        target = head - self.confirmations
        if self.cursor.block is not None and not await self._still_canonical():
            await self._handle_reorg()
        inconsistent = 0
        while True:
            last = self.cursor.block
            first = self.start_block if last is None else last + 1
            if first > target:
                break
            deep_end = target - REORG_WINDOW
            if first <= deep_end:
                # Catching up on old history (a fresh node on a long chain): blocks this deep
                # are final in practice, so fetch only their logs and the range's last header.
                await self._process_deep(first, min(deep_end, first + DEEP_CHUNK - 1))
                continue
            upto = min(target, first + CHUNK - 1)
            if not await self._process_range(first, upto):
                inconsistent += 1
                if inconsistent >= 3:
                    # e.g. a load balancer mixing nodes at different heights: back off, don't spin
                    raise ChainError(f"the endpoint keeps returning headers and logs that do not chain onto block {last}")
                await self._handle_reorg()
                continue
        async with self._synced:
            self._synced.notify_all()
        return self.delivered - delivered_before

    async def _still_canonical(self) -> bool:
        header = await self.rpc.call("eth_getBlockByNumber", hex(self.cursor.block), False)
        return header is not None and header["hash"] == self.cursor.hash

    async def _process_range(self, first: int, upto: int) -> bool:
        """Fetch headers and logs of [first, upto]; False if they do not chain onto the cursor."""
        calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", [hex(n), False]) for n in range(first, upto + 1)]
        addresses = [c.address for c in self.contracts.contracts.values() if c.address]
        if addresses:  # an empty address list would mean "every contract" to some endpoints
            calls.append(("eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(upto), "address": addresses}]))
        results = await self.rpc.batch(calls)
        headers, logs = (results[:-1], results[-1]) if addresses else (results, [])
        prev_hash = self.cursor.hash
        for h in headers:
            if h is None:
                return False  # the chain got shorter under us
            if prev_hash is not None and h["parentHash"] != prev_hash:
                return False
            prev_hash = h["hash"]
        by_hash: dict[str, list[dict]] = {h["hash"]: [] for h in headers}
        for entry in logs or []:
            if entry.get("blockHash") not in by_hash:
                return False  # logs from a block that is not in our header chain: reorg in between
            by_hash[entry["blockHash"]].append(entry)
        for h in headers:
            block_logs = sorted(by_hash[h["hash"]], key=lambda e: to_int(e["logIndex"]))
            for raw in block_logs:
                event = self.contracts.decode_log(raw)
                if event is not None:
                    await self._deliver(event)
            self.cursor.push(to_int(h["number"]), h["hash"], block_logs)
        self.cursor.save()
        return True

    async def _process_deep(self, first: int, upto: int) -> None:
        addresses = [c.address for c in self.contracts.contracts.values() if c.address]
        calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", [hex(upto), False])]
        if addresses:
            calls.append(("eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(upto), "address": addresses}]))
        results = await self.rpc.batch(calls)
        header, logs = results[0], (results[1] if addresses else [])
        if header is None:
            raise ChainError(f"the endpoint has no block {upto} although its head is beyond it")
        logs = sorted(logs or [], key=lambda e: (to_int(e["blockNumber"]), to_int(e["logIndex"])))
        for raw in logs:
            event = self.contracts.decode_log(raw)
            if event is not None:
                await self._deliver(event)
        self.cursor.recent = []  # the range end becomes the anchor the next blocks must chain onto
        self.cursor.push(upto, header["hash"], [lg for lg in logs if to_int(lg["blockNumber"]) == upto])
        self.cursor.save()

    async def _handle_reorg(self) -> None:
        """Find the newest remembered block that is still canonical; un-deliver everything after it."""
        if not self.cursor.recent:
            return
        numbers = [n for n, _, _ in self.cursor.recent]
        headers = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        canonical = {n: (h["hash"] if h else None) for n, h in zip(numbers, headers)}
        ancestor: int | None = None
        for n, stored_hash, _ in reversed(self.cursor.recent):
            if canonical.get(n) == stored_hash:
                ancestor = n
                break
        if ancestor is None:
            ancestor = numbers[0] - 1
            log.error("reorg deeper than the %d remembered blocks; rescanning from block %d", REORG_WINDOW, ancestor + 1)
        dropped = self.cursor.truncate_after(ancestor)
        if not dropped:
            return
        self.reorgs += 1
        log.warning("chain reorganised: %d block(s) after %d replaced; re-delivering their events", len(dropped), ancestor)
        for _, _, block_logs in reversed(dropped):
            for raw in reversed(block_logs):
                event = self.contracts.decode_log({**raw, "removed": True})
                if event is not None:
                    await self._deliver(event)
        if self.cursor.recent:
            self.cursor.save()
        else:
            self.start_block = ancestor + 1
            self.cursor.save()

