"""Event watcher logic on an in-memory chain: cursor persistence, confirmations, reorg re-delivery."""

from __future__ import annotations

import json

import eth_abi
import pytest
import trio
from eth_utils import keccak

from dainode.chain.contracts import load_contracts
from dainode.chain.watcher import REORG_WINDOW, Cursor, EventWatcher
from dainode.errors import ChainError

REGISTRY = "0x" + "11" * 20
CONTRACTS = load_contracts().with_addresses({"Registry": REGISTRY})
ITEM = next(i for i in CONTRACTS["Registry"].abi if i.get("name") == "OfferWithdrawn")
TOPIC0 = "0x" + keccak(text="OfferWithdrawn(uint256)").hex()


def withdrawn_log(offer_id: int) -> dict:
    indexed = [i for i in ITEM["inputs"] if i["indexed"]]
    topics = [TOPIC0] + (["0x" + eth_abi.encode(["uint256"], [offer_id]).hex()] if indexed else [])
    data = "0x" if indexed else "0x" + eth_abi.encode(["uint256"], [offer_id]).hex()
    return {"address": REGISTRY, "topics": topics, "data": data}


class FakeChain:
    """Blocks as (hash, parent, [offer ids]); answers the calls the watcher makes."""

    def __init__(self):
        self.blocks: list[tuple[str, str, list[int]]] = [("0x" + "00" * 31 + "01", "0x" + "00" * 32, [])]
        self.salt = 0
        self.calls: list[str] = []

    def mine(self, *offer_ids: int) -> None:
        self.salt += 1
        parent = self.blocks[-1][0]
        self.blocks.append(("0x" + keccak(f"{parent}{self.salt}".encode()).hex(), parent, list(offer_ids)))

    def reorg(self, depth: int, *new_blocks: list[int]) -> None:
        del self.blocks[-depth:]
        for ids in new_blocks:
            self.mine(*ids)

    def _header(self, n: int):
        if n >= len(self.blocks):
            return None
        h, parent, _ = self.blocks[n]
        return {"number": hex(n), "hash": h, "parentHash": parent}

    def _logs(self, first: int, last: int) -> list[dict]:
        out = []
        for n in range(first, min(last, len(self.blocks) - 1) + 1):
            h, _, ids = self.blocks[n]
            for idx, offer in enumerate(ids):
                out.append({**withdrawn_log(offer), "blockNumber": hex(n), "blockHash": h, "transactionHash": "0x" + f"{offer:064x}", "logIndex": hex(idx)})
        return out

    async def call(self, method, *params):
        self.calls.append(method)
        if method == "eth_blockNumber":
            return hex(len(self.blocks) - 1)
        if method == "eth_getBlockByNumber":
            return self._header(int(params[0], 16))
        if method == "eth_getLogs":
            f = params[0]
            if "blockHash" in f:  # EIP-234: the logs of one block, by hash
                n = next((i for i, b in enumerate(self.blocks) if b[0] == f["blockHash"]), None)
                return [] if n is None else self._logs(n, n)
            return self._logs(int(f["fromBlock"], 16), int(f["toBlock"], 16))
        raise AssertionError(method)

    async def batch(self, calls, raise_errors=True):
        return [await self.call(m, *p) for m, p in calls]


def drain(chan) -> list[tuple[int, bool]]:
    out = []
    while True:
        try:
            ev = chan.receive_nowait()
        except Exception:
            return out
        out.append((ev.args["offerId"], ev.removed))


async def test_delivers_once_and_resumes_from_the_persisted_cursor(tmp_path):
    chain = FakeChain()
    chain.mine(1, 2)
    chain.mine()
    chain.mine(3)
    path = tmp_path / "cursor.json"
    w = EventWatcher(chain, CONTRACTS, cursor_path=path, start_block=1)
    chan = w.subscribe()
    assert await w.sync_once() == 3 and drain(chan) == [(1, False), (2, False), (3, False)]
    assert await w.sync_once() == 0
    doc = json.loads(path.read_text())
    assert doc["block"] == 3 and doc["hash"] == chain.blocks[3][0]

    chain.mine(4)
    resumed = EventWatcher(chain, CONTRACTS, cursor_path=path, start_block=1)
    chan2 = resumed.subscribe()
    assert resumed.cursor.load()
    await resumed.sync_once()
    assert drain(chan2) == [(4, False)]


async def test_confirmations_hold_back_recent_blocks():
    chain = FakeChain()
    chain.mine(1)
    chain.mine(2)
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1, confirmations=1)
    chan = w.subscribe()
    await w.sync_once()
    assert drain(chan) == [(1, False)]
    chain.mine()
    await w.sync_once()
    assert drain(chan) == [(2, False)]


async def test_reorg_removes_orphaned_events_newest_first_then_adds_the_new_branch():
    chain = FakeChain()
    chain.mine(1)
    chain.mine(2)
    chain.mine(3, 4)
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1)
    chan = w.subscribe()
    await w.sync_once()
    drain(chan)
    chain.reorg(2, [5], [], [6])  # blocks 2 and 3 replaced; chain grows to 4
    await w.sync_once()
    assert drain(chan) == [(4, True), (3, True), (2, True), (5, False), (6, False)]
    assert w.reorgs == 1 and w.cursor.block == 4 and w.cursor.hash == chain.blocks[4][0]


async def test_reorg_to_a_shorter_chain_is_detected_without_new_blocks():
    chain = FakeChain()
    chain.mine(1)
    chain.mine(2)
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1)
    chan = w.subscribe()
    await w.sync_once()
    drain(chan)
    chain.reorg(1)
    await w.sync_once()
    assert drain(chan) == [(2, True)] and w.cursor.block == 1


async def test_cursor_keeps_a_bounded_window_and_rejects_damage(tmp_path):
    c = Cursor(tmp_path / "c.json")
    for n in range(REORG_WINDOW + 10):
        c.push(n, f"0x{n:x}", [])
    c.save()
    again = Cursor(tmp_path / "c.json")
    assert again.load() and len(again.recent) == REORG_WINDOW and again.block == REORG_WINDOW + 9
    (tmp_path / "c.json").write_text('{"version": 1, "recent": [[1]]}')
    with pytest.raises(ChainError, match="damaged"):
        Cursor(tmp_path / "c.json").load()
    assert not Cursor(tmp_path / "absent.json").load()


async def test_malformed_replies_and_outages_are_retried_not_fatal():
    import trio

    chain = FakeChain()
    chain.mine(1)
    real_call = chain.call
    bad = {"n": 3}

    async def flaky(method, *params):
        if method == "eth_getBlockByNumber" and bad["n"] > 0:
            bad["n"] -= 1
            return {"number": params[0]} if bad["n"] % 2 else "not a header"  # missing fields, then a wrong type
        return await real_call(method, *params)

    chain.call = flaky
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1, poll_interval_s=0.01, backoff_max_s=0.01)
    chan = w.subscribe()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            await n.start(w.run)
            ev = await chan.receive()
            n.cancel_scope.cancel()
    assert ev.args["offerId"] == 1 and w.errors >= 1


async def test_deep_history_is_caught_up_with_range_queries_not_per_block_headers():
    chain = FakeChain()
    for n in range(1, REORG_WINDOW + 500):
        chain.mine(*([n] if n % 50 == 0 else []))
    header_calls = []
    real_call = chain.call

    async def counting(method, *params):
        if method == "eth_getBlockByNumber":
            header_calls.append(int(params[0], 16))
        return await real_call(method, *params)

    chain.call = counting
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1)
    chan = w.subscribe()
    await w.sync_once()
    head = len(chain.blocks) - 1
    assert [i for i, _ in drain(chan)] == [n for n in range(1, head + 1) if n % 50 == 0]
    assert w.cursor.block == head
    # per-block headers only for the last REORG_WINDOW blocks (+ the deep range's anchor)
    assert len(header_calls) <= REORG_WINDOW + 3
    # and reorgs near the head are still handled after a deep catch-up
    chain.reorg(2, [9001], [9002])
    await w.sync_once()
    assert drain(chan) == [(9001, False), (9002, False)] and w.reorgs == 1


async def test_an_endpoint_whose_logs_never_match_its_headers_is_an_error_not_a_spin():
    chain = FakeChain()
    chain.mine(1)
    real_call = chain.call

    async def lying(method, *params):
        result = await real_call(method, *params)
        if method == "eth_getLogs":
            return [{**lg, "blockHash": "0x" + "ee" * 32} for lg in result]
        return result

    chain.call = lying
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1)
    with pytest.raises(ChainError, match="do not chain"):
        await w.sync_once()


# --- role-facing subscriptions: durable per-consumer cursor, backfill then live ------------


async def _take(sub, n):
    out = []
    with trio.fail_after(5):
        for _ in range(n):
            ev = await sub.__anext__()
            out.append((ev.args["offerId"], ev.removed))
    return out


async def test_late_subscriber_gets_backfill_then_live_and_resumes_from_its_cursor():
    from dainode.chain.subscribe import EventSubscription
    from dainode.state import open_state

    chain = FakeChain()
    state = open_state(None)
    chain.mine(1, 2)
    chain.mine(3)
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, state=state, start_block=1)
    await w.sync_once()  # the watcher is past these events before anyone subscribes
    sub = EventSubscription(chain, CONTRACTS, w, state, "offers", "Registry", events=["OfferWithdrawn"], start_block=1)
    await sub.open()
    assert await _take(sub, 3) == [(1, False), (2, False), (3, False)]
    chain.mine(4)
    await w.sync_once()
    assert await _take(sub, 1) == [(4, False)]
    chain.mine()
    await w.sync_once()
    with trio.move_on_after(0.2):
        await sub.__anext__()  # nothing more; coming back marks everything handled
    assert state.get_cursor("offers").block == 4  # the newest block, although it had no event
    await sub.aclose()
    # restart: a new subscription for the same consumer starts after its cursor; another consumer from the start
    chain.mine(5)
    again = EventSubscription(chain, CONTRACTS, w, state, "offers", "Registry", start_block=1)
    await again.open()
    assert await _take(again, 1) == [(5, False)]
    other = EventSubscription(chain, CONTRACTS, w, state, "index", "Registry", args={"offerId": 3}, start_block=1)
    await other.open()
    assert await _take(other, 1) == [(3, False)]
    assert state.get_cursor("chain.watcher").block == 4  # the watcher's own cursor is in State too


async def test_an_event_being_handled_at_a_crash_is_delivered_again():
    from dainode.chain.subscribe import EventSubscription
    from dainode.state import open_state

    chain = FakeChain()
    state = open_state(None)
    chain.mine(1)
    chain.mine(2)
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1)
    sub = EventSubscription(chain, CONTRACTS, w, state, "c", "Registry", start_block=1)
    await sub.open()
    assert await _take(sub, 2) == [(1, False), (2, False)]  # crash while handling offer 2
    again = EventSubscription(chain, CONTRACTS, w, state, "c", "Registry", start_block=1)
    await again.open()
    assert await _take(again, 1) == [(2, False)]


async def test_unknown_event_names_are_refused():
    from dainode.chain.subscribe import EventSubscription

    with pytest.raises(ChainError, match="no event 'Nope'"):
        EventSubscription(FakeChain(), CONTRACTS, None, None, "c", "Registry", events=["Nope"])


async def test_a_websocket_header_on_top_of_the_cursor_costs_one_log_query():
    chain = FakeChain()
    chain.mine(1)
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1)
    chan = w.subscribe()
    await w.sync_once()
    drain(chan)
    chain.mine(2, 3)
    chain.mine(4)
    w._heads.extend(chain._header(n) for n in (2, 3))
    chain.calls.clear()
    assert await w._apply_heads()
    assert drain(chan) == [(2, False), (3, False), (4, False)] and chain.calls == ["eth_getLogs", "eth_getLogs"]
    assert w.cursor.block == 3 and w.fast_heads == 2
    w._heads.append(chain._header(3))  # already processed (e.g. by a sync after our own tx): nothing to do
    chain.calls.clear()
    assert await w._apply_heads() and chain.calls == [] and drain(chan) == []


async def test_a_websocket_header_on_another_parent_falls_back_to_a_full_sync_that_handles_the_reorg():
    chain = FakeChain()
    chain.mine(1)
    chain.mine(2)
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1)
    chan = w.subscribe()
    await w.sync_once()
    drain(chan)
    chain.reorg(1, [5], [6])  # block 2 replaced; the header of block 3 does not chain onto our block 2
    w._heads.append(chain._header(3))
    assert not await w._apply_heads() and drain(chan) == []
    await w.sync_once()
    assert drain(chan) == [(2, True), (5, False), (6, False)]


async def test_websocket_headers_are_not_used_while_confirmations_hold_blocks_back():
    chain = FakeChain()
    chain.mine(1)
    w = EventWatcher(chain, CONTRACTS, cursor_path=None, start_block=1, confirmations=1)
    chan = w.subscribe()
    chain.mine(2)
    await w.sync_once()
    assert drain(chan) == [(1, False)]
    chain.mine()
    w._heads.append(chain._header(2))
    assert not await w._apply_heads() and drain(chan) == []  # block 2 is not 1 deep yet by the header alone
