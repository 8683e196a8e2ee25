"""The task roles' view of TrainingTask: journaled transactions, reads, consent signing, escrow proof, events by task."""

from __future__ import annotations

import functools
import logging
import time
from collections import OrderedDict
from typing import Any

import trio

from dainode.chain.consent import MatchConsent, sign_consent, verify_consent
from dainode.chain.training_task import TaskState, MatchState, TrainingTaskBinding, cid_from_chain, cid_to_chain  # noqa: F401
from dainode.chain.rpc import to_int
from dainode.errors import ChainError, ChainStateGone, ChainUnavailable
from dainode.store.cid import CID

log = logging.getLogger("dainode.tasks")

CONTRACT = "TrainingTask"
# A role waits this long for an unreachable chain (or anvil's pruned-head race) before the step fails:
# an endpoint restarting (tens of seconds) pauses the task instead of failing a round or a whole task.
CHAIN_PATIENCE_S = 300.0
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0
TRANSIENT = (ChainUnavailable, ChainStateGone)
# Decoded events kept per TaskChain, keyed by (block hash, log index): `logs()` re-reads a task's whole history
# (task_status, the dashboard and `task watch` poll it), and ABI decoding each log again cost ~0.4 ms apiece.
# The block hash in the key makes a reorg a cache miss, never a stale answer.
DECODED_CACHE_SIZE = 8192


async def patiently(what: str, thunk, patience_s: float | None = None) -> Any:
    """await thunk(), retried with backoff while the chain is transiently unreachable (CHAIN_PATIENCE_S at most).

    Only for idempotent work: reads, and sends journaled in a State step (a retry re-sends the same signed bytes)."""
    patience_s = CHAIN_PATIENCE_S if patience_s is None else patience_s
    delay, waited, attempt = RETRY_FIRST_S, 0.0, 0
    while True:
        try:
            return await thunk()
        except TRANSIENT as exc:
            attempt += 1
            if waited + delay > patience_s:
                if not patience_s:
                    raise
                log.error("%s: the chain stayed unreachable for %.0f s; giving up: %s", what, waited, exc)
                raise
            log.warning("%s: chain unavailable (%s); retry %d in %.1f s", what, exc, attempt, delay)
            await trio.sleep(delay)
            waited += delay
            delay = min(delay * 2, RETRY_MAX_S)


class TaskChain:
    """Built from a role's ChainPort; every send can journal its signed bytes in a State step first.

    Reads and journaled sends wait out an unreachable chain for `patience_s` (0: fail at once, for queries a user waits on)."""

    def __init__(self, port, *, patience_s: float | None = None):
        self.port = port
        self.patience_s = patience_s
        self._c = port._chain  # the ChainService; this module is the roles' one door to it for tasks
        self.binding = TrainingTaskBinding(self._c.tx, self._c.contracts)
        self._decoded: OrderedDict[tuple[str, str, bool], Any] = OrderedDict()

    @property
    def chain_id(self) -> int:
        return int(self._c.chain_id)

    @property
    def address(self) -> str:
        return self.binding.address

    @property
    def account(self) -> str:
        return self._c.address

    # --- transactions -------------------------------------------------------------------

    async def send(self, fn: str, *args: Any, value: int = 0, state=None, step_id: str | None = None,
                   timings: dict | None = None) -> dict:
        """TrainingTask.fn(*args); with (state, step_id) the signed tx is journaled under effect `<fn>_tx` before it
        leaves the node, and a resumed step looks it up (re-sending the same bytes) instead of signing again.
        `timings` (a dict) gets the send's parts in ms (TxManager.send)."""
        if state is not None and step_id is not None:
            return await self._patiently(f"{CONTRACT}.{fn}", self._send, fn, *args, value=value, state=state, step_id=step_id,
                                         timings=timings)
        return await self._send(fn, *args, value=value, state=state, step_id=step_id, timings=timings)  # unjournaled: a retry could send twice

    async def _patiently(self, what: str, fn, *args: Any, **kw: Any) -> Any:
        return await patiently(what, functools.partial(fn, *args, **kw), self.patience_s)

    async def _send(self, fn: str, *args: Any, value: int = 0, state=None, step_id: str | None = None,
                    timings: dict | None = None) -> dict:
        c = self._c.contracts[CONTRACT]
        key = f"{fn}_tx"
        if state is not None and step_id is not None:
            step = state.get_step(step_id)
            if step is not None and step.effect.get(key):
                raw = bytes.fromhex(step.effect[f"{fn}_raw"]) if step.effect.get(f"{fn}_raw") else None
                receipt = await self.port.receipt_of(step.effect[key], raw)
                if receipt is not None:
                    if int(receipt.get("status", "0x1"), 16) != 1:
                        raise ChainError(f"{CONTRACT}.{fn} transaction {step.effect[key]} failed on chain")
                    return receipt
                log.warning("%s tx %s can never be mined (its nonce was used); signing again", fn, step.effect[key])

        def journal(tx_hash: str, nonce: int, raw: bytes) -> None:
            if state is not None and step_id is not None:
                state.record_effect(step_id, **{key: tx_hash, f"{fn}_raw": raw.hex()})

        receipt = await self._c.tx.send(self.address, c.encode_call(fn, *args), value=value, what=f"{CONTRACT}.{fn}",
                                        prefer=CONTRACT, on_signed=journal, timings=timings)
        return self.port._decoded(receipt)

    @staticmethod
    def event(receipt: dict, name: str):
        for e in receipt.get("events", []):
            if e.name == name:
                return e
        raise ChainError(f"{CONTRACT} transaction {receipt.get('transactionHash')} emitted no {name} event")

    # --- reads ----------------------------------------------------------------------------

    async def task(self, task_id: int) -> TaskState:
        return await self._patiently(f"reading task {task_id}", self.binding.task, int(task_id))

    async def match(self, task_id: int, match_id: int) -> MatchState:
        return await self._patiently(f"reading task {task_id} match {match_id}", self.binding.match, int(task_id), int(match_id))

    async def balance_of(self, account: str) -> int:
        return int(await self._patiently("reading a TrainingTask balance", self.binding.balance_of, account))

    async def eth_balance(self, account: str) -> int:
        return await self._patiently("reading an ether balance", self._c.balance, account)

    async def block_timestamp(self) -> int:
        block = await self._patiently("reading the head block", self._c.rpc.call, "eth_getBlockByNumber", "latest", False)
        return to_int(block["timestamp"])

    async def clock(self) -> float:
        """The chain's time as well as this node can tell: the head's timestamp, or the wall clock when that is
        later (a quiet chain's head is old; a dev chain moved on with evm_increaseTime runs ahead)."""
        return max(time.time(), await self.block_timestamp())

    async def dev_travel_to(self, timestamp: int) -> bool:
        """chain.dev_time_travel on a dev chain: move the chain's clock to `timestamp` (True); else False."""
        return await self._c.dev_travel_to(timestamp)

    async def verified_contract_balance(self) -> int:
        """TrainingTask's ether balance proven with eth_getProof against the latest header (chain_verify_state)."""
        return await self._patiently("proving TrainingTask's balance", self._c.verified_balance, self.address)

    async def logs(self, task_id: int, names: list[str] | None = None) -> list:
        """Every TrainingTask event of one task (indexed taskId) from the deployment block, in chain order."""
        c = self._c.contracts[CONTRACT]
        topics = {item["name"]: "0x" + t.hex() for t, item in c.events.items()}
        want = names or [n for n in topics if n != "Withdrawn"]
        flt = {"fromBlock": hex(int(self._c.deployment.get("block", 0))), "toBlock": "latest", "address": self.address,
               "topics": [[topics[n] for n in want], "0x" + int(task_id).to_bytes(32, "big").hex()]}
        raw = await self._patiently(f"reading task {task_id}'s events", self._c.rpc.call, "eth_getLogs", flt) or []
        raw.sort(key=lambda e: (to_int(e["blockNumber"]), to_int(e["logIndex"])))
        return [ev for ev in (self._decode(c, r) for r in raw) if ev is not None and not ev.removed]

    def _decode(self, contract, raw: dict):
        if raw.get("blockHash") is None:  # a pending log has no block yet: nothing stable to key it by
            return contract.decode_log(raw)
        key = (str(raw["blockHash"]), str(raw.get("logIndex")), bool(raw.get("removed", False)))
        if key in self._decoded:
            self._decoded.move_to_end(key)
            return self._decoded[key]
        ev = self._decoded[key] = contract.decode_log(raw)
        if len(self._decoded) > DECODED_CACHE_SIZE:
            self._decoded.popitem(last=False)
        return ev

    def subscribe(self, consumer: str, events: list[str], task_id: int | None = None):
        args = {"taskId": int(task_id)} if task_id is not None else None
        return self.port.subscribe(consumer, CONTRACT, events, args=args)

    # --- consents -------------------------------------------------------------------------

    def sign_consent(self, consent: MatchConsent) -> bytes:
        return sign_consent(self._c.signer, consent, self.chain_id, self.address)

    def verify_consent(self, consent: MatchConsent, signature: bytes, signer: str) -> None:
        verify_consent(consent, bytes(signature), signer, self.chain_id, self.address)

    async def offer(self, offer_id: int):
        return await self._patiently(f"reading offer {offer_id}", self.port.offer, int(offer_id))


def chain_cid(cid: CID | str) -> tuple[bytes, int]:
    return cid_to_chain(CID.parse(str(cid)))


def event_cid(digest: bytes, codec: int) -> CID:
    return cid_from_chain(bytes(digest), int(codec))
