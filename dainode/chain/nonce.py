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

    async def submit(self, sign: Callable[[int], tuple[bytes, str]]) -> tuple[str, int]:
        """`sign(nonce) -> (raw, tx_hash)`; sends it with the next nonce. Returns (tx_hash, nonce)."""
        async with self._lock:
            for attempt in range(self.max_attempts):
                if self._next is None:
                    self._next = await self._chain_nonce()
                    self.resyncs += 1
                nonce = self._next
                raw, tx_hash = sign(nonce)
                try:
                    await self.rpc.call("eth_sendRawTransaction", to_hex(raw))
                except ChainRpcError as exc:
                    if "already known" in exc.rpc_message.lower():
                        # Our identical tx is already in the pool (a retried send): it counts.
                        self._next = nonce + 1
                        return tx_hash, nonce
                    self._next = None
                    if is_stale_nonce(exc) and attempt + 1 < self.max_attempts:
                        log.info("nonce %d for %s is stale (%s); resyncing", nonce, self.address, exc.rpc_message)
                        continue
                    raise
                except BaseException:
                    # Unknown whether the endpoint took it (timeout, cancellation): ask the chain next time.
                    self._next = None
                    raise
                self._next = nonce + 1
                return tx_hash, nonce
        raise ChainError(f"could not find a usable nonce for {self.address} after {self.max_attempts} attempts")
