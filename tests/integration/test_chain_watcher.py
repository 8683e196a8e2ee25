"""Event watcher against a real anvil: websocket and polling delivery, cursor resume, reorgs, endpoint restarts."""

from __future__ import annotations

import json

import pytest
import trio

from dainode.chain.rpc import to_int
from dainode.chain.watcher import EventWatcher, ws_url_for
from dainode.errors import ChainUnavailable
from tests.integration.chain_env import anvil, client, deployed  # noqa: F401 (module-scoped fixtures)
from tests.integration.chain_env import AnvilProcess, cid, deploy_all, make_client

TIMEOUT = 30  # only to stop hangs


def watcher_for(client, url, cursor, *, ws=True, start_block=None, poll=0.1):
    return EventWatcher(
        client.rpc, client.contracts, cursor_path=cursor, start_block=start_block or 0,
        poll_interval_s=poll, ws_url=ws_url_for(url) if ws else None, backoff_max_s=0.5,
    )


async def register(client, n, price=1):
    reg = client.contracts["Registry"]
    receipt = await client.tx.send(reg.address, reg.encode_call("registerOffer", 0, cid(n), 0x55, price), what="registerOffer")
    return client.contracts.decode_log(receipt["logs"][0]), receipt


async def next_events(chan, n):
    out = []
    with trio.fail_after(TIMEOUT):
        while len(out) < n:
            out.append(await chan.receive())
    return out


@pytest.mark.parametrize("ws", [True, False], ids=["websocket", "polling"])
async def test_events_delivered_in_order_and_cursor_resumes(anvil, client, tmp_path, ws):
    cursor = tmp_path / "cursor.json"
    head = to_int(await client.rpc.call("eth_blockNumber"))
    watcher = watcher_for(client, anvil.url, cursor, ws=ws, start_block=head + 1, poll=0.1 if not ws else 30)
    events = watcher.subscribe("Registry")
    sent = []
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        for i in range(3):
            sent.append((await register(client, 100 + i))[0])
        got = await next_events(events, 3)
        if ws:
            assert watcher.ws_connected, "anvil serves websocket on the HTTP port; the watcher must use it"
        nursery.cancel_scope.cancel()
    assert [(e.name, e.args["offerId"], e.tx_hash) for e in got] == [(e.name, e.args["offerId"], e.tx_hash) for e in sent]
    assert all(not e.removed for e in got)
    saved = json.loads(cursor.read_text())
    assert saved["block"] >= sent[-1].block_number

    # A new watcher (a restarted node) resumes from the cursor: nothing old again, new ones yes.
    again = watcher_for(client, anvil.url, cursor, ws=ws, start_block=0)
    chan = again.subscribe()
    again.cursor.load()
    assert await again.sync_once() == 0
    later, _ = await register(client, 200)
    assert await again.sync_once() == 1
    assert (await chan.receive()).tx_hash == later.tx_hash


async def test_reorg_redelivers_removed_and_new_events(anvil, client, tmp_path):
    head = to_int(await client.rpc.call("eth_blockNumber"))
    watcher = watcher_for(client, anvil.url, tmp_path / "cursor.json", start_block=head + 1)
    chan = watcher.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        keep, _ = await register(client, 300)
        snapshot = anvil.rpc("evm_snapshot")
        orphan1, _ = await register(client, 301)
        orphan2, _ = await register(client, 302)
        first = await next_events(chan, 3)
        assert [e.tx_hash for e in first] == [keep.tx_hash, orphan1.tx_hash, orphan2.tx_hash]

        assert anvil.rpc("evm_revert", snapshot) is True
        client.nonces.resync()  # the reverted transactions' nonces are free again on the new branch
        replacement, _ = await register(client, 303, price=9)
        second = await next_events(chan, 3)
        nursery.cancel_scope.cancel()
    # Orphaned events come back flagged removed (newest first), then the new branch's event.
    assert [(e.tx_hash, e.removed) for e in second[:2]] == [(orphan2.tx_hash, True), (orphan1.tx_hash, True)]
    assert second[2].tx_hash == replacement.tx_hash and not second[2].removed and second[2].args["price"] == 9
    assert watcher.reorgs == 1
    assert watcher.cursor.hash == (await client.rpc.call("eth_getBlockByNumber", hex(watcher.cursor.block), False))["hash"]


async def test_watcher_and_client_survive_an_endpoint_restart(tmp_path):
    node = AnvilProcess(tmp_path, state=True)
    await trio.to_thread.run_sync(node.start)
    try:
        client = make_client(node.url)
        await deploy_all(client)
        # Slow polling: prompt delivery after the restart needs the websocket to come back.
        watcher = watcher_for(client, node.url, tmp_path / "cursor.json", start_block=1, poll=60)
        chan = watcher.subscribe("Registry")
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            before, _ = await register(client, 400)
            assert (await next_events(chan, 1))[0].tx_hash == before.tx_hash

            await trio.to_thread.run_sync(node.stop)  # anvil writes its --state file
            with trio.fail_after(TIMEOUT):
                with pytest.raises(ChainUnavailable):
                    await register(client, 401)
            await trio.sleep(0.3)  # the watcher meets the outage too, and backs off
            await trio.to_thread.run_sync(node.start)  # same port, same chain

            after, _ = await register(client, 402)
            got = await next_events(chan, 1)
            assert watcher.ws_connected
            nursery.cancel_scope.cancel()
        assert got[0].tx_hash == after.tx_hash and not got[0].removed
        assert watcher.reorgs == 0, "the reloaded chain keeps its block hashes; nothing was re-delivered"
        await client.rpc.aclose()
    finally:
        await trio.to_thread.run_sync(node.stop)
