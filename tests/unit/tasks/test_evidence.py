"""The payout check of dainode/tasks/evidence.py on the contract's worked example (docs/contracts.md)."""

from __future__ import annotations

from dainode.tasks.evidence import BONUS, COMPUTE, DATA_PRICE, REFUND, TaskEvent, bonus_of, build_log, check_payments, compute_share

E = 10**18
MP, DP1, DP2, CP1, CP2 = ("0x" + c * 40 for c in "abcde")


def _events(bonuses=(3 * E, 2 * E), credits_override=None):
    n = iter(range(1000))
    ev = lambda name, **a: TaskEvent(name, {"taskId": 1, **a}, next(n), 0, {"cid": "bafy"} if "cid" in name.lower() else {})
    params = {"manifestCid": b"", "manifestCodec": 0, "hePublicKeyCid": b"", "hePublicKeyCodec": 0, "encPublicKeyCid": b"",
              "encPublicKeyCodec": 0, "testSetCommitment": b"\0" * 32, "rounds": 2, "quorum": 2, "roundDuration": 60,
              "aggregationWindow": 60, "challengeWindow": 60, "deadline": 0, "arbiter": MP}
    out = [ev("TaskOpened", modelProvider=MP, pool=10 * E, arbiter=MP, params=params)]
    for mid, (dp, cp) in enumerate(((DP1, CP1), (DP2, CP2))):
        out.append(ev("MatchRecorded", matchId=mid, dataProvider=dp, computeProvider=cp, dataOfferId=mid, computeOfferId=9 + mid,
                      dataPrice=E, computePrice=2 * E))
    out.append(ev("TrainingStarted", matches=2, quorum=2))
    for mid, dp in enumerate((DP1, DP2)):
        out += [ev("DataProvided", matchId=mid), ev("RewardCredited", account=dp, amount=E, kind=DATA_PRICE)]
    out += [ev("UpdateSubmitted", round=0, matchId=0, computeProvider=CP1), ev("UpdateSubmitted", round=0, matchId=1, computeProvider=CP2),
            ev("GlobalModelPublished", round=0), ev("RewardCredited", account=CP1, amount=E, kind=COMPUTE),
            ev("RewardCredited", account=CP2, amount=E, kind=COMPUTE),
            ev("UpdateSubmitted", round=1, matchId=0, computeProvider=CP1), ev("GlobalModelPublished", round=1),
            ev("RewardCredited", account=CP1, amount=E, kind=COMPUTE),
            ev("SplitPosted", bonuses=list(bonuses)), ev("KeyRevealed"), ev("TestSetRevealed", salt=b"\0" * 32),
            ev("TaskFinalized", equalSplit=False)]
    out += credits_override if credits_override is not None else [
        ev("RewardCredited", account=DP1, amount=bonuses[0], kind=BONUS), ev("RewardCredited", account=DP2, amount=bonuses[1], kind=BONUS)]
    return out


def test_worked_example_pays_exactly():
    log = build_log(1, _events())
    assert bonus_of(log) == 5 * E  # 10 - 6 reserved + cp2's unearned round-1 share
    assert log.phase == "final" and log.revealed and log.accepted_on_chain(1) == {0}
    assert check_payments(log) == []
    assert [compute_share(2 * E, r, 2) for r in (0, 1)] == [E, E]


def test_wrong_credit_and_short_split_are_named():
    log = build_log(1, _events(credits_override=[]))
    where = [d.where for d in check_payments(log)]
    assert where == [f"payout bonus to {DP1}", f"payout bonus to {DP2}"]
    log = build_log(1, _events(bonuses=(3 * E, 1 * E)))
    where = [d.where for d in check_payments(log)]
    assert "split sum" in where and f"payout refund to {MP}" in where
