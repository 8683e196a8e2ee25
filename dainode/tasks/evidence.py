"""A task's chain history as data (from its TrainingTask events) and the payout check: what the contract must have credited.

Transport-free: the gatherer (``dainode/audit/``) turns decoded chain events into ``TaskEvent`` records
(CIDs already rebuilt as strings) and fetches the documents; this module orders the events into a
``TaskLog``, recomputes every ``RewardCredited`` the contract's rules imply (data prices, per-round
compute shares, the bonus split, the refund) and lists the differences with what was credited.
Contract round numbering: ``GlobalModelPublished(round = r)`` closes round ``r`` and publishes
global model ``r + 1`` (``docs/tasks.md``: model ``t`` is the input of round ``t``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from dainode.tasks.verify import Difference

DATA_PRICE, COMPUTE, BONUS, REFUND = 0, 1, 2, 3
KIND_NAMES = {DATA_PRICE: "data price", COMPUTE: "compute pay", BONUS: "bonus", REFUND: "refund"}


@dataclass(frozen=True)
class TaskEvent:
    """One TrainingTask event of the task: name, decoded args, where it landed, the CIDs it names (as strings)."""

    name: str
    args: dict[str, Any]
    block: int
    index: int  # log index in the block
    cids: dict[str, str] = field(default_factory=dict)
    tx: str = ""


@dataclass
class MatchEntry:
    match_id: int
    data_provider: str
    compute_provider: str
    data_offer_id: int
    compute_offer_id: int
    data_price: int
    compute_price: int


@dataclass
class UpdateEntry:
    round: int
    match_id: int
    sender: str
    cid: str
    block: int
    index: int


@dataclass
class TaskLog:
    """Everything the chain says about one task, in event order."""

    task_id: int
    model_provider: str = ""
    pool: int = 0
    arbiter: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # rounds, quorum, windows, commitment
    cids: dict[str, str] = field(default_factory=dict)  # manifest, encPublicKey, hePublicKey
    matches: dict[int, MatchEntry] = field(default_factory=dict)
    provided: dict[int, dict[str, str]] = field(default_factory=dict)  # match id -> {encryptedData, wrappedKey}
    started: bool = False
    updates: list[UpdateEntry] = field(default_factory=list)
    rejected: dict[tuple[int, int], str] = field(default_factory=dict)  # (round, match id) -> evidence CID
    models: dict[int, TaskEvent] = field(default_factory=dict)  # closed round r -> GlobalModelPublished
    split: TaskEvent | None = None
    key: TaskEvent | None = None
    test_set: TaskEvent | None = None
    challenges: list[TaskEvent] = field(default_factory=list)
    replaced: TaskEvent | None = None
    credits: list[TaskEvent] = field(default_factory=list)
    finalized: TaskEvent | None = None
    abandoned: TaskEvent | None = None
    last_block: int = 0

    @property
    def rounds(self) -> int:
        return int(self.params.get("rounds", 0))

    @property
    def revealed(self) -> bool:
        return self.key is not None and self.test_set is not None

    @property
    def phase(self) -> str:
        """As `task_status`'s phase: matching, training, split_posted, challenged, final, abandoned (see `revealed`)."""
        if self.abandoned is not None:
            return "abandoned"
        if self.finalized is not None:
            return "final"
        if self.challenges:
            return "challenged"
        if self.split is not None:
            return "split_posted"
        if self.started:
            return "training"
        return "matching" if self.model_provider else "unknown"

    @property
    def posted_bonuses(self) -> list[int]:
        return [int(b) for b in self.split.args["bonuses"]] if self.split is not None else []

    def updates_of(self, round: int) -> list[UpdateEntry]:
        return [u for u in self.updates if u.round == round]

    def accepted_on_chain(self, round: int) -> set[int]:
        """Match ids whose update of ``round`` was not rejected on chain (the contract pays these)."""
        return {u.match_id for u in self.updates_of(round) if (round, u.match_id) not in self.rejected}


_PARAM_NAMES = ("manifestCid", "manifestCodec", "hePublicKeyCid", "hePublicKeyCodec", "encPublicKeyCid",
                "encPublicKeyCodec", "testSetCommitment", "rounds", "quorum", "roundDuration", "aggregationWindow",
                "challengeWindow", "deadline", "arbiter")


def build_log(task_id: int, events: Iterable[TaskEvent]) -> TaskLog:
    """Order ``events`` (all of one task) into a TaskLog; unknown events are ignored."""
    log = TaskLog(int(task_id))
    for ev in sorted(events, key=lambda e: (e.block, e.index)):
        a, name = ev.args, ev.name
        log.last_block = max(log.last_block, ev.block)
        if name == "TaskOpened":
            p = dict(zip(_PARAM_NAMES, a["params"])) if not isinstance(a["params"], dict) else dict(a["params"])
            log.model_provider, log.pool, log.arbiter = str(a["modelProvider"]), int(a["pool"]), str(a["arbiter"])
            log.params = {"rounds": int(p["rounds"]), "quorum": int(p["quorum"]), "round_duration": int(p["roundDuration"]),
                          "aggregation_window": int(p["aggregationWindow"]), "challenge_window": int(p["challengeWindow"]),
                          "deadline": int(p["deadline"]), "test_set_commitment": bytes(p["testSetCommitment"])}
            log.cids = dict(ev.cids)
        elif name == "MatchRecorded":
            mid = int(a["matchId"])
            log.matches[mid] = MatchEntry(mid, str(a["dataProvider"]), str(a["computeProvider"]), int(a["dataOfferId"]),
                                          int(a["computeOfferId"]), int(a["dataPrice"]), int(a["computePrice"]))
        elif name == "TrainingStarted":
            log.started = True
        elif name == "DataProvided":
            log.provided[int(a["matchId"])] = dict(ev.cids)
        elif name == "UpdateSubmitted":
            log.updates.append(UpdateEntry(int(a["round"]), int(a["matchId"]), str(a["computeProvider"]), ev.cids.get("cid", ""),
                                           ev.block, ev.index))
        elif name == "UpdateRejected":
            log.rejected[(int(a["round"]), int(a["matchId"]))] = ev.cids.get("evidence", "")
        elif name == "GlobalModelPublished":
            log.models[int(a["round"])] = ev
        elif name == "SplitPosted":
            log.split = ev
        elif name == "KeyRevealed":
            log.key = ev
        elif name == "TestSetRevealed":
            log.test_set = ev
        elif name == "Challenged":
            log.challenges.append(ev)
        elif name == "SplitReplaced":
            log.replaced = ev
        elif name == "RewardCredited":
            log.credits.append(ev)
        elif name == "TaskFinalized":
            log.finalized = ev
        elif name == "TaskAbandoned":
            log.abandoned = ev
    return log


def compute_share(price: int, round: int, rounds: int) -> int:
    """A match's compute pay for ``round`` exactly as the contract computes it (the rounds' shares sum to the price)."""
    return (price * (round + 1)) // rounds - (price * round) // rounds


def bonus_of(log: TaskLog) -> int:
    """What the split must distribute: the pool minus every reserved price, plus every compute share not earned."""
    bonus = log.pool - sum(m.data_price + m.compute_price for m in log.matches.values())
    for r in log.models:
        paid = log.accepted_on_chain(r)
        bonus += sum(compute_share(m.compute_price, r, log.rounds) for mid, m in log.matches.items() if mid not in paid)
    if not log.provided:
        return 0
    return bonus


def expected_credits(log: TaskLog) -> list[tuple[str, int, int]]:
    """(account, kind, amount) of every RewardCredited the contract's rules imply from the other events so far."""
    out: list[tuple[str, int, int]] = []
    for mid in sorted(log.provided):
        m = log.matches.get(mid)
        if m is not None and m.data_price:
            out.append((m.data_provider.lower(), DATA_PRICE, m.data_price))
    for r in sorted(log.models):
        paid = log.accepted_on_chain(r)
        for mid in sorted(paid):
            m = log.matches.get(mid)
            share = compute_share(m.compute_price, r, log.rounds) if m is not None else 0
            if share:
                out.append((m.compute_provider.lower(), COMPUTE, share))
    if log.finalized is not None:
        bonus = bonus_of(log)
        if bool(log.finalized.args.get("equalSplit")):
            provided = [log.matches[mid] for mid in sorted(log.provided) if mid in log.matches]
            if provided and bonus:
                each, dust = divmod(bonus, len(provided))
                for i, m in enumerate(provided):
                    out.append((m.data_provider.lower(), BONUS, each + (dust if i == 0 else 0)))
        else:
            bonuses = [int(b) for b in (log.replaced or log.split).args["bonuses"]] if (log.replaced or log.split) else []
            for mid, b in enumerate(bonuses):
                if b and mid in log.matches:
                    out.append((log.matches[mid].data_provider.lower(), BONUS, b))
        rest = log.pool - sum(a for _, _, a in out)
        if rest > 0:
            out.append((log.model_provider.lower(), REFUND, rest))
    return out


def check_payments(log: TaskLog) -> list[Difference]:
    """The credited payouts vs the contract's rules applied to the matched prices, the rounds and the posted split."""
    diffs: list[Difference] = []
    want = Counter(expected_credits(log))
    got = Counter((str(e.args["account"]).lower(), int(e.args["kind"]), int(e.args["amount"])) for e in log.credits)
    for key in sorted(set(want) | set(got)):
        if want[key] != got[key]:
            acct, kind, amount = key
            diffs.append(Difference(f"payout {KIND_NAMES.get(kind, kind)} to {acct}", f"{got[key]} x {amount} wei credited",
                                    f"{want[key]} x {amount} wei expected",
                                    "RewardCredited events vs the matched prices, the closed rounds and the posted split"))
    if log.split is not None:
        posted = log.posted_bonuses
        bonus = bonus_of(log)
        if sum(posted) != bonus:
            diffs.append(Difference("split sum", str(sum(posted)), str(bonus),
                                    "posted bonuses vs pool minus reserved prices plus unearned compute shares"))
        for mid, b in enumerate(posted):
            if b and mid not in log.provided:
                diffs.append(Difference(f"split match {mid}", str(b), "0", "a bonus for a match whose data was never provided"))
    return diffs


def summary(log: TaskLog) -> dict[str, Any]:
    """A JSON-able view for task_watch / task_verify output (amounts as decimal strings)."""
    return {
        "task_id": log.task_id, "phase": log.phase, "revealed": log.revealed, "rounds": log.rounds, "round": len(log.models),
        "model_provider": log.model_provider, "pool_wei": str(log.pool), "matches": len(log.matches),
        "updates": {str(r): len(log.updates_of(r)) for r in range(log.rounds)},
        "challenges": [{"challenger": str(e.args.get("challenger")), "evidence": e.cids.get("evidence", "")} for e in log.challenges],
        "credited_wei": str(sum(int(e.args["amount"]) for e in log.credits)),
    }
