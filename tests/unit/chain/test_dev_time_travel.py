"""chain.dev_time_travel: only when turned on and only on a dev chain (id 31337) does the node move the chain's clock."""

from types import SimpleNamespace

import trio

from dainode.chain.devchain import DEV_CHAIN_ID
from dainode.chain.service import ChainService


class FakeRpc:
    def __init__(self, head_ts: int):
        self.head_ts = head_ts
        self.calls = []

    async def call(self, method, *params):
        self.calls.append((method, *params))
        if method == "eth_getBlockByNumber":
            return {"timestamp": hex(self.head_ts)}
        return "0x0"


def service(on: bool, chain_id: int, head_ts: int = 1000):
    svc = object.__new__(ChainService)
    svc.cfg = SimpleNamespace(dev_time_travel=on)
    svc.chain_id = chain_id
    svc.rpc = FakeRpc(head_ts)
    return svc


def test_moves_the_clock_to_the_timestamp_on_a_dev_chain_when_turned_on():
    svc = service(True, DEV_CHAIN_ID, head_ts=1000)
    assert trio.run(svc.dev_travel_to, 1061) is True
    assert svc.rpc.calls == [("eth_getBlockByNumber", "latest", False), ("evm_increaseTime", 61), ("evm_mine",)]


def test_a_clock_already_past_the_timestamp_only_mines():
    svc = service(True, DEV_CHAIN_ID, head_ts=2000)
    assert trio.run(svc.dev_travel_to, 1061) is True
    assert [c[0] for c in svc.rpc.calls] == ["eth_getBlockByNumber", "evm_mine"]


def test_off_or_on_another_chain_it_does_nothing():
    for svc in (service(False, DEV_CHAIN_ID), service(True, 1), service(True, 11155111)):
        assert trio.run(svc.dev_travel_to, 5000) is False
        assert svc.rpc.calls == []
