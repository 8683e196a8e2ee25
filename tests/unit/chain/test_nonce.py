"""Nonce manager: consecutive nonces under concurrency, resync on stale nonces and after uncertainty."""

from __future__ import annotations

import pytest
import trio

from dainode.chain.nonce import NonceManager
from dainode.errors import ChainRpcError, ChainUnavailable


class FakeChain:
    """Accepts a raw tx only with exactly the next nonce (like a node with no queue)."""

    def __init__(self, start=0):
        self.count = start
        self.sent: list[int] = []
        self.fail_next: Exception | None = None
        self.lose_reply = False  # accept the tx, then fail as a timed-out transport would
        self.mined: set[str] = set()

    async def call(self, method, *params):
        if method == "eth_getTransactionCount":
            return hex(self.count)
        if method == "eth_getTransactionByHash":
            return {"hash": params[0]} if params[0] in self.mined else None
        assert method == "eth_sendRawTransaction"
        await trio.sleep(0)  # let other senders run: the lock must still serialise
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        nonce = int(params[0][2:], 16)
        if self.lose_reply and nonce == self.count:
            self.lose_reply = False
            self.count += 1
            self.sent.append(nonce)
            self.mined.add(f"0xhash{nonce}")
            raise ChainUnavailable("read timeout")
        if nonce < self.count:
            raise ChainRpcError(method, -32003, "nonce too low")
        if nonce > self.count:
            raise ChainRpcError(method, -32000, "nonce gap")
        self.count += 1
        self.sent.append(nonce)
        self.mined.add(f"0xhash{nonce}")
        return "0x"


def signer(nonce):
    return nonce.to_bytes(4, "big"), f"0xhash{nonce}"


async def test_concurrent_senders_get_consecutive_nonces():
    chain = FakeChain(start=5)
    nm = NonceManager(chain, "0xme")
    results = []

    async def send():
        results.append(await nm.submit(signer))

    async with trio.open_nursery() as n:
        for _ in range(25):
            n.start_soon(send)
    assert sorted(nonce for _, nonce in results) == list(range(5, 30))
    assert chain.sent == list(range(5, 30)) and nm.resyncs == 1  # asked the chain once


async def test_stale_nonce_resyncs_and_resigns():
    chain = FakeChain()
    nm = NonceManager(chain, "0xme")
    await nm.submit(signer)
    chain.count += 4  # another wallet used the account
    _, nonce = await nm.submit(signer)
    assert nonce == 5 and nm.resyncs == 2


async def test_unknown_outcome_forgets_the_cached_nonce():
    chain = FakeChain()
    nm = NonceManager(chain, "0xme")
    await nm.submit(signer)
    chain.fail_next = ChainUnavailable("down")
    with pytest.raises(ChainUnavailable):
        await nm.submit(signer)
    _, nonce = await nm.submit(signer)
    assert nonce == 1 and nm.resyncs == 2


async def test_other_rejections_are_raised_and_do_not_consume_the_nonce():
    chain = FakeChain()
    nm = NonceManager(chain, "0xme")
    chain.fail_next = ChainRpcError("eth_sendRawTransaction", -32000, "insufficient funds for gas * price + value")
    with pytest.raises(ChainRpcError, match="insufficient funds"):
        await nm.submit(signer)
    _, nonce = await nm.submit(signer)
    assert nonce == 0


async def test_a_lost_reply_is_looked_up_by_hash_not_resigned():
    chain = FakeChain()
    nm = NonceManager(chain, "0xme")
    journal = []
    chain.lose_reply = True
    tx_hash, nonce = await nm.submit(signer, on_signed=lambda h, n, raw: journal.append((h, n)))
    assert (tx_hash, nonce) == ("0xhash0", 0) and chain.sent == [0]  # landed once, reported as sent
    assert journal == [("0xhash0", 0)]
    _, nonce = await nm.submit(signer)
    assert nonce == 1 and chain.sent == [0, 1]


async def test_nonce_too_low_for_our_own_mined_copy_is_not_resigned():
    chain = FakeChain()
    nm = NonceManager(chain, "0xme")
    chain.mined.add("0xhash0")  # an earlier copy of the same bytes was mined (the transport retried)
    chain.count = 1
    nm._next = 0
    tx_hash, nonce = await nm.submit(signer)
    assert (tx_hash, nonce) == ("0xhash0", 0) and chain.sent == []


class SyncChain(FakeChain):
    """FakeChain that also serves eth_sendRawTransactionSync (EIP-7966), or refuses it like an older node."""

    def __init__(self, *, supports_sync: bool):
        super().__init__()
        self.supports_sync = supports_sync
        self.methods: list[str] = []

    async def call(self, method, *params):
        self.methods.append(method)
        if method == "eth_sendRawTransactionSync":
            if not self.supports_sync:
                raise ChainRpcError(method, -32601, "Method not found")
            await super().call("eth_sendRawTransaction", *params)
            nonce = int(params[0][2:], 16)
            return {"transactionHash": f"0xhash{nonce}", "blockNumber": "0x5", "status": "0x1"}
        return await super().call(method, *params)


async def test_a_sync_send_returns_the_receipt_from_the_one_call():
    chain = SyncChain(supports_sync=True)
    nm = NonceManager(chain, "0xme")
    tx_hash, nonce, receipt = await nm.submit_for_receipt(signer)
    assert (tx_hash, nonce) == ("0xhash0", 0) and receipt["blockNumber"] == "0x5"
    assert chain.methods == ["eth_getTransactionCount", "eth_sendRawTransactionSync"]


async def test_an_endpoint_without_sync_send_gets_the_same_bytes_by_the_plain_send_once_and_for_all():
    chain = SyncChain(supports_sync=False)
    nm = NonceManager(chain, "0xme")
    assert await nm.submit_for_receipt(signer) == ("0xhash0", 0, None)  # no receipt: the caller polls
    assert await nm.submit_for_receipt(signer) == ("0xhash1", 1, None)
    assert chain.sent == [0, 1] and nm.sync_unsupported
    assert chain.methods.count("eth_sendRawTransactionSync") == 1
