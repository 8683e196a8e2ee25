"""EIP-1559 fee computation and revert data decoding into TransactionReverted."""

from __future__ import annotations

import eth_abi
import pytest
from eth_utils import keccak, to_checksum_address

from dainode.chain.contracts import load_contracts
from dainode.chain.tx import GWEI, compute_fees, revert_data, reverted
from dainode.errors import ChainError, ChainRpcError


def test_fee_is_base_times_multiplier_plus_tip():
    fees = compute_fees(base_fee=10 * GWEI, priority_fee=2 * GWEI, multiplier=1.25, max_fee_wei=500 * GWEI)
    assert fees.max_fee_per_gas == 12_500_000_000 + 2 * GWEI
    assert fees.max_priority_fee_per_gas == 2 * GWEI


def test_fee_is_capped_and_the_tip_never_exceeds_the_cap():
    fees = compute_fees(base_fee=90 * GWEI, priority_fee=30 * GWEI, multiplier=2.0, max_fee_wei=100 * GWEI)
    assert fees.max_fee_per_gas == 100 * GWEI
    fees = compute_fees(base_fee=1, priority_fee=50 * GWEI, multiplier=1.0, max_fee_wei=10 * GWEI)
    assert fees.max_priority_fee_per_gas == fees.max_fee_per_gas == 10 * GWEI


def test_base_fee_above_the_cap_is_refused_with_advice():
    with pytest.raises(ChainError, match="max_fee_gwei"):
        compute_fees(base_fee=600 * GWEI, priority_fee=1, multiplier=1.25, max_fee_wei=500 * GWEI)


CONTRACTS = load_contracts()


def selector(sig: str) -> bytes:
    return keccak(text=sig)[:4]


def test_custom_error_with_args_is_named():
    data = selector("NotOfferOwner(uint256,address)") + eth_abi.encode(["uint256", "address"], [4, "0x" + "ab" * 20])
    exc = reverted(CONTRACTS, "Registry.withdrawOffer", data, tx_hash="0xfeed")
    assert exc.error_name == "NotOfferOwner"
    assert exc.error_args == (4, to_checksum_address("0x" + "ab" * 20))
    assert "Registry.NotOfferOwner(4," in str(exc) and "0xfeed" in str(exc)


def test_shared_error_name_prefers_the_called_contract():
    data = selector("NothingToWithdraw(address)") + eth_abi.encode(["address"], ["0x" + "ab" * 20])
    assert "DataTransfer.NothingToWithdraw" in str(reverted(CONTRACTS, "x", data, prefer="DataTransfer"))
    assert "TrainingTask.NothingToWithdraw" in str(reverted(CONTRACTS, "x", data, prefer="TrainingTask"))


def test_error_string_panic_and_unknown_data():
    exc = reverted(CONTRACTS, "f", selector("Error(string)") + eth_abi.encode(["string"], ["too late"]))
    assert exc.error_name == "Error" and exc.error_args == ("too late",)
    exc = reverted(CONTRACTS, "f", selector("Panic(uint256)") + eth_abi.encode(["uint256"], [0x11]))
    assert exc.error_name == "Panic" and "overflow" in str(exc)
    exc = reverted(CONTRACTS, "f", bytes.fromhex("deadbeef"))
    assert exc.error_name is None and "0xdeadbeef" in str(exc)
    exc = reverted(CONTRACTS, "f", None, fallback="execution reverted")
    assert exc.error_name is None and "execution reverted" in str(exc)


def test_revert_data_is_found_in_both_endpoint_shapes():
    assert revert_data(ChainRpcError("eth_call", 3, "execution reverted", "0x1234")) == b"\x12\x34"
    assert revert_data(ChainRpcError("eth_call", 3, "execution reverted", {"data": "0xab"})) == b"\xab"
    assert revert_data(ChainRpcError("eth_call", -32000, "boom", None)) is None


async def test_receipt_timeout_is_an_error_and_resyncs_the_nonce():
    from eth_account import Account

    from dainode.chain.nonce import NonceManager
    from dainode.chain.signer import Signer
    from dainode.chain.tx import TxManager

    class NeverMined:
        async def call(self, method, *params):
            return {"eth_getTransactionCount": "0x4", "eth_getTransactionReceipt": None}[method]

    rpc = NeverMined()
    signer = Signer(Account.create())
    nonces = NonceManager(rpc, signer.address)
    assert await nonces.peek() == 4
    tx = TxManager(rpc, signer, nonces, CONTRACTS, chain_id=1, receipt_timeout_s=0.05)
    with pytest.raises(ChainError, match="no receipt after 0.05 s"):
        await tx.wait_receipt("0xabc")
    assert nonces._next is None  # the next send asks the chain again: the tx may have been dropped
    assert signer.address in repr(signer) and "key" not in repr(signer).lower()


class Confirming:
    """Head advances one block per eth_blockNumber; the receipt may have moved to another block."""

    def __init__(self, moved_to=None, dropped=False):
        self.head = 10
        self.moved_to = moved_to
        self.dropped = dropped

    async def call(self, method, *params):
        if method == "eth_blockNumber":
            self.head += 1
            return hex(self.head)
        if method == "eth_getTransactionReceipt":
            if self.dropped:
                return None
            if self.moved_to is not None:  # the reorg re-mined it in block `moved_to`
                return {"transactionHash": "0xt", "blockNumber": hex(self.moved_to), "blockHash": "0xother"}
            return {"transactionHash": "0xt", "blockNumber": "0xa", "blockHash": "0xorig"}
        raise AssertionError(method)


def tx_manager(rpc):
    from eth_account import Account

    from dainode.chain.nonce import NonceManager
    from dainode.chain.signer import Signer
    from dainode.chain.tx import TxManager

    signer = Signer(Account.create())
    return TxManager(rpc, signer, NonceManager(rpc, signer.address), CONTRACTS, chain_id=1, receipt_timeout_s=5)


RECEIPT = {"transactionHash": "0xt", "blockNumber": "0xa", "blockHash": "0xorig"}


async def test_confirmations_wait_for_depth_and_follow_a_re_mined_receipt():
    rpc = Confirming()
    assert (await tx_manager(rpc).wait_confirmations(RECEIPT, 3, poll_s=0))["blockHash"] == "0xorig"
    assert rpc.head >= 13
    rpc = Confirming(moved_to=12)
    out = await tx_manager(rpc).wait_confirmations(RECEIPT, 2, poll_s=0)
    assert out["blockHash"] == "0xother" and rpc.head >= 14  # counted again from the new block
    assert await tx_manager(Confirming()).wait_confirmations(RECEIPT, 0) is RECEIPT


async def test_a_reorg_that_drops_the_transaction_is_an_error():
    with pytest.raises(ChainError, match="dropped by a chain reorganisation"):
        await tx_manager(Confirming(dropped=True)).wait_confirmations(RECEIPT, 1, poll_s=0)
