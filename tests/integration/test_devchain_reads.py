"""Reads at `latest` while anvil mines: the dev chain's anvil and RpcClient never fail them (the BlockOutOfRange race)."""

from __future__ import annotations

import time

import httpx
import trio

from dainode.chain.devchain import DevChain
from dainode.chain.rpc import RpcClient
from dainode.errors import ChainRpcError

LOOP_S = 8.0


async def hammer(url: str, read) -> tuple[int, list[str]]:
    """Mine blocks back to back while `read` runs eth_call/eth_getBalance at latest for LOOP_S; (reads, errors)."""
    miner = RpcClient(url)
    stop = trio.Event()
    count, errors = 0, []

    async def mine():
        while not stop.is_set():
            await miner.call("evm_mine")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(mine)
        account = (await miner.call("eth_accounts"))[0]
        deadline = time.monotonic() + LOOP_S
        while time.monotonic() < deadline:
            for method, params in (("eth_call", [{"to": account, "data": "0x"}, "latest"]), ("eth_getBalance", [account, "latest"])):
                count += 1
                error = await read(method, params)
                if error:
                    errors.append(error)
        stop.set()
    assert int(await miner.call("eth_blockNumber"), 16) > 100  # blocks really were mined under the reads
    await miner.aclose()
    return count, errors


async def test_the_dev_chains_anvil_answers_every_read_at_latest_while_mining(tmp_path):
    """Raw JSON-RPC (no client retry): anvil as DevChain runs it (state file, dump every second, pruned history)."""
    async with DevChain(tmp_path / "chain") as dev, httpx.AsyncClient() as http:
        async def read(method, params):
            reply = (await http.post(dev.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).json()
            return reply.get("error", {}).get("message")

        count, errors = await hammer(dev.url, read)
    assert count > 500 and errors == [], f"{len(errors)} of {count} reads at latest failed, e.g. {errors[:3]}"


async def test_the_client_retries_the_race_on_an_anvil_keeping_one_state(tmp_path):
    """A bare `--prune-history` (one state kept, as on an endpoint we do not start) races; RpcClient hides it."""
    dev = DevChain(tmp_path / "chain", prune_history=False, extra_args=["--prune-history"])
    async with dev:
        rpc = RpcClient(dev.url)

        async def read(method, params):
            try:
                await rpc.call(method, *params)
            except ChainRpcError as exc:
                return str(exc)

        count, errors = await hammer(dev.url, read)
        retried = rpc.stats.retries
        await rpc.aclose()
    assert count > 500 and errors == [], f"{len(errors)} of {count} reads at latest failed, e.g. {errors[:3]}"
    assert retried > 0  # the race did happen here and was retried (else this test shows nothing)
