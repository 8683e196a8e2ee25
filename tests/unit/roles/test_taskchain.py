"""TaskChain waits out an unreachable chain: reads and journaled sends retry with backoff (bounded); others do not."""

from __future__ import annotations

import logging

import pytest
import trio

from dainode.errors import ChainRpcError, ChainStateGone, ChainUnavailable, TransactionReverted
from dainode.roles import taskchain
from dainode.roles.taskchain import TaskChain, patiently


def flaky(failures: int, exc: Exception):
    calls = []

    async def fn(*args, **kw):
        calls.append((args, kw))
        if len(calls) <= failures:
            raise exc
        return "ok"

    return fn, calls


async def test_a_30_s_outage_is_waited_out(autojump_clock, caplog):
    fn, calls = flaky(9, ChainUnavailable("endpoint http://x is unreachable"))
    t0 = trio.current_time()
    with caplog.at_level(logging.WARNING, "dainode.tasks"):
        assert await patiently("reading task 3", lambda: fn(3)) == "ok"
    assert len(calls) == 10 and trio.current_time() - t0 >= 30  # 0.5+1+2+4+5*5 s of backoff
    assert "reading task 3: chain unavailable" in caplog.text and "retry 9" in caplog.text


async def test_the_pruned_head_race_is_transient_too(autojump_clock):
    fn, calls = flaky(1, ChainStateGone("eth_call", -32602, "BlockOutOfRangeError: block height is 5 but requested was 4",
                                        height=5, requested=4))
    assert await patiently("read", fn) == "ok" and len(calls) == 2


async def test_patience_is_bounded(autojump_clock, monkeypatch, caplog):
    monkeypatch.setattr(taskchain, "CHAIN_PATIENCE_S", 20.0)
    fn, calls = flaky(10**6, ChainUnavailable("down"))
    with pytest.raises(ChainUnavailable), caplog.at_level(logging.ERROR, "dainode.tasks"):
        await patiently("reading task 3", fn)
    assert 3 < len(calls) < 10 and "stayed unreachable" in caplog.text


@pytest.mark.parametrize("exc", [ChainRpcError("eth_call", 3, "execution reverted"), TransactionReverted("reverted")])
async def test_answers_of_the_chain_are_not_retried(exc):
    fn, calls = flaky(1, exc)
    with pytest.raises(type(exc)):
        await patiently("read", fn)
    assert len(calls) == 1


async def test_only_journaled_sends_are_retried(autojump_clock):
    tc = TaskChain.__new__(TaskChain)  # only send() is exercised; the real constructor needs a chain
    tc.patience_s = None
    fn, calls = flaky(2, ChainUnavailable("down"))
    tc._send = fn
    assert await tc.send("submitUpdate", 1, 2, state=object(), step_id="update-1-2-0") == "ok" and len(calls) == 3
    fn, calls = flaky(2, ChainUnavailable("down"))
    tc._send = fn
    with pytest.raises(ChainUnavailable):  # not journaled: it may have been sent, so a retry could send it twice
        await tc.send("withdraw")
    assert len(calls) == 1


async def test_no_patience_fails_at_once():
    fn, calls = flaky(1, ChainUnavailable("down"))
    with pytest.raises(ChainUnavailable):
        await patiently("task_status", fn, 0)
    assert len(calls) == 1


class CountingContract:
    def __init__(self):
        self.decoded = []

    def decode_log(self, raw):
        self.decoded.append(raw)
        return ("event", raw["blockHash"], raw["logIndex"])


def test_a_log_is_decoded_once_and_a_reorged_one_again(monkeypatch):
    monkeypatch.setattr(taskchain, "DECODED_CACHE_SIZE", 3)
    tc = TaskChain.__new__(TaskChain)  # only the decode cache is exercised
    tc._decoded = taskchain.OrderedDict()
    c = CountingContract()
    log = {"blockHash": "0xaa", "logIndex": "0x1"}
    assert tc._decode(c, log) == tc._decode(c, dict(log)) == ("event", "0xaa", "0x1")
    assert len(c.decoded) == 1
    assert tc._decode(c, {"blockHash": "0xbb", "logIndex": "0x1"}) == ("event", "0xbb", "0x1")  # same index, other block
    assert len(c.decoded) == 2
    for i in range(3):
        tc._decode(c, {"blockHash": f"0xc{i}", "logIndex": "0x0"})
    assert len(tc._decoded) == 3  # bounded: the oldest went first
    tc._decode(c, log)
    assert len(c.decoded) == 6
    pending = {"blockHash": None, "logIndex": None}
    tc._decode(c, pending), tc._decode(c, pending)
    assert len(c.decoded) == 8  # no block hash, no caching
