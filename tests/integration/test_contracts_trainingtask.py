"""TrainingTask on a real anvil: task lifecycle, every revert (by custom error name), credits and withdrawals."""

from __future__ import annotations

import pytest

from tests.integration.contracts_anvil import (
    ZERO, Reverted, anvil_fixture, decode_revert, deploy, events, gas_cost, send,
)

anvil = pytest.fixture(scope="module")(anvil_fixture)

ETH = 10**18
MANIFEST, HEKEY, ENCKEY, TESTSET, UPD, GLOBAL, REVEAL = (bytes([i]) * 32 for i in range(0x11, 0x18))
RAW = 0x55
NONE, OPEN, FINISHED, ABANDONED = range(4)
HOUR = 3600


@pytest.fixture
def env(anvil):
    w3 = anvil.w3
    acc = w3.eth.accounts
    tt = deploy(w3, "TrainingTask", sender=acc[0])
    return dict(a=anvil, w3=w3, tt=tt, mp=acc[1], dp1=acc[2], dp2=acc[3], cp1=acc[4], cp2=acc[5], stranger=acc[6])


def _reverts(name, fn, *args, **kw):
    with pytest.raises(Reverted) as ei:
        fn(*args, **kw)
    assert ei.value.name == name, f"expected {name}, got {ei.value}"
    return ei.value


def _open(env, pool=10 * ETH, rounds=2, ttl=10 * HOUR):
    deadline = env["a"].now() + ttl
    rcpt = send(env["tt"], "openTask", MANIFEST, RAW, HEKEY, RAW, ENCKEY, 0x70, TESTSET, rounds, deadline,
                sender=env["mp"], value=pool)
    return events(env["tt"], rcpt, "TaskOpened")[0]["taskId"], deadline, rcpt


def _task(env, tid):
    return tuple(env["tt"].functions.task(tid).call())


def test_open_escrows_the_pool_and_publishes_cids(env):
    w3, tt = env["w3"], env["tt"]
    before = w3.eth.get_balance(env["mp"])
    tid, deadline, rcpt = _open(env)
    assert events(tt, rcpt, "TaskOpened") == [{
        "taskId": tid, "modelProvider": env["mp"], "pool": 10 * ETH, "rounds": 2, "deadline": deadline,
        "manifestCid": MANIFEST, "manifestCodec": RAW, "hePublicKeyCid": HEKEY, "hePublicKeyCodec": RAW,
        "encPublicKeyCid": ENCKEY, "encPublicKeyCodec": 0x70, "testSetCommitment": TESTSET,
    }]
    assert tid == 1 and tt.functions.nextTaskId().call() == 2
    assert _task(env, tid) == (env["mp"], deadline, 2, 0, OPEN, 10 * ETH, 0)
    assert w3.eth.get_balance(tt.address) == 10 * ETH
    assert w3.eth.get_balance(env["mp"]) == before - 10 * ETH - gas_cost(rcpt)


def test_open_reverts(env):
    tt, mp, now = env["tt"], env["mp"], env["a"].now()
    args = [MANIFEST, RAW, HEKEY, RAW, ENCKEY, RAW, TESTSET]
    _reverts("NoEther", send, tt, "openTask", *args, 1, now + HOUR, sender=mp)
    e = _reverts("InvalidRounds", send, tt, "openTask", *args, 0, now + HOUR, sender=mp, value=ETH)
    assert e.args == (0,)
    _reverts("InvalidDeadline", send, tt, "openTask", *args, 1, now - 1, sender=mp, value=ETH)
    _reverts("EmptyCid", send, tt, "openTask", bytes(32), *args[1:], 1, now + HOUR, sender=mp, value=ETH)


def test_full_task_credits_every_party_and_withdrawals_pay_them(env):
    w3, tt = env["w3"], env["tt"]
    mp, dp1, dp2, cp1, cp2 = (env[k] for k in ("mp", "dp1", "dp2", "cp1", "cp2"))
    tid, _, _ = _open(env, pool=10 * ETH, rounds=2)
    rcpt = send(tt, "recordMatch", tid, dp1, cp1, 1 * ETH, sender=mp)
    assert events(tt, rcpt, "MatchRecorded") == [
        {"taskId": tid, "matchId": 0, "dataProvider": dp1, "computeProvider": cp1, "price": ETH}]
    send(tt, "recordMatch", tid, dp2, cp2, 2 * ETH, sender=mp)
    assert tt.functions.matchCount(tid).call() == 2
    assert tuple(tt.functions.getMatch(tid, 1).call()) == (dp2, 2 * ETH, cp2, 0, 0)
    assert _task(env, tid)[6] == 3 * ETH  # committed to compute

    # Round 0: both compute providers submit; round 1: only cp1.
    rcpt = send(tt, "submitUpdate", tid, 0, UPD, RAW, sender=cp1)
    assert events(tt, rcpt, "UpdateSubmitted") == [
        {"taskId": tid, "round": 0, "matchId": 0, "computeProvider": cp1, "cid": UPD, "codec": RAW}]
    send(tt, "submitUpdate", tid, 1, UPD, RAW, sender=cp2)
    rcpt = send(tt, "publishGlobalModel", tid, GLOBAL, RAW, sender=mp)
    assert events(tt, rcpt, "GlobalModelPublished") == [{"taskId": tid, "round": 0, "cid": GLOBAL, "codec": RAW}]
    assert _task(env, tid)[3] == 1
    send(tt, "submitUpdate", tid, 0, UPD, RAW, sender=cp1)
    _reverts("RoundsNotComplete", send, tt, "finishTask", tid, [ETH, 0], sender=mp)
    send(tt, "publishGlobalModel", tid, GLOBAL, RAW, sender=mp)
    assert tuple(tt.functions.getMatch(tid, 0).call()) == (dp1, ETH, cp1, 2, 2)
    assert tuple(tt.functions.getMatch(tid, 1).call()) == (dp2, 2 * ETH, cp2, 1, 1)
    _reverts("TrainingComplete", send, tt, "submitUpdate", tid, 0, UPD, RAW, sender=cp1)
    _reverts("TrainingComplete", send, tt, "publishGlobalModel", tid, GLOBAL, RAW, sender=mp)

    # The split: data shares posted by the model provider; compute paid price * rounds done / rounds.
    # One reward per match (so only matched data providers can be paid).
    _reverts("NotModelProvider", send, tt, "finishTask", tid, [ETH, ETH], sender=dp1)
    e = _reverts("LengthMismatch", send, tt, "finishTask", tid, [ETH], sender=mp)
    assert e.args == (2, 1)
    e = _reverts("InsufficientPool", send, tt, "finishTask", tid, [5 * ETH, 3 * ETH], sender=mp)
    assert e.args == (tid, 8 * ETH, 7 * ETH)  # 10 pool - 3 committed to compute
    rcpt = send(tt, "finishTask", tid, [3 * ETH, 1 * ETH], sender=mp)
    assert events(tt, rcpt, "TaskFinished") == [
        {"taskId": tid, "dataTotal": 4 * ETH, "computeTotal": 2 * ETH, "refund": 4 * ETH}]
    assert events(tt, rcpt, "RewardCredited") == [
        {"taskId": tid, "account": dp1, "amount": 3 * ETH, "compute": False},
        {"taskId": tid, "account": dp2, "amount": 1 * ETH, "compute": False},
        {"taskId": tid, "account": cp1, "amount": 1 * ETH, "compute": True},
        {"taskId": tid, "account": cp2, "amount": 1 * ETH, "compute": True},  # 2 ETH * 1/2 rounds
    ]
    assert _task(env, tid)[4:6] == (FINISHED, 0)
    expected = {dp1: 3 * ETH, dp2: ETH, cp1: ETH, cp2: ETH, mp: 4 * ETH}
    assert {a: tt.functions.balances(a).call() for a in expected} == expected
    _reverts("WrongState", send, tt, "finishTask", tid, [0, 0], sender=mp)
    _reverts("WrongState", send, tt, "recordMatch", tid, dp1, cp1, 0, sender=mp)
    _reverts("WrongState", send, tt, "refundAbandoned", tid, sender=mp)

    # The model provider reveals its key so anyone can re-check the split.
    rcpt = send(tt, "revealKey", tid, REVEAL, RAW, sender=mp)
    assert events(tt, rcpt, "KeyRevealed") == [{"taskId": tid, "cid": REVEAL, "codec": RAW}]

    for account, amount in expected.items():
        before = w3.eth.get_balance(account)
        rcpt = send(tt, "withdraw", sender=account)
        assert events(tt, rcpt, "Withdrawn") == [{"account": account, "amount": amount}]
        assert w3.eth.get_balance(account) == before + amount - gas_cost(rcpt)
        _reverts("NothingToWithdraw", send, tt, "withdraw", sender=account)
    assert w3.eth.get_balance(tt.address) == 0


def test_record_match_reverts(env):
    tt, mp, dp1, cp1 = env["tt"], env["mp"], env["dp1"], env["cp1"]
    tid, _, _ = _open(env, pool=3 * ETH)
    e = _reverts("NotModelProvider", send, tt, "recordMatch", tid, dp1, cp1, ETH, sender=dp1)
    assert e.args == (tid, dp1)
    _reverts("NotModelProvider", send, tt, "recordMatch", 999, dp1, cp1, ETH, sender=mp)
    _reverts("InvalidParty", send, tt, "recordMatch", tid, ZERO, cp1, ETH, sender=mp)
    _reverts("InvalidParty", send, tt, "recordMatch", tid, dp1, mp, ETH, sender=mp)
    send(tt, "recordMatch", tid, dp1, cp1, 2 * ETH, sender=mp)
    e = _reverts("InsufficientPool", send, tt, "recordMatch", tid, dp1, cp1, 2 * ETH, sender=mp)
    assert e.args == (tid, 2 * ETH, ETH)
    # A price must fit the uint96 it is packed into, even when the pool is larger.
    env["w3"].provider.make_request("anvil_setBalance", [mp, hex(2**100)])
    big, _, _ = _open(env, pool=2**97)
    e = _reverts("PriceTooLarge", send, tt, "recordMatch", big, dp1, cp1, 2**96, sender=mp)
    assert e.args == (2**96,)


def test_too_many_matches(env):
    tt, mp = env["tt"], env["mp"]
    tid, _, _ = _open(env, pool=ETH)
    cap = tt.functions.MAX_MATCHES().call()
    for _ in range(cap):
        send(tt, "recordMatch", tid, env["dp1"], env["cp1"], 1, sender=mp)
    _reverts("TooManyMatches", send, tt, "recordMatch", tid, env["dp1"], env["cp1"], 1, sender=mp)


def test_submit_and_publish_reverts(env):
    tt, mp, cp1, cp2 = env["tt"], env["mp"], env["cp1"], env["cp2"]
    tid, _, _ = _open(env, rounds=1)
    send(tt, "recordMatch", tid, env["dp1"], cp1, ETH, sender=mp)
    e = _reverts("UnknownMatch", send, tt, "submitUpdate", tid, 1, UPD, RAW, sender=cp1)
    assert e.args == (tid, 1)
    e = _reverts("NotComputeProvider", send, tt, "submitUpdate", tid, 0, UPD, RAW, sender=cp2)
    assert e.args == (tid, 0, cp2)
    _reverts("EmptyCid", send, tt, "submitUpdate", tid, 0, bytes(32), RAW, sender=cp1)
    send(tt, "submitUpdate", tid, 0, UPD, RAW, sender=cp1)
    e = _reverts("AlreadySubmitted", send, tt, "submitUpdate", tid, 0, UPD, RAW, sender=cp1)
    assert e.args == (tid, 0, 0)
    _reverts("NotModelProvider", send, tt, "publishGlobalModel", tid, GLOBAL, RAW, sender=cp1)
    _reverts("EmptyCid", send, tt, "publishGlobalModel", tid, bytes(32), RAW, sender=mp)
    _reverts("NotModelProvider", send, tt, "revealKey", tid, REVEAL, RAW, sender=cp1)
    _reverts("EmptyCid", send, tt, "revealKey", tid, bytes(32), RAW, sender=mp)
    _reverts("WrongState", send, tt, "submitUpdate", 999, 0, UPD, RAW, sender=cp1)
    # The getMatch view names an unknown match too.
    resp = env["w3"].provider.make_request(
        "eth_call", [{"to": tt.address, "data": tt.encode_abi("getMatch", args=[tid, 1])}, "latest"])
    assert decode_revert(tt.abi, resp["error"]["data"]) == Reverted("UnknownMatch", (tid, 1))


def test_abandoned_task_pays_compute_work_and_refunds_the_rest(env):
    w3, tt, mp, cp1, cp2 = env["w3"], env["tt"], env["mp"], env["cp1"], env["cp2"]
    tid, deadline, _ = _open(env, pool=5 * ETH, rounds=3, ttl=HOUR)
    send(tt, "recordMatch", tid, env["dp1"], cp1, 3 * ETH, sender=mp)
    send(tt, "recordMatch", tid, env["dp2"], cp2, ETH, sender=mp)
    send(tt, "submitUpdate", tid, 0, UPD, RAW, sender=cp1)  # 1 of 3 rounds -> 1 ETH; cp2 did nothing
    e = _reverts("DeadlineNotPassed", send, tt, "refundAbandoned", tid, sender=env["stranger"])
    assert e.args == (tid, deadline)
    env["a"].increase_time(HOUR + 1)
    e = _reverts("DeadlinePassed", send, tt, "submitUpdate", tid, 0, UPD, RAW, sender=cp1)
    assert e.args == (tid, deadline)
    _reverts("DeadlinePassed", send, tt, "publishGlobalModel", tid, GLOBAL, RAW, sender=mp)
    _reverts("DeadlinePassed", send, tt, "recordMatch", tid, env["dp1"], cp1, 0, sender=mp)
    _reverts("RoundsNotComplete", send, tt, "finishTask", tid, [0, 0], sender=mp)
    mp_before = tt.functions.balances(mp).call()
    cp1_before = tt.functions.balances(cp1).call()
    rcpt = send(tt, "refundAbandoned", tid, sender=env["stranger"])  # anyone may trigger it
    assert events(tt, rcpt, "TaskAbandoned") == [{"taskId": tid, "computeTotal": ETH, "refund": 4 * ETH}]
    assert events(tt, rcpt, "RewardCredited") == [{"taskId": tid, "account": cp1, "amount": ETH, "compute": True}]
    assert tt.functions.balances(mp).call() == mp_before + 4 * ETH
    assert tt.functions.balances(cp1).call() == cp1_before + ETH
    assert _task(env, tid)[4:6] == (ABANDONED, 0)
    _reverts("WrongState", send, tt, "refundAbandoned", tid, sender=mp)
    before = w3.eth.get_balance(mp)
    rcpt = send(tt, "withdraw", sender=mp)
    assert w3.eth.get_balance(mp) == before + mp_before + 4 * ETH - gas_cost(rcpt)
    rcpt = send(tt, "withdraw", sender=cp1)
    assert w3.eth.get_balance(tt.address) == 0
