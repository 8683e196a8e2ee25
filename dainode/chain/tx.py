"""Transactions: EIP-1559 fees, gas estimation, offline-signed sends, receipts, revert decoding."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import trio

from dainode import metrics
from dainode.chain.contracts import ContractSet
from dainode.chain.nonce import NonceManager
from dainode.chain.rpc import RpcClient, from_hex, to_hex, to_int
from dainode.chain.signer import Signer
from dainode.errors import ChainError, ChainRpcError, TransactionReverted

log = logging.getLogger("dainode.chain")

GWEI = 10**9
GAS_MARGIN = 1.2  # estimates are exact for the state they ran on; state can move before inclusion
DEFAULT_PRIORITY_WEI = 1 * GWEI  # used when the endpoint has no eth_maxPriorityFeePerGas


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


def compute_fees(base_fee: int, priority_fee: int, multiplier: float, max_fee_wei: int) -> Fees:
    """maxFee = baseFee × multiplier + priority, capped at max_fee_wei; the tip never exceeds maxFee.

    Refuses (ChainError) when even the current base fee is above the cap: such a
    transaction could not be included, and waiting for it would look like a hang.
    """
    if base_fee > max_fee_wei:
        raise ChainError(
            f"the chain's base fee is {base_fee / GWEI:.3f} gwei, above chain.max_fee_gwei ({max_fee_wei / GWEI:.3f}); "
            "raise chain.max_fee_gwei or wait for fees to drop"
        )
    max_fee = min(math.ceil(base_fee * multiplier) + priority_fee, max_fee_wei)
    return Fees(max_fee_per_gas=max_fee, max_priority_fee_per_gas=min(priority_fee, max_fee))


def revert_data(exc: ChainRpcError) -> bytes | None:
    """The revert payload inside an endpoint error (geth/anvil: `data` is hex or {"data": hex})."""
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def is_revert(exc: ChainRpcError) -> bool:
    return exc.code == 3 or "revert" in exc.rpc_message.lower()


def reverted(contracts: ContractSet | None, what: str, data: bytes | None, *, fallback: str = "", tx_hash: str | None = None, prefer: str | None = None) -> TransactionReverted:
    decoded = contracts.decode_error(data, prefer=prefer) if (contracts and data) else None
    where = f" (tx {tx_hash})" if tx_hash else ""
    if decoded is not None:
        return TransactionReverted(
            f"{what} reverted with {decoded.describe()}{where}", error_name=decoded.name, args=decoded.args, tx_hash=tx_hash
        )
    detail = f"raw data 0x{data.hex()}" if data else (fallback or "no reason given")
    return TransactionReverted(f"{what} reverted: {detail}{where}", tx_hash=tx_hash)


class TxManager:
    """Builds, signs (locally), sends and confirms transactions for the node's account."""

    def __init__(
        self,
        rpc: RpcClient,
        signer: Signer,
        nonces: NonceManager,
        contracts: ContractSet | None,
        *,
        chain_id: int,
        fee_multiplier: float = 1.25,
        max_fee_gwei: float = 500.0,
        receipt_timeout_s: float = 120.0,
        sync_send: bool = False,
    ):
        self.rpc = rpc
        self.signer = signer
        self.nonces = nonces
        self.contracts = contracts
        self.chain_id = chain_id
        self.fee_multiplier = fee_multiplier
        self.max_fee_wei = int(max_fee_gwei * GWEI)
        self.receipt_timeout_s = receipt_timeout_s
        self.sync_send = sync_send  # eth_sendRawTransactionSync: the receipt in the send's reply (anvil; EIP-7966)

    async def suggest_fees(self) -> Fees:
        head, tip = await self.rpc.batch(self._FEE_CALLS, raise_errors=False)
        return self._fees(head, tip)

    _FEE_CALLS = [("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", [])]

    def _fees(self, head: Any, tip: Any) -> Fees:
        if isinstance(head, Exception):
            raise head
        if not head or "baseFeePerGas" not in head:
            raise ChainError("the endpoint's latest block has no baseFeePerGas: a pre-London chain is not supported")
        priority = DEFAULT_PRIORITY_WEI if isinstance(tip, Exception) else to_int(tip)
        return compute_fees(to_int(head["baseFeePerGas"]), priority, self.fee_multiplier, self.max_fee_wei)

    async def call_raw(self, to: str, data: bytes, *, block: str = "latest", value: int = 0, what: str = "call", prefer: str | None = None) -> bytes:
        req = {"from": self.signer.address, "to": to, "data": to_hex(data)}
        if value:
            req["value"] = hex(value)
        try:
            return from_hex(await self.rpc.call("eth_call", req, block))
        except ChainRpcError as exc:
            if is_revert(exc):
                raise reverted(self.contracts, what, revert_data(exc), fallback=exc.rpc_message, prefer=prefer) from None
            raise

    def _estimate_request(self, to: str | None, data: bytes, value: int) -> dict:
        req: dict[str, Any] = {"from": self.signer.address, "data": to_hex(data), "value": hex(value)}
        if to:
            req["to"] = to
        return req

    def _gas_from(self, est: Any, *, what: str, prefer: str | None) -> int:
        if isinstance(est, ChainRpcError):
            if is_revert(est):
                raise reverted(self.contracts, what, revert_data(est), fallback=est.rpc_message, prefer=prefer) from None
            raise est
        return math.ceil(to_int(est) * GAS_MARGIN)

    async def estimate_gas(self, to: str | None, data: bytes, value: int, *, what: str, prefer: str | None = None) -> int:
        try:
            est: Any = await self.rpc.call("eth_estimateGas", self._estimate_request(to, data, value))
        except ChainRpcError as exc:
            est = exc
        return self._gas_from(est, what=what, prefer=prefer)

    async def gas_and_fees(self, to: str | None, data: bytes, value: int, *, what: str, prefer: str | None = None) -> tuple[int, Fees]:
        """Estimate and fee inputs in one HTTP round trip."""
        est, head, tip = await self.rpc.batch([("eth_estimateGas", [self._estimate_request(to, data, value)]), *self._FEE_CALLS], raise_errors=False)
        return self._gas_from(est, what=what, prefer=prefer), self._fees(head, tip)

    async def send(
        self, to: str | None, data: bytes, *, value: int = 0, gas: int | None = None, what: str = "transaction", prefer: str | None = None,
        wait: bool = True, on_signed=None, timings: dict | None = None,
    ) -> dict:
        """Estimate, sign offline, send, and (by default) wait for the receipt. `to=None` deploys.

        `on_signed(tx_hash, nonce, raw)` is called before the signed bytes are sent (see NonceManager.submit).
        `timings`, a dict, gets the parts in ms: estimate (gas + fees), submit (sign, journal, send; with
        sync_send also until mined), receipt (sent -> mined receipt seen), and mined_seen_at (wall clock, to compare with other nodes' event times)."""
        t0 = trio.current_time()
        if gas is None:
            gas, fees = await self.gas_and_fees(to, data, value, what=what, prefer=prefer)
        else:
            fees = await self.suggest_fees()
        base = {
            "type": 2,
            "chainId": self.chain_id,
            "gas": gas,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            "value": value,
            "data": data,
        }
        if to:
            base["to"] = to

        def sign(nonce: int) -> tuple[bytes, str]:
            return self.signer.sign({**base, "nonce": nonce})

        t1 = trio.current_time()
        sync = wait and self.sync_send
        tx_hash, nonce, receipt = await self.nonces.submit_for_receipt(sign, on_signed=on_signed, sync=sync)
        t2 = trio.current_time()
        log.debug("sent %s as %s (nonce %d, gas %d)", what, tx_hash, nonce, gas)
        metrics.tx("sent")
        if not wait:
            return {"transactionHash": tx_hash, "nonce": nonce}
        if receipt is None:
            receipt = await self.wait_receipt(tx_hash, what=what)
        if timings is not None:
            t3 = trio.current_time()
            timings.update(estimate_ms=round((t1 - t0) * 1000, 1), submit_ms=round((t2 - t1) * 1000, 1),
                           receipt_ms=round((t3 - t2) * 1000, 1), mined_seen_at=time.time())
        if to_int(receipt.get("status", "0x1")) != 1:
            metrics.tx("failed")
            raise await self._explain_failure(to, data, value, receipt, what=what, prefer=prefer)
        return receipt

    async def lookup(self, tx_hash: str) -> dict | None:
        """The mined receipt of `tx_hash`, or None (pending, dropped or unknown)."""
        receipt = await self.rpc.call("eth_getTransactionReceipt", tx_hash)
        return receipt if receipt is not None and receipt.get("blockNumber") else None

    async def rebroadcast(self, raw: bytes, tx_hash: str) -> bool:
        """Send journaled signed bytes again (after a restart). True if the chain has the tx now; False
        if it cannot (its nonce went to another tx): only then may the caller sign a new one."""
        if await self.nonces.known(tx_hash):
            return True
        try:
            await self.rpc.call("eth_sendRawTransaction", to_hex(raw))
        except ChainRpcError as exc:
            if "already known" in exc.rpc_message.lower():
                return True
            return await self.nonces.known(tx_hash)
        return True

    async def wait_receipt(self, tx_hash: str, *, what: str = "transaction", timeout: float | None = None) -> dict:
        timeout = self.receipt_timeout_s if timeout is None else timeout
        delay = 0.005  # dev chains mine at once: start fast, back off to 0.5 s
        with trio.move_on_after(timeout):
            while True:
                receipt = await self.rpc.call("eth_getTransactionReceipt", tx_hash)
                if receipt is not None and receipt.get("blockNumber"):
                    return receipt
                await trio.sleep(delay)
                delay = min(delay * 2, 0.5)
        # The tx may have been dropped: the next send must ask the chain for the nonce.
        self.nonces.resync()
        raise ChainError(
            f"{what} {tx_hash} has no receipt after {timeout:g} s (chain.receipt_timeout_s); it may be stuck or dropped: "
            "check the fee settings and the endpoint"
        )

    async def wait_confirmations(self, receipt: dict, confirmations: int, *, poll_s: float = 0.5, timeout: float | None = None) -> dict:
        """Wait until the receipt's block is `confirmations` deep and still canonical; returns the
        (possibly re-mined) receipt. ChainError if a reorg dropped the transaction."""
        if confirmations <= 0:
            return receipt
        tx_hash = receipt["transactionHash"]
        timeout = self.receipt_timeout_s if timeout is None else timeout
        with trio.move_on_after(timeout):
            while True:
                head = to_int(await self.rpc.call("eth_blockNumber"))
                if head >= to_int(receipt["blockNumber"]) + confirmations:
                    fresh = await self.rpc.call("eth_getTransactionReceipt", tx_hash)
                    if fresh is None or not fresh.get("blockNumber"):
                        self.nonces.resync()
                        raise ChainError(f"transaction {tx_hash} was dropped by a chain reorganisation; send it again")
                    if fresh["blockHash"] == receipt["blockHash"]:
                        return fresh
                    receipt = fresh  # re-mined in another block: count confirmations from there
                    continue
                await trio.sleep(poll_s)
        raise ChainError(f"transaction {tx_hash} did not reach {confirmations} confirmations within {timeout:g} s")

    async def _explain_failure(self, to: str | None, data: bytes, value: int, receipt: dict, *, what: str, prefer: str | None) -> TransactionReverted:
        tx_hash = receipt.get("transactionHash")
        if not to:
            return reverted(self.contracts, what, None, fallback="deployment failed", tx_hash=tx_hash, prefer=prefer)
        number = to_int(receipt["blockNumber"])
        req = {"from": self.signer.address, "to": to, "data": to_hex(data), "value": hex(value), "gas": receipt.get("gasUsed")}
        # Replay against the state before its block to recover the revert data (receipts carry none).
        for block in (hex(max(number - 1, 0)), "latest"):
            try:
                await self.rpc.call("eth_call", req, block)
            except ChainRpcError as exc:
                if is_revert(exc):
                    return reverted(self.contracts, what, revert_data(exc), fallback=exc.rpc_message, tx_hash=tx_hash, prefer=prefer)
                continue
        return reverted(self.contracts, what, None, fallback="out of gas or state changed before replay", tx_hash=tx_hash, prefer=prefer)
