"""Typed binding of the TrainingTask contract: CIDs in and out as CID objects, decoded task/match state."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Sequence

from eth_utils import keccak, to_checksum_address

from dainode.chain.cids import cid_from_chain, cid_to_chain
from dainode.chain.consent import MatchConsent, consent_digest
from dainode.chain.contracts import ContractSet, Event
from dainode.errors import ChainError
from dainode.store.cid import CID

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class Phase(IntEnum):
    NONE = 0
    MATCHING = 1
    TRAINING = 2
    SPLIT_POSTED = 3
    CHALLENGED = 4
    FINAL = 5
    ABANDONED = 6


class CreditKind(IntEnum):
    """RewardCredited.kind."""

    DATA_PRICE = 0
    COMPUTE = 1
    BONUS = 2
    REFUND = 3


def commit_test_set(cid: CID, salt: bytes) -> bytes:
    """keccak256(digest || salt): what openTask commits and revealTestSet opens (as dainode/tasks/testset.py)."""
    if len(salt) != 32:
        raise ChainError(f"the test-set salt must be 32 bytes, got {len(salt)}")
    digest, _ = cid_to_chain(cid)
    return keccak(digest + bytes(salt))


def consent_to_abi(consent: MatchConsent) -> tuple:
    """A MatchConsent as the contract's MatchConsent struct argument."""
    return (consent.task_id, consent.data_offer_id, consent.compute_offer_id, consent.data_price,
            consent.compute_price, consent.deadline)


@dataclass(frozen=True)
class TaskParams:
    """openTask's parameters (durations in seconds, deadline unix s; arbiter None = the contract's authority)."""

    manifest: CID
    he_public_key: CID
    enc_public_key: CID
    test_set_commitment: bytes
    rounds: int
    round_duration: int
    aggregation_window: int
    challenge_window: int
    deadline: int
    quorum: int = 0
    arbiter: str | None = None

    def to_abi(self) -> tuple:
        m, mc = cid_to_chain(self.manifest)
        h, hc = cid_to_chain(self.he_public_key)
        e, ec = cid_to_chain(self.enc_public_key)
        if len(self.test_set_commitment) != 32:
            raise ChainError("test_set_commitment must be 32 bytes; build it with commit_test_set(cid, salt)")
        return (m, mc, h, hc, e, ec, bytes(self.test_set_commitment), self.rounds, self.quorum,
                self.round_duration, self.aggregation_window, self.challenge_window, self.deadline,
                to_checksum_address(self.arbiter or ZERO_ADDRESS))

    @staticmethod
    def span(rounds: int, round_duration: int, aggregation_window: int) -> int:
        """Seconds the rounds and the split need at most; the deadline must be >= now + span (+ <= 7 days more)."""
        return rounds * (round_duration + aggregation_window) + aggregation_window


@dataclass(frozen=True)
class TaskState:
    model_provider: str
    phase: Phase
    rounds: int
    round: int
    quorum: int
    round_updates: int
    match_count: int
    key_revealed: bool
    test_set_revealed: bool
    escrow: int
    bonus: int
    arbiter: str
    round_duration: int
    aggregation_window: int
    challenge_window: int
    deadline: int
    round_start: int
    split_at: int
    revealed_at: int
    challenged_at: int
    test_set_commitment: bytes
    split_hash: bytes

    @classmethod
    def from_abi(cls, t: Sequence[Any]) -> "TaskState":
        (mp, phase, rounds, rnd, quorum, updates, n, revealed, escrow, bonus, arbiter, rd, aw, cw, deadline,
         start, split_at, revealed_at, challenged_at, commitment, split_hash) = t
        return cls(mp, Phase(phase), rounds, rnd, quorum, updates, n, bool(revealed & 1), bool(revealed & 2),
                   escrow, bonus, arbiter, rd, aw, cw, deadline, start, split_at, revealed_at, challenged_at,
                   bytes(commitment), bytes(split_hash))


@dataclass(frozen=True)
class MatchState:
    data_provider: str
    data_price: int
    provided: bool
    compute_provider: str
    compute_price: int
    last_round: int | None  # round of the latest update, None if none
    last_rejected: bool

    @classmethod
    def from_abi(cls, m: Sequence[Any]) -> "MatchState":
        dp, dprice, provided, cp, cprice, last = m
        plain = last & 0x7FFF
        return cls(dp, dprice, bool(provided), cp, cprice, plain - 1 if plain else None, bool(last & 0x8000))


def event_cids(ev: Event) -> dict[str, CID]:
    """The CIDs an event carries, by name: each `<x>Cid` arg with its `<x>Codec` (or `codec` for `cid`)."""
    out: dict[str, CID] = {}
    args = ev.args
    params = args.get("params")
    if ev.name == "TaskOpened" and params is not None:
        for i, name in ((0, "manifest"), (2, "hePublicKey"), (4, "encPublicKey")):
            out[name] = cid_from_chain(params[i], params[i + 1])
    for key, value in args.items():
        if key == "cid" and "codec" in args:
            out["cid"] = cid_from_chain(value, args["codec"])
        elif key.endswith("Cid") and f"{key[:-3]}Codec" in args and any(value):
            out[key[:-3]] = cid_from_chain(value, args[f"{key[:-3]}Codec"])
    return out


class TrainingTaskBinding:
    """Sends TrainingTask transactions through a TxManager and reads its state; returns ids from the events.

    `tx` is the node's TxManager (or any object with its `send`/`call_raw`), `contracts` the ContractSet
    with TrainingTask's deployed address."""

    NAME = "TrainingTask"

    def __init__(self, tx, contracts: ContractSet):
        self.tx = tx
        self.contracts = contracts
        self.contract = contracts[self.NAME]
        if not self.contract.address:
            raise ChainError("TrainingTask has no deployed address; deploy the contracts or load the deployment file")

    @property
    def address(self) -> str:
        return self.contract.address

    async def _send(self, fn: str, *args: Any, value: int = 0) -> dict:
        receipt = await self.tx.send(self.address, self.contract.encode_call(fn, *args), value=value,
                                     what=f"{self.NAME}.{fn}", prefer=self.NAME)
        receipt["events"] = [e for e in (self.contracts.decode_log(lg) for lg in receipt.get("logs", [])) if e is not None]
        return receipt

    async def _call(self, fn: str, *args: Any) -> Any:
        data = await self.tx.call_raw(self.address, self.contract.encode_call(fn, *args), what=f"{self.NAME}.{fn}", prefer=self.NAME)
        return self.contract.decode_result(fn, len(args), data)

    @staticmethod
    def _event(receipt: dict, name: str) -> Event:
        for e in receipt["events"]:
            if e.name == name:
                return e
        raise ChainError(f"TrainingTask transaction {receipt.get('transactionHash')} emitted no {name} event")

    # ---- transactions ----

    async def open_task(self, params: TaskParams, pool_wei: int) -> int:
        receipt = await self._send("openTask", params.to_abi(), value=pool_wei)
        return self._event(receipt, "TaskOpened").args["taskId"]

    async def record_match(self, consent: MatchConsent, data_signature: bytes, compute_signature: bytes) -> int:
        receipt = await self._send("recordMatch", consent_to_abi(consent), bytes(data_signature), bytes(compute_signature))
        return self._event(receipt, "MatchRecorded").args["matchId"]

    async def start_training(self, task_id: int) -> dict:
        return await self._send("startTraining", task_id)

    async def provide_data(self, task_id: int, match_id: int, encrypted_data: CID, wrapped_key: CID) -> dict:
        return await self._send("provideData", task_id, match_id, *cid_to_chain(encrypted_data), *cid_to_chain(wrapped_key))

    async def submit_update(self, task_id: int, match_id: int, round_: int, update: CID) -> dict:
        return await self._send("submitUpdate", task_id, match_id, round_, *cid_to_chain(update))

    async def reject_update(self, task_id: int, match_id: int, round_: int, evidence: CID) -> dict:
        return await self._send("rejectUpdate", task_id, match_id, round_, *cid_to_chain(evidence))

    async def publish_global_model(self, task_id: int, round_: int, model: CID) -> dict:
        return await self._send("publishGlobalModel", task_id, round_, *cid_to_chain(model))

    async def post_split(self, task_id: int, bonuses: Sequence[int], report: CID) -> dict:
        return await self._send("postSplit", task_id, list(bonuses), *cid_to_chain(report))

    async def reveal_key(self, task_id: int, key: CID) -> dict:
        return await self._send("revealKey", task_id, *cid_to_chain(key))

    async def reveal_test_set(self, task_id: int, test_set: CID, salt: bytes) -> dict:
        return await self._send("revealTestSet", task_id, *cid_to_chain(test_set), bytes(salt))

    async def challenge(self, task_id: int, evidence: CID) -> dict:
        return await self._send("challenge", task_id, *cid_to_chain(evidence))

    async def uphold_split(self, task_id: int, bonuses: Sequence[int]) -> dict:
        return await self._send("upholdSplit", task_id, list(bonuses))

    async def replace_split(self, task_id: int, bonuses: Sequence[int], ruling: CID) -> dict:
        return await self._send("replaceSplit", task_id, list(bonuses), *cid_to_chain(ruling))

    async def finalize(self, task_id: int, bonuses: Sequence[int] = ()) -> dict:
        """`bonuses` as posted (SplitPosted event); ignored on the equal-split paths."""
        return await self._send("finalize", task_id, list(bonuses))

    async def abandon(self, task_id: int) -> dict:
        return await self._send("abandon", task_id)

    async def withdraw(self) -> dict:
        return await self._send("withdraw")

    async def withdraw_to(self, to: str) -> dict:
        return await self._send("withdrawTo", to_checksum_address(to))

    # ---- reads ----

    async def task(self, task_id: int) -> TaskState:
        return TaskState.from_abi(await self._call("task", task_id))

    async def match(self, task_id: int, match_id: int) -> MatchState:
        return MatchState.from_abi(await self._call("getMatch", task_id, match_id))

    async def balance_of(self, account: str) -> int:
        return await self._call("balances", to_checksum_address(account))

    async def consent_digest(self, consent: MatchConsent) -> bytes:
        """The digest as the contract computes it (compare with dainode.chain.consent.consent_digest)."""
        return await self._call("consentDigest", consent_to_abi(consent))

    def local_consent_digest(self, consent: MatchConsent, chain_id: int) -> bytes:
        return consent_digest(consent, chain_id, self.address)


__all__ = [
    "CreditKind", "MatchState", "Phase", "TaskParams", "TaskState", "TrainingTaskBinding", "cid_from_chain",
    "cid_to_chain", "commit_test_set", "consent_to_abi", "event_cids",
]
