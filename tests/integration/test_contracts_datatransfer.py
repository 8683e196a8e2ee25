"""DataTransfer on a real anvil: every function, every revert (by custom error name), balances after payouts."""

from __future__ import annotations

import pytest

from tests.integration.contracts_anvil import ZERO, Reverted, anvil_fixture, deploy, events, gas_cost, send

anvil = pytest.fixture(scope="module")(anvil_fixture)

DURATION = 3600
PRICE = 10**18
SCHEMA, PUBKEY, AESKEY, DATA = (bytes([i]) * 32 for i in (0x11, 0x22, 0x33, 0x44))
RAW, DAG_PB = 0x55, 0x70
# Trade states (enum DataTransfer.State)
NONE, INITIATED, PROVIDED, SETTLED, REFUNDED = range(5)


@pytest.fixture
def env(anvil):
    w3 = anvil.w3
    deployer, consumer, provider, authority, stranger = w3.eth.accounts[:5]
    dt = deploy(w3, "DataTransfer", authority, DURATION, sender=deployer)
    return dict(a=anvil, w3=w3, dt=dt, consumer=consumer, provider=provider, authority=authority, stranger=stranger)


def _init(env, value=PRICE) -> int:
    rcpt = send(env["dt"], "initTransaction", env["provider"], SCHEMA, RAW, PUBKEY, DAG_PB,
                sender=env["consumer"], value=value)
    return events(env["dt"], rcpt, "TradeInitiated")[0]["tradeId"]


def _provide(env, tid):
    return send(env["dt"], "provideData", tid, AESKEY, RAW, DATA, DAG_PB, sender=env["provider"])


def _reverts(name, fn, *args, **kw):
    with pytest.raises(Reverted) as ei:
        fn(*args, **kw)
    assert ei.value.name == name, f"expected {name}, got {ei.value}"
    return ei.value


def _state(env, tid):
    return env["dt"].functions.trade(tid).call()[2]


def test_constructor_defaults_and_explicit_values(anvil):
    w3 = anvil.w3
    d = deploy(w3, "DataTransfer", ZERO, 0, sender=w3.eth.accounts[3])
    assert d.functions.authority().call() == w3.eth.accounts[3]
    assert d.functions.duration().call() == 86400
    d = deploy(w3, "DataTransfer", w3.eth.accounts[4], 60)
    assert d.functions.authority().call() == w3.eth.accounts[4]
    assert d.functions.duration().call() == 60
    assert d.functions.nextTradeId().call() == 1


def test_init_escrows_and_publishes_cids_in_the_event(env):
    w3, dt = env["w3"], env["dt"]
    before = w3.eth.get_balance(env["consumer"])
    rcpt = send(dt, "initTransaction", env["provider"], SCHEMA, RAW, PUBKEY, DAG_PB, sender=env["consumer"], value=PRICE)
    ev = events(dt, rcpt, "TradeInitiated")[0]
    block_ts = w3.eth.get_block(rcpt["blockNumber"])["timestamp"]
    assert ev == {
        "tradeId": 1, "consumer": env["consumer"], "provider": env["provider"], "amount": PRICE,
        "expirationTime": block_ts + DURATION, "schemaCid": SCHEMA, "schemaCodec": RAW,
        "consumerPubKeyCid": PUBKEY, "consumerPubKeyCodec": DAG_PB,
    }
    assert w3.eth.get_balance(dt.address) == PRICE
    assert w3.eth.get_balance(env["consumer"]) == before - PRICE - gas_cost(rcpt)
    assert tuple(dt.functions.trade(1).call()) == (env["consumer"], block_ts + DURATION, INITIATED, 0, env["provider"], PRICE)
    assert dt.functions.dataConsumer(1).call() == env["consumer"]
    assert dt.functions.dataProvider(1).call() == env["provider"]
    assert dt.functions.expirationTime(1).call() == block_ts + DURATION
    assert dt.functions.nextTradeId().call() == 2
    assert _init(env) == 2  # ids are sequential


def test_init_reverts(env):
    dt, c = env["dt"], env["consumer"]
    _reverts("NoEther", send, dt, "initTransaction", env["provider"], SCHEMA, RAW, PUBKEY, RAW, sender=c)
    e = _reverts("InvalidProvider", send, dt, "initTransaction", ZERO, SCHEMA, RAW, PUBKEY, RAW, sender=c, value=1)
    assert e.args == (ZERO,)
    e = _reverts("InvalidProvider", send, dt, "initTransaction", c, SCHEMA, RAW, PUBKEY, RAW, sender=c, value=1)
    assert e.args == (c,)
    # More than a uint96 of wei cannot be escrowed (the amount shares a slot with the provider).
    env["w3"].provider.make_request("anvil_setBalance", [env["stranger"], hex(2**100)])
    e = _reverts("AmountTooLarge", send, dt, "initTransaction", env["provider"], SCHEMA, RAW, PUBKEY, RAW,
                 sender=env["stranger"], value=2**96)
    assert e.args == (2**96,)


def test_provide_then_verify_pays_the_provider(env):
    w3, dt = env["w3"], env["dt"]
    tid = _init(env)
    rcpt = _provide(env, tid)
    assert events(dt, rcpt, "DataProvided") == [{
        "tradeId": tid, "encryptedAesKeyCid": AESKEY, "encryptedAesKeyCodec": RAW,
        "dataCid": DATA, "dataCodec": DAG_PB,
    }]
    assert _state(env, tid) == PROVIDED
    prov_before = w3.eth.get_balance(env["provider"])
    cons_before = w3.eth.get_balance(env["consumer"])
    rcpt = send(dt, "verifiedData", tid, sender=env["consumer"])
    assert events(dt, rcpt, "TradeSettled") == [
        {"tradeId": tid, "provider": env["provider"], "amount": PRICE, "forceful": False}]
    assert w3.eth.get_balance(env["provider"]) == prov_before + PRICE
    assert w3.eth.get_balance(env["consumer"]) == cons_before - gas_cost(rcpt)
    assert w3.eth.get_balance(dt.address) == 0
    assert _state(env, tid) == SETTLED
    # Settled is final: nothing can move the money again.
    _reverts("WrongState", send, dt, "verifiedData", tid, sender=env["consumer"])
    _reverts("WrongState", _provide, env, tid)
    _reverts("WrongState", send, dt, "cancel", tid, sender=env["consumer"])
    _reverts("WrongState", send, dt, "requestForcefulRefund", tid, sender=env["consumer"])
    _reverts("WrongState", send, dt, "requestForcefulSettle", tid, sender=env["provider"])


def test_provide_reverts(env):
    dt = env["dt"]
    tid = _init(env)
    e = _reverts("NotProvider", send, dt, "provideData", tid, AESKEY, RAW, DATA, RAW, sender=env["consumer"])
    assert e.args == (tid, env["consumer"])
    _reverts("NotProvider", send, dt, "provideData", 999, AESKEY, RAW, DATA, RAW, sender=env["provider"])
    _provide(env, tid)
    e = _reverts("WrongState", _provide, env, tid)
    assert e.args == (tid, PROVIDED)
    # After the expiration time the provider is too late.
    tid2 = _init(env)
    expiry = dt.functions.expirationTime(tid2).call()
    env["a"].increase_time(DURATION + 1)
    e = _reverts("Expired", _provide, env, tid2)
    assert e.args == (tid2, expiry)


def test_verify_reverts(env):
    dt = env["dt"]
    tid = _init(env)
    e = _reverts("WrongState", send, dt, "verifiedData", tid, sender=env["consumer"])
    assert e.args == (tid, INITIATED)
    _provide(env, tid)
    e = _reverts("NotConsumer", send, dt, "verifiedData", tid, sender=env["provider"])
    assert e.args == (tid, env["provider"])
    _reverts("NotConsumer", send, dt, "verifiedData", tid, sender=env["authority"])


def test_cancel_only_after_expiry_without_data_refunds(env):
    w3, dt = env["w3"], env["dt"]
    tid = _init(env)
    expiry = dt.functions.expirationTime(tid).call()
    e = _reverts("NotExpired", send, dt, "cancel", tid, sender=env["consumer"])
    assert e.args == (tid, expiry)
    env["a"].increase_time(DURATION + 1)
    _reverts("NotConsumer", send, dt, "cancel", tid, sender=env["provider"])
    before = w3.eth.get_balance(env["consumer"])
    rcpt = send(dt, "cancel", tid, sender=env["consumer"])
    assert events(dt, rcpt, "TradeRefunded") == [
        {"tradeId": tid, "consumer": env["consumer"], "amount": PRICE, "forceful": False}]
    assert w3.eth.get_balance(env["consumer"]) == before + PRICE - gas_cost(rcpt)
    assert w3.eth.get_balance(dt.address) == 0
    assert _state(env, tid) == REFUNDED
    _reverts("WrongState", send, dt, "cancel", tid, sender=env["consumer"])


def test_cancel_refused_once_data_was_provided(env):
    dt = env["dt"]
    tid = _init(env)
    _provide(env, tid)
    env["a"].increase_time(DURATION + 1)
    e = _reverts("WrongState", send, dt, "cancel", tid, sender=env["consumer"])
    assert e.args == (tid, PROVIDED)


def test_forceful_refund(env):
    w3, dt = env["w3"], env["dt"]
    tid = _init(env)
    _reverts("NotRequested", send, dt, "executeForcefulRefund", tid, sender=env["authority"])
    _reverts("NotConsumer", send, dt, "requestForcefulRefund", tid, sender=env["provider"])
    _provide(env, tid)  # a refund may be requested before or after the data arrives
    assert dt.functions.requestedForcefulRefund(tid).call() is False
    rcpt = send(dt, "requestForcefulRefund", tid, sender=env["consumer"])
    assert events(dt, rcpt, "ForcefulRefundRequested") == [{"tradeId": tid}]
    assert dt.functions.requestedForcefulRefund(tid).call() is True
    assert dt.functions.requestedForcefulSettle(tid).call() is False
    e = _reverts("NotAuthority", send, dt, "executeForcefulRefund", tid, sender=env["consumer"])
    assert e.args == (env["consumer"],)
    _reverts("NotAuthority", send, dt, "executeForcefulRefund", tid, sender=env["stranger"])
    before = w3.eth.get_balance(env["consumer"])
    prov_before = w3.eth.get_balance(env["provider"])
    rcpt = send(dt, "executeForcefulRefund", tid, sender=env["authority"])
    assert events(dt, rcpt, "TradeRefunded") == [
        {"tradeId": tid, "consumer": env["consumer"], "amount": PRICE, "forceful": True}]
    assert w3.eth.get_balance(env["consumer"]) == before + PRICE
    assert w3.eth.get_balance(env["provider"]) == prov_before
    assert w3.eth.get_balance(dt.address) == 0
    assert _state(env, tid) == REFUNDED
    _reverts("WrongState", send, dt, "executeForcefulRefund", tid, sender=env["authority"])
    _reverts("WrongState", send, dt, "verifiedData", tid, sender=env["consumer"])


def test_forceful_settle(env):
    w3, dt = env["w3"], env["dt"]
    tid = _init(env)
    e = _reverts("WrongState", send, dt, "requestForcefulSettle", tid, sender=env["provider"])
    assert e.args == (tid, INITIATED)
    _provide(env, tid)
    _reverts("NotProvider", send, dt, "requestForcefulSettle", tid, sender=env["consumer"])
    _reverts("NotRequested", send, dt, "executeForcefulSettle", tid, sender=env["authority"])
    rcpt = send(dt, "requestForcefulSettle", tid, sender=env["provider"])
    assert events(dt, rcpt, "ForcefulSettleRequested") == [{"tradeId": tid}]
    assert dt.functions.requestedForcefulSettle(tid).call() is True
    _reverts("NotAuthority", send, dt, "executeForcefulSettle", tid, sender=env["provider"])
    before = w3.eth.get_balance(env["provider"])
    rcpt = send(dt, "executeForcefulSettle", tid, sender=env["authority"])
    assert events(dt, rcpt, "TradeSettled") == [
        {"tradeId": tid, "provider": env["provider"], "amount": PRICE, "forceful": True}]
    assert w3.eth.get_balance(env["provider"]) == before + PRICE
    assert w3.eth.get_balance(dt.address) == 0
    _reverts("WrongState", send, dt, "executeForcefulSettle", tid, sender=env["authority"])


def test_forceful_settle_needs_provided_data_even_if_requested_refund(env):
    dt = env["dt"]
    tid = _init(env)
    send(dt, "requestForcefulRefund", tid, sender=env["consumer"])
    e = _reverts("WrongState", send, dt, "executeForcefulSettle", tid, sender=env["authority"])
    assert e.args == (tid, INITIATED)


def test_a_rejecting_recipient_cannot_block_the_trade_and_withdraws_later(env):
    """Push payout fails (recipient reverts) -> credited; withdraw() pays it once the recipient accepts."""
    w3, dt, p = env["w3"], env["dt"], env["provider"]
    tid = _init(env)
    _provide(env, tid)
    _reverts("NothingToWithdraw", send, dt, "withdraw", sender=p)
    w3.provider.make_request("anvil_setCode", [p, "0x5f5ffd"])  # PUSH0 PUSH0 REVERT: rejects any ETH
    try:
        before = w3.eth.get_balance(p)
        rcpt = send(dt, "verifiedData", tid, sender=env["consumer"])
        assert events(dt, rcpt, "PayoutDeferred") == [{"account": p, "amount": PRICE}]
        assert w3.eth.get_balance(p) == before
        assert _state(env, tid) == SETTLED
    finally:
        w3.provider.make_request("anvil_setCode", [p, "0x"])
    assert dt.functions.pendingWithdrawals(p).call() == PRICE
    before = w3.eth.get_balance(p)
    rcpt = send(dt, "withdraw", sender=p)
    assert events(dt, rcpt, "Withdrawn") == [{"account": p, "amount": PRICE}]
    assert w3.eth.get_balance(p) == before + PRICE - gas_cost(rcpt)
    assert dt.functions.pendingWithdrawals(p).call() == 0
    assert w3.eth.get_balance(dt.address) == 0
    _reverts("NothingToWithdraw", send, dt, "withdraw", sender=p)


def test_paper_getters_for_cids_are_answered_from_events(env):
    """The paper's ipfs*Address getters: CIDs are not in storage, they are read back from the logs."""
    dt = env["dt"]
    tid = _init(env)
    _provide(env, tid)
    init = dt.events.TradeInitiated().get_logs(from_block=0, argument_filters={"tradeId": tid})
    prov = dt.events.DataProvided().get_logs(from_block=0, argument_filters={"tradeId": tid})
    assert [(e["args"]["schemaCid"], e["args"]["consumerPubKeyCid"]) for e in init] == [(SCHEMA, PUBKEY)]
    assert [(e["args"]["encryptedAesKeyCid"], e["args"]["dataCid"]) for e in prov] == [(AESKEY, DATA)]
