"""Chain client against a real anvil: transactions, concurrent nonces, revert decoding, proofs, a down endpoint."""

from __future__ import annotations

import pytest
import trio

from dainode.chain.proof import StateVerifier
from dainode.chain.rpc import RpcClient, to_int
from dainode.errors import ChainUnavailable, ProofError, TransactionReverted
from tests.integration.chain_env import anvil, client, deployed  # noqa: F401 (module-scoped fixtures)
from tests.integration.chain_env import DEV_KEY_2, AnvilProcess, cid, deploy_all, make_client

OFFER_DATA = 0  # Registry offer kind


async def transact(c, name, fn, *args, **kw):
    contract = c.contracts[name]
    return await c.tx.send(contract.address, contract.encode_call(fn, *args), what=f"{name}.{fn}", prefer=name, **kw)


async def call(c, name, fn, *args):
    contract = c.contracts[name]
    return contract.decode_result(fn, len(args), await c.tx.call_raw(contract.address, contract.encode_call(fn, *args)))


async def test_transaction_roundtrip_and_decoded_receipt_event(client):
    before = await call(client, "Registry", "nextOfferId")
    receipt = await transact(client, "Registry", "registerOffer", OFFER_DATA, cid(7), 0x55, 10**15)
    assert to_int(receipt["status"]) == 1
    events = [client.contracts.decode_log(lg) for lg in receipt["logs"]]
    assert [e.name for e in events] == ["OfferRegistered"]
    ev = events[0]
    assert ev.args["owner"] == client.signer.address and ev.args["cid"] == cid(7) and ev.args["price"] == 10**15
    assert ev.args["offerId"] == before and ev.tx_hash == receipt["transactionHash"]
    assert await call(client, "Registry", "nextOfferId") == before + 1
    # the transaction is EIP-1559 and within the configured cap
    tx = await client.rpc.call("eth_getTransactionByHash", receipt["transactionHash"])
    assert to_int(tx["type"]) == 2 and to_int(tx["maxFeePerGas"]) <= client.tx.max_fee_wei


async def test_twenty_concurrent_senders_never_collide_on_nonces(client):
    start_nonce = to_int(await client.rpc.call("eth_getTransactionCount", client.signer.address, "pending"))
    before = await call(client, "Registry", "nextOfferId")
    receipts = []

    async def one(i):
        receipts.append(await transact(client, "Registry", "registerOffer", OFFER_DATA, cid(1000 + i), 0x55, i + 1))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert len(receipts) == 20 and all(to_int(r["status"]) == 1 for r in receipts)
    nonces = sorted([to_int((await client.rpc.call("eth_getTransactionByHash", r["transactionHash"]))["nonce"]) for r in receipts])
    assert nonces == list(range(start_nonce, start_nonce + 20))
    assert await call(client, "Registry", "nextOfferId") == before + 20


async def test_nonce_manager_recovers_after_restart_and_foreign_sends(anvil, deployed, client):
    await transact(client, "Registry", "registerOffer", OFFER_DATA, cid(1), 0x55, 1)  # primes the cached nonce
    # A second process using the same key (or this node before a restart) sends behind our back.
    other = make_client(anvil.url, key=client.signer._account.key.hex(), contracts=deployed)
    try:
        for i in range(3):
            await transact(other, "Registry", "registerOffer", OFFER_DATA, cid(2 + i), 0x55, 1)
    finally:
        await other.rpc.aclose()
    resyncs = client.nonces.resyncs
    # Our cached nonce is now stale: the manager must notice ("nonce too low") and resync.
    receipt = await transact(client, "Registry", "registerOffer", OFFER_DATA, cid(9), 0x55, 1)
    assert to_int(receipt["status"]) == 1
    assert client.nonces.resyncs > resyncs


async def test_custom_errors_are_decoded_from_estimate_and_from_a_mined_failure(anvil, deployed, client):
    with pytest.raises(TransactionReverted) as info:
        await transact(client, "Registry", "registerOffer", OFFER_DATA, bytes(32), 0x55, 1)
    assert info.value.error_name == "EmptyCid" and "Registry.EmptyCid" in str(info.value)
    # Skip estimation (explicit gas): the tx is mined with status 0; the replay names the error.
    with pytest.raises(TransactionReverted) as info:
        await transact(client, "Registry", "registerOffer", OFFER_DATA, bytes(32), 0x55, 1, gas=200_000)
    assert info.value.error_name == "EmptyCid" and info.value.tx_hash
    receipt = await client.rpc.call("eth_getTransactionReceipt", info.value.tx_hash)
    assert to_int(receipt["status"]) == 0
    # An error with arguments: someone else withdraws our offer.
    r = await transact(client, "Registry", "registerOffer", OFFER_DATA, cid(77), 0x55, 5)
    offer_id = client.contracts.decode_log(r["logs"][0]).args["offerId"]
    stranger = make_client(anvil.url, key=DEV_KEY_2, contracts=deployed)
    try:
        with pytest.raises(TransactionReverted) as info:
            await transact(stranger, "Registry", "withdrawOffer", offer_id)
    finally:
        await stranger.rpc.aclose()
    assert info.value.error_name == "NotOfferOwner"
    assert info.value.error_args == (offer_id, stranger.signer.address)
    assert "NotOfferOwner" in str(info.value)


async def test_verified_state_matches_the_chain_and_tampering_is_rejected(anvil, client):
    registry = client.contracts["Registry"].address
    await transact(client, "Registry", "registerOffer", OFFER_DATA, cid(5), 0x55, 3)
    verifier = StateVerifier(client.rpc)
    head = to_int(await client.rpc.call("eth_blockNumber"))
    res = await verifier.verify_state(registry, [0, 1, 2, 3], head)
    for slot_hex, value in res["storage"].items():
        assert to_int(value) == to_int(await client.rpc.call("eth_getStorageAt", registry, slot_hex, hex(head)))
    assert any(to_int(v) for v in res["storage"].values()), "the registry has non-zero storage after an offer"
    assert res["account"]["has_code"] is True
    me = await verifier.verify_account(client.signer.address, head)
    assert me.balance == to_int(await client.rpc.call("eth_getBalance", client.signer.address, hex(head)))
    assert me.nonce == to_int(await client.rpc.call("eth_getTransactionCount", client.signer.address, hex(head)))

    class Tampering(RpcClient):
        """A man in the middle between us and the real anvil."""

        def __init__(self, url, mutate):
            super().__init__(url)
            self.mutate = mutate

        async def call(self, method, *params):
            result = await super().call(method, *params)
            return self.mutate(method, result)

    def lie_about_balance(method, result):
        if method == "eth_getProof":
            result["balance"] = hex(int(result["balance"], 16) + 10**18)
        return result

    def flip_proof_node(method, result):
        if method == "eth_getProof":
            node = result["accountProof"][-1]
            result["accountProof"][-1] = node[:-2] + ("00" if node[-2:] != "00" else "01")
        return result

    def lie_about_storage(method, result):
        if method == "eth_getProof" and result["storageProof"]:
            result["storageProof"][0]["value"] = hex(int(result["storageProof"][0]["value"], 16) + 1)
        return result

    def fake_state_root(method, result):
        if method == "eth_getBlockByNumber" and result:
            result["stateRoot"] = "0x" + "11" * 32
        return result

    for mutate in (lie_about_balance, flip_proof_node, lie_about_storage, fake_state_root):
        evil = Tampering(anvil.url, mutate)
        try:
            with pytest.raises(ProofError):
                await StateVerifier(evil).verify_state(registry, [0, 1], head)
        finally:
            await evil.aclose()


async def test_a_down_endpoint_is_a_clear_error_not_a_hang(tmp_path):
    dead = AnvilProcess(tmp_path)  # a free port nobody listens on
    rpc = RpcClient(dead.url, retries=2, backoff_s=0.05)
    with trio.fail_after(10):
        with pytest.raises(ChainUnavailable, match="unreachable"):
            await rpc.call("eth_chainId")
    await rpc.aclose()


async def test_the_private_key_never_reaches_the_endpoint_or_the_logs(anvil, deployed, caplog):
    import json as _json
    import logging

    class Recording(RpcClient):
        def __init__(self, url):
            super().__init__(url)
            self.sent: list[str] = []

        async def _post(self, payload, what):
            self.sent.append(_json.dumps(payload))
            return await super()._post(payload, what)

    from eth_account import Account

    from tests.integration.chain_env import make_client

    account = Account.create()
    c = make_client(anvil.url, key=account.key.hex(), contracts=deployed)
    c.rpc = c.tx.rpc = c.nonces.rpc = Recording(anvil.url)
    await c.rpc.call("anvil_setBalance", c.signer.address, hex(10**18))
    caplog.set_level(logging.DEBUG, logger="dainode")
    receipt = await transact(c, "Registry", "registerOffer", OFFER_DATA, cid(11), 0x55, 1)
    assert to_int(receipt["status"]) == 1
    key_hex = account.key.hex().removeprefix("0x")
    assert any("eth_sendRawTransaction" in s for s in c.rpc.sent)
    assert all(key_hex not in s.lower() for s in c.rpc.sent)
    assert key_hex not in caplog.text.lower() and key_hex not in repr(c.signer)
    await c.rpc.aclose()
