"""ChainService in-process with its own dev chain: the Python API roles use (transact, call, events, proofs)."""

from __future__ import annotations

import psutil
import pytest
import trio
from eth_account import Account

from dainode.config import build_config
from dainode.chain.service import ChainService
from dainode.errors import TransactionReverted
from tests.integration.chain_env import cid


async def test_service_api_against_its_dev_chain(tmp_path):
    config = build_config(environ={}, flags={"data_dir": str(tmp_path / "node"), "chain.endpoint": "dev"})
    (tmp_path / "node").mkdir()
    service = ChainService(config, Account.create())
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            anvil = psutil.Process(service.dev.pid)
            events = service.events("Registry")
            first = await service.call("Registry", "nextOfferId")
            receipt = await service.transact("Registry", "registerOffer", 1, cid(42), 0x55, 123)
            assert [e.name for e in receipt["events"]] == ["OfferRegistered"]
            await service.watcher.wait_synced(int(receipt["blockNumber"], 16))
            ev = events.receive_nowait()  # wait_synced returns only after the block's events were handed over
            assert (ev.name, ev.args["offerId"], ev.args["price"], ev.args["owner"]) == ("OfferRegistered", first, 123, service.address)
            assert await service.call("Registry", "nextOfferId") == first + 1
            with pytest.raises(TransactionReverted) as info:
                await service.transact("Registry", "withdrawOffer", first + 99)
            assert info.value.error_name == "NotOfferOwner"  # an unknown offer has no owner
            assert info.value.error_args == (first + 99, service.address)
            assert await service.balance() > 0
            assert await service.verified_balance() == await service.balance()
            assert (await service.rpc_balance(verified=True))["verified"] is True
            state = await service.rpc_verify_state(service.contracts["Registry"].address, [0])
            assert state["verified"] and state["account"]["has_code"]
            info = await service.rpc_info()
            assert info["events"]["delivered"] >= 1 and info["contracts"] == service.deployment["contracts"]
            nursery.cancel_scope.cancel()
    assert not anvil.is_running() or anvil.status() == psutil.STATUS_ZOMBIE


async def test_dev_chain_redeploys_when_the_compiled_contracts_changed(tmp_path):
    import json
    import shutil

    from dainode.chain.contracts import default_build_dir

    build = tmp_path / "build"
    shutil.copytree(default_build_dir(), build)
    config = build_config(environ={}, flags={"data_dir": str(tmp_path / "node"), "chain.endpoint": "dev"})
    (tmp_path / "node").mkdir()
    account = Account.create()

    async def run_once():
        service = ChainService(config, account, build_dir=build)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            contracts = dict(service.deployment["contracts"])
            nursery.cancel_scope.cancel()
        return contracts

    with trio.fail_after(90):
        first = await run_once()
        assert await run_once() == first  # unchanged artifacts: the persisted deployment is reused
        art = json.loads((build / "Registry.json").read_text())
        art["bytecode"] = art["bytecode"] + "00"  # a recompiled Registry (trailing byte: still valid code)
        (build / "Registry.json").write_text(json.dumps(art))
        third = await run_once()
    assert third["Registry"] != first["Registry"]
