"""TrainingTask on a real anvil: Python-built EIP-712 consents accepted, a full task, reverts by name, the typed binding."""

from __future__ import annotations

import pytest
from eth_account import Account

from dainode.chain.consent import MatchConsent, consent_digest, sign_consent
from dainode.chain.contracts import load_contracts
from dainode.chain.training_task import (
    Phase, TaskParams, TrainingTaskBinding, cid_to_chain, commit_test_set, consent_to_abi, event_cids,
)
from dainode.store.cid import cid_of
from tests.integration.chain_env import make_client
from tests.integration.contracts_anvil import Reverted, anvil_fixture, deploy, events, send

anvil = pytest.fixture(scope="module")(anvil_fixture)

ETH = 10**18
RAW = 0x55
HOUR = 3600
RD, AW, CW = 600, 300, 900
MNEMONIC = "test test test test test test test test test test test junk"  # anvil's public dev mnemonic
Account.enable_unaudited_hdwallet_features()
MANIFEST, HEKEY, ENCKEY, TESTSET, UPD, GLOBAL, REPORT, KEY = (cid_of(bytes([i]) * 8) for i in range(0x11, 0x19))
SALT = b"\x5a" * 32


def _key(i: int):
    return Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")


@pytest.fixture
def env(anvil):
    w3 = anvil.w3
    acc = w3.eth.accounts
    reg = deploy(w3, "Registry", sender=acc[0])
    tt = deploy(w3, "TrainingTask", reg.address, acc[9], sender=acc[0])
    e = dict(a=anvil, w3=w3, reg=reg, tt=tt, mp=acc[1], dp1=acc[2], dp2=acc[3], cp1=acc[4], cp2=acc[5],
             stranger=acc[6], arb=acc[9], keys={acc[i]: _key(i) for i in range(10)})
    assert all(e["keys"][a].address == a for a in acc[:10])
    e["offers"] = {}
    for who, kind in (("dp1", 0), ("dp2", 0), ("cp1", 1), ("cp2", 1)):
        rcpt = send(reg, "registerOffer", kind, bytes([0x40 + kind]) * 32, RAW, 10**15, sender=e[who])
        e["offers"][who] = events(reg, rcpt, "OfferRegistered")[0]["offerId"]
    return e


def _reverts(name, fn, *args, **kw):
    with pytest.raises(Reverted) as ei:
        fn(*args, **kw)
    assert ei.value.name == name, f"expected {name}, got {ei.value}"
    return ei.value


def _params(env, rounds=2, quorum=0, commitment=None) -> TaskParams:
    now = env["a"].now()
    return TaskParams(MANIFEST, HEKEY, ENCKEY, commitment or commit_test_set(TESTSET, SALT), rounds, RD, AW, CW,
                      now + 60 + TaskParams.span(rounds, RD, AW) + HOUR, quorum)


def _open(env, pool=10 * ETH, **kw):
    rcpt = send(env["tt"], "openTask", _params(env, **kw).to_abi(), sender=env["mp"], value=pool)
    return events(env["tt"], rcpt, "TaskOpened")[0]["taskId"]


def _consent(env, tid, dp, cp, dprice, cprice, *, signer_dp=None, signer_cp=None):
    c = MatchConsent(tid, env["offers"][dp], env["offers"][cp], dprice, cprice, env["a"].now() + HOUR)
    tt = env["tt"]
    ds = sign_consent(signer_dp or env["keys"][env[dp]], c, 31337, tt.address)
    cs = sign_consent(signer_cp or env["keys"][env[cp]], c, 31337, tt.address)
    return c, ds, cs


def _match(env, c, ds, cs):
    return send(env["tt"], "recordMatch", consent_to_abi(c), ds, cs, sender=env["mp"])


def test_consent_signed_in_python_is_accepted_and_a_forged_one_is_not(env):
    tt = env["tt"]
    tid = _open(env)
    c, ds, cs = _consent(env, tid, "dp1", "cp1", ETH, 2 * ETH)
    on_chain = tt.functions.consentDigest(consent_to_abi(c)).call()
    assert bytes(on_chain) == consent_digest(c, 31337, tt.address)
    forged = sign_consent(env["keys"][env["stranger"]], c, 31337, tt.address)
    e = _reverts("InvalidSignature", _match, env, c, forged, cs)
    assert e.args == (env["dp1"],)
    e = _reverts("InvalidSignature", _match, env, c, ds, ds)  # the data provider cannot sign for the compute one
    assert e.args == (env["cp1"],)
    rcpt = _match(env, c, ds, cs)
    assert events(tt, rcpt, "MatchRecorded") == [{
        "taskId": tid, "matchId": 0, "dataProvider": env["dp1"], "computeProvider": env["cp1"],
        "dataOfferId": c.data_offer_id, "computeOfferId": c.compute_offer_id, "dataPrice": ETH, "computePrice": 2 * ETH}]
    _reverts("ConsentAlreadyUsed", _match, env, c, ds, cs)
    assert tt.functions.task(tid).call()[9] == 7 * ETH  # bonus = pool - reserved prices


def test_full_task_credits_the_whole_pool_and_withdrawals_drain_it(env):
    w3, tt, a = env["w3"], env["tt"], env["a"]
    mp, dp1, dp2, cp1, cp2, arb = (env[k] for k in ("mp", "dp1", "dp2", "cp1", "cp2", "arb"))
    tid = _open(env, pool=10 * ETH, rounds=2)
    _match(env, *_consent(env, tid, "dp1", "cp1", ETH, 2 * ETH))
    _match(env, *_consent(env, tid, "dp2", "cp2", ETH, 2 * ETH))
    for m, dp in ((0, dp1), (1, dp2)):
        send(tt, "provideData", tid, m, *cid_to_chain(UPD), *cid_to_chain(KEY), sender=dp)
    _reverts("NotModelProvider", send, tt, "startTraining", tid, sender=dp1)
    send(tt, "startTraining", tid, sender=mp)
    _reverts("WrongPhase", _match, env, *_consent(env, tid, "dp1", "cp2", 0, 0))
    for r in range(2):
        send(tt, "submitUpdate", tid, 0, r, *cid_to_chain(UPD), sender=cp1)
        if r == 0:
            e = _reverts("QuorumNotReached", send, tt, "publishGlobalModel", tid, r, *cid_to_chain(GLOBAL), sender=mp)
            assert e.args == (tid, 0, 1, 2)
            send(tt, "submitUpdate", tid, 1, r, *cid_to_chain(UPD), sender=cp2)
        else:
            a.increase_time(RD)  # cp2 skips round 1: wait out the window
        rcpt = send(tt, "publishGlobalModel", tid, r, *cid_to_chain(GLOBAL), sender=mp)
        assert events(tt, rcpt, "GlobalModelPublished")[0]["round"] == r
    assert tt.functions.balances(cp1).call() == 2 * ETH and tt.functions.balances(cp2).call() == ETH
    bonus = tt.functions.task(tid).call()[9]
    assert bonus == 4 * ETH + ETH  # pool - reserved prices + cp2's skipped share
    _reverts("SplitNotFull", send, tt, "postSplit", tid, [0, 0], *cid_to_chain(REPORT), sender=mp)
    split = [3 * ETH, 2 * ETH]
    send(tt, "postSplit", tid, split, *cid_to_chain(REPORT), sender=mp)
    send(tt, "revealKey", tid, *cid_to_chain(KEY), sender=mp)
    _reverts("TestSetMismatch", send, tt, "revealTestSet", tid, *cid_to_chain(TESTSET), b"\x00" * 32, sender=mp)
    send(tt, "revealTestSet", tid, *cid_to_chain(TESTSET), SALT, sender=mp)
    _reverts("TooEarly", send, tt, "finalize", tid, split, sender=env["stranger"])
    a.increase_time(CW + 1)
    _reverts("ChallengeWindowPassed", send, tt, "challenge", tid, *cid_to_chain(REPORT), sender=dp2)
    send(tt, "finalize", tid, split, sender=env["stranger"])
    assert tt.functions.task(tid).call()[1] == Phase.FINAL
    credited = {who: tt.functions.balances(who).call() for who in (mp, dp1, dp2, cp1, cp2, arb)}
    assert credited == {mp: 0, dp1: 4 * ETH, dp2: 3 * ETH, cp1: 2 * ETH, cp2: ETH, arb: 0}
    assert sum(credited.values()) == 10 * ETH == w3.eth.get_balance(tt.address)
    for who in (dp1, cp1, cp2):
        send(tt, "withdraw", sender=who)
    before = w3.eth.get_balance(env["stranger"])
    send(tt, "withdrawTo", env["stranger"], sender=dp2)
    assert w3.eth.get_balance(env["stranger"]) == before + 3 * ETH
    assert w3.eth.get_balance(tt.address) == 0
    _reverts("NothingToWithdraw", send, tt, "withdraw", sender=dp2)


def test_silent_model_provider_is_abandoned_by_anyone_and_data_providers_get_the_bonus(env):
    tt, a = env["tt"], env["a"]
    tid = _open(env, pool=10 * ETH, rounds=3)
    _match(env, *_consent(env, tid, "dp1", "cp1", ETH, 3 * ETH))
    send(tt, "provideData", tid, 0, *cid_to_chain(UPD), *cid_to_chain(KEY), sender=env["dp1"])
    send(tt, "startTraining", tid, sender=env["mp"])
    send(tt, "submitUpdate", tid, 0, 0, *cid_to_chain(UPD), sender=env["cp1"])
    _reverts("TooEarly", send, tt, "abandon", tid, sender=env["stranger"])
    a.increase_time(RD + AW + 1)
    _reverts("AggregationWindowPassed", send, tt, "publishGlobalModel", tid, 0, *cid_to_chain(GLOBAL), sender=env["mp"])
    send(tt, "abandon", tid, sender=env["stranger"])
    assert tt.functions.balances(env["cp1"]).call() == ETH  # the one submitted round
    assert tt.functions.balances(env["dp1"]).call() == 9 * ETH  # price + bonus + unearned compute
    assert tt.functions.balances(env["mp"]).call() == 0


async def test_typed_binding_takes_and_returns_cid_objects(env):
    """The node's own client (TxManager, offline-signed txs) through TrainingTaskBinding."""
    contracts = load_contracts().with_addresses({"TrainingTask": env["tt"].address, "Registry": env["reg"].address})
    client = make_client(env["a"].url, key=env["keys"][env["mp"]].key, contracts=contracts)
    try:
        tt = TrainingTaskBinding(client.tx, contracts)
        params = _params(env, rounds=1, quorum=1)
        tid = await tt.open_task(params, 3 * ETH)
        state = await tt.task(tid)
        assert (state.phase, state.model_provider, state.escrow, state.bonus, state.rounds, state.arbiter) == (
            Phase.MATCHING, env["mp"], 3 * ETH, 3 * ETH, 1, env["arb"])
        c, ds, cs = _consent(env, tid, "dp1", "cp1", ETH, ETH)
        assert await tt.consent_digest(c) == tt.local_consent_digest(c, 31337)
        assert await tt.record_match(c, ds, cs) == 0
        m = await tt.match(tid, 0)
        assert (m.data_provider, m.compute_provider, m.data_price, m.provided, m.last_round) == (
            env["dp1"], env["cp1"], ETH, False, None)
        rcpt = await tt.start_training(tid)
        assert [e.name for e in rcpt["events"]] == ["TrainingStarted"]
        assert (await tt.task(tid)).phase == Phase.TRAINING
        # Another party acts through web3; the binding's decoder turns its event back into a CID.
        h = send(env["tt"], "submitUpdate", tid, 0, 0, *cid_to_chain(UPD), sender=env["cp1"])["transactionHash"]
        raw = await client.rpc.call("eth_getTransactionReceipt", "0x" + bytes(h).hex())
        ev = contracts.decode_log(raw["logs"][0])
        assert ev.name == "UpdateSubmitted" and event_cids(ev) == {"cid": UPD}
        rcpt = await tt.publish_global_model(tid, 0, GLOBAL)
        pub = next(e for e in rcpt["events"] if e.name == "GlobalModelPublished")
        assert event_cids(pub) == {"cid": GLOBAL}
        assert (await tt.match(tid, 0)).last_round == 0
        assert await tt.balance_of(env["cp1"]) == ETH
        rcpt = await tt.post_split(tid, [0], REPORT)  # dp1 never provided data: nobody to give a bonus
        assert event_cids(next(e for e in rcpt["events"] if e.name == "SplitPosted")) == {"report": REPORT}
        assert (await tt.task(tid)).phase == Phase.SPLIT_POSTED
    finally:
        await client.rpc.aclose()
