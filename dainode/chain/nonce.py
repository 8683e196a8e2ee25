"""Nonce manager: one sender at a time picks and submits the next nonce; resyncs from the chain when unsure."""

from __future__ import annotations

import logging
from typing import Callable

import trio

from dainode.chain.rpc import RpcClient, to_hex, to_int
from dainode.errors import ChainError, ChainRpcError

log = logging.getLogger("dainode.chain")

# Messages (lower-cased substrings) by which geth, anvil, reth and erigon reject a stale nonce.
_STALE_NONCE = ("nonce too low", "nonce is too low", "already known", "known transaction", "replacement transaction underpriced", "oldnonce", "invalid nonce")


def _no_such_method(exc: ChainRpcError) -> bool:
    msg = exc.rpc_message.lower()
    return exc.code == -32601 or "not found" in msg or "not supported" in msg or "unsupported" in msg or "unknown method" in msg


def is_stale_nonce(exc: ChainRpcError) -> bool:
    msg = exc.rpc_message.lower()
    return any(s in msg for s in _STALE_NONCE)


class NonceManager:
    """Allocates nonces for one account.

    Allocation and submission happen under one trio.Lock, so concurrent senders get
    consecutive nonces and a nonce is only consumed when the endpoint accepted the
    transaction. The first use (also after a restart) and every `resync()` read
    `eth_getTransactionCount(address, "pending")`, which covers transactions this process
    no longer remembers. A "nonce too low" rejection (another wallet used the account, or
    a dropped/replaced tx) triggers a resync and a re-sign with the fresh nonce.
    """

    def __init__(self, rpc: RpcClient, address: str, *, max_attempts: int = 4):
        self.rpc = rpc
        self.address = address
        self.max_attempts = max_attempts
        self._lock = trio.Lock()
        self._next: int | None = None
        self.resyncs = 0
        self.sync_unsupported = False  # the endpoint refused eth_sendRawTransactionSync once: not asked again

    async def _chain_nonce(self) -> int:
        return to_int(await self.rpc.call("eth_getTransactionCount", self.address, "pending"))

    def resync(self) -> None:
        """Forget the cached nonce (after a receipt timeout or a dropped tx): the next send asks the chain."""
        self._next = None

    async def peek(self) -> int:
        async with self._lock:
            if self._next is None:
                self._next = await self._chain_nonce()
            return self._next

    async def known(self, tx_hash: str) -> bool:
        """Does the endpoint know this transaction (pending or mined)? False when it cannot be asked."""
        try:
            return await self.rpc.call("eth_getTransactionByHash", tx_hash) is not None
        except ChainError:
            return False

    async def submit(
        self, sign: Callable[[int], tuple[bytes, str]], *, on_signed: Callable[[str, int, bytes], None] | None = None
    ) -> tuple[str, int]:
        tx_hash, nonce, _ = await self.submit_for_receipt(sign, on_signed=on_signed, sync=False)
        return tx_hash, nonce

    async def submit_for_receipt(
        self, sign: Callable[[int], tuple[bytes, str]], *, on_signed: Callable[[str, int, bytes], None] | None = None,
        sync: bool = True,
    ) -> tuple[str, int, dict | None]:
        """As `submit`; with `sync`, sent with eth_sendRawTransactionSync (EIP-7966: the endpoint answers with the
        receipt once mined, one round trip instead of send + receipt polls) and the receipt is returned too
        (None if the endpoint answered without one: poll for it). An endpoint without the method gets the same
        signed bytes again with eth_sendRawTransaction and `sync_unsupported` is set."""
        """`sign(nonce) -> (raw, tx_hash)`; sends it with the next nonce. Returns (tx_hash, nonce).

        Idempotent: when the send fails in a way that leaves its outcome open (a timeout after
        the transport's own retries of the same bytes, "nonce too low" because an earlier copy
        of these bytes was mined, "already known"), the transaction is looked up by hash
        before anything is re-signed, so one submit never lands two transactions.
        `on_signed(tx_hash, nonce, raw)` runs before the bytes leave the node (a journal
        writes them there, so a restart can look the hash up instead of signing again).
        """
        async with self._lock:
            for attempt in range(self.max_attempts):
                if self._next is None:
                    self._next = await self._chain_nonce()
                    self.resyncs += 1
                nonce = self._next
                raw, tx_hash = sign(nonce)
                if on_signed is not None:
                    on_signed(tx_hash, nonce, raw)
                reply = None
                try:
                    if sync and not self.sync_unsupported:
                        try:
                            reply = await self.rpc.call("eth_sendRawTransactionSync", to_hex(raw))
                        except ChainRpcError as exc:
                            if not _no_such_method(exc):
                                if await self.known(tx_hash):  # e.g. the endpoint's own wait timed out: it has the tx
                                    self._next = nonce + 1
                                    return tx_hash, nonce, None
                                raise
                            self.sync_unsupported = True
                            log.info("the endpoint has no eth_sendRawTransactionSync (%s); polling for receipts", exc.rpc_message)
                    if reply is None:
                        await self.rpc.call("eth_sendRawTransaction", to_hex(raw))
                except ChainRpcError as exc:
                    if "already known" in exc.rpc_message.lower() or (is_stale_nonce(exc) and await self.known(tx_hash)):
                        # Our identical tx is already in the pool or mined (a retried send): it counts.
                        self._next = nonce + 1
                        return tx_hash, nonce, None
                    self._next = None
                    if is_stale_nonce(exc) and attempt + 1 < self.max_attempts:
                        log.info("nonce %d for %s is stale (%s); resyncing", nonce, self.address, exc.rpc_message)
                        continue
                    raise
                except ChainError:
                    # Unknown whether the endpoint took it: ask by hash before giving up.
                    self._next = None
                    if await self.known(tx_hash):
                        self._next = nonce + 1
                        return tx_hash, nonce, None
                    raise
                except BaseException:
                    # Cancelled mid-send: ask the chain for the nonce next time.
                    self._next = None
                    raise
                self._next = nonce + 1
                ok = isinstance(reply, dict) and reply.get("blockNumber") and str(reply.get("transactionHash", "")).lower() == tx_hash.lower()
                return tx_hash, nonce, reply if ok else None
        raise ChainError(f"could not find a usable nonce for {self.address} after {self.max_attempts} attempts")
