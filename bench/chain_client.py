"""Per-call costs of the trio chain client against a fresh anvil (prints figures and ratios vs web3 in a thread)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dainode.chain.proof import StateVerifier  # noqa: E402
from dainode.chain.watcher import EventWatcher, ws_url_for  # noqa: E402
from tests.integration.chain_env import AnvilProcess, cid, deploy_all, make_client  # noqa: E402


def ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


async def timed(n: int, fn) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def bench(url: str, n_tx: int) -> dict:
    c = make_client(url)
    contracts = await deploy_all(c)
    reg = contracts["Registry"]
    res: dict = {}
    res["call_eth_blockNumber_ms"] = ms(await timed(300, lambda: c.rpc.call("eth_blockNumber")))
    calls = [("eth_getBalance", [c.signer.address, "latest"])] * 20
    res["batch_20_ms"] = ms(await timed(50, lambda: c.rpc.batch(calls)))

    async def seq20():
        for m, p in calls:
            await c.rpc.call(m, *p)

    res["sequential_20_ms"] = ms(await timed(20, seq20))

    counter = iter(range(10**6))

    async def one_tx():
        await c.tx.send(reg.address, reg.encode_call("registerOffer", 0, cid(next(counter) + 1), 0x55, 1), what="registerOffer")

    samples = await timed(n_tx, one_tx)
    res["transact_ms"] = ms(samples)
    res["transact_sequential_tx_per_s"] = round(n_tx / sum(samples), 1)
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n_tx):
            nursery.start_soon(one_tx)
    res["transact_concurrent_tx_per_s"] = round(n_tx / (time.perf_counter() - t0), 1)

    verifier = StateVerifier(c.rpc)
    res["verify_state_account_2_slots_ms"] = ms(await timed(50, lambda: verifier.verify_state(reg.address, [0, 1])))

    for mode in ("websocket", "polling"):
        w = EventWatcher(c.rpc, contracts, cursor_path=None, start_block=int(await c.rpc.call("eth_blockNumber"), 16) + 1,
                         poll_interval_s=0.1 if mode == "polling" else 30, ws_url=ws_url_for(url) if mode == "websocket" else None)
        chan = w.subscribe()
        lat = []
        async with trio.open_nursery() as nursery:
            await nursery.start(w.run)
            await trio.sleep(0.3)
            for _ in range(20):
                # the event latency: from "receipt in hand" to "event at the subscriber"
                await c.tx.send(reg.address, reg.encode_call("registerOffer", 0, cid(next(counter) + 1), 0x55, 1), what="r")
                t0 = time.perf_counter()
                await chan.receive()
                lat.append(time.perf_counter() - t0)
            nursery.cancel_scope.cancel()
        res[f"event_latency_{mode}_ms"] = ms(lat)
    await c.rpc.aclose()
    return res


def web3_thread(url: str) -> float:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url))

    async def go():
        out = []
        for _ in range(300):
            t0 = time.perf_counter()
            await trio.to_thread.run_sync(lambda: w3.eth.block_number)
            out.append(time.perf_counter() - t0)
        return ms(out)

    return trio.run(go)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tx", type=int, default=100, help="transactions per throughput run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        anvil = AnvilProcess(Path(d)).start()
        try:
            res = trio.run(bench, anvil.url, args.tx)
            res["web3_sync_in_thread_eth_blockNumber_ms"] = web3_thread(anvil.url)
        finally:
            anvil.stop()
    res["ratio_web3_thread_vs_httpx_call"] = round(res["web3_sync_in_thread_eth_blockNumber_ms"] / res["call_eth_blockNumber_ms"], 2)
    res["ratio_sequential20_vs_batch20"] = round(res["sequential_20_ms"] / res["batch_20_ms"], 2)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:45s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
