#!/usr/bin/env python3
"""Gas used by every contract function on a fresh anvil, beside the paper's Table I.

Usage: python bench/gas.py [--json]
Starts its own anvil (stopped by PID on exit), deploys contracts/build/, runs each DataTransfer
function (first trade: cold storage, the worst case) and the Registry/TrainingTask ones.
Transactions report the receipt's gasUsed; getters (views) report eth_estimateGas - 21000,
i.e. execution + calldata, which is what the paper's getter rows measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.contracts_anvil import ZERO, Anvil, deploy, send  # noqa: E402

# Table I of the paper (dataTransfer.sol, Solidity 0.4, Geth 1.8.13). "commonly 21000" -> 21000.
PAPER = {
    "authority": 728, "cancel": 877, "dataConsumer": 816, "dataProvider": 706,
    "executeForcefulRefund": 21000, "executeForcefulSettle": 21000, "expirationTime": 724,
    "initTransaction": 81112, "provideData": 61061, "requestForcefulRefund": 20835,
    "requestForcefulSettle": 21100, "requestedForcefulRefund": 618, "requestedForcefulSettle": 690,
    "verifiedData": 21000,
}
TARGETS = {"initTransaction": 81112, "provideData": 61061, "trade_total": 81112 + 61061 + 21000}
ETH = 10**18
C1, C2, C3, C4 = (bytes([i]) * 32 for i in (0x11, 0x22, 0x33, 0x44))
RAW, DAG_PB = 0x55, 0x70


def measure(a: Anvil) -> dict[str, int]:
    w3 = a.w3
    deployer, consumer, provider, authority, mp, dp1, dp2, cp1, cp2 = w3.eth.accounts[:9]
    gas: dict[str, int] = {}

    def tx(c, fn, *args, sender, value=0, name=None):
        gas[name or fn] = send(c, fn, *args, sender=sender, value=value)["gasUsed"]

    def view(c, fn, *args):
        gas[fn] = w3.eth.estimate_gas({"to": c.address, "data": c.encode_abi(fn, args=list(args))}) - 21000

    dt = deploy(w3, "DataTransfer", authority, 3600, sender=deployer)
    # Trade 1: the happy path.
    tx(dt, "initTransaction", provider, C1, RAW, C2, DAG_PB, sender=consumer, value=ETH)
    tx(dt, "provideData", 1, C3, RAW, C4, DAG_PB, sender=provider)
    for fn in ("dataConsumer", "dataProvider", "expirationTime", "requestedForcefulRefund", "requestedForcefulSettle"):
        view(dt, fn, 1)
    view(dt, "authority")
    tx(dt, "verifiedData", 1, sender=consumer)
    # Trade 2: forceful refund. Trade 3: forceful settle. Trade 4: cancel after expiry.
    send(dt, "initTransaction", provider, C1, RAW, C2, RAW, sender=consumer, value=ETH)
    tx(dt, "requestForcefulRefund", 2, sender=consumer)
    tx(dt, "executeForcefulRefund", 2, sender=authority)
    send(dt, "initTransaction", provider, C1, RAW, C2, RAW, sender=consumer, value=ETH)
    send(dt, "provideData", 3, C3, RAW, C4, RAW, sender=provider)
    tx(dt, "requestForcefulSettle", 3, sender=provider)
    tx(dt, "executeForcefulSettle", 3, sender=authority)
    send(dt, "initTransaction", provider, C1, RAW, C2, RAW, sender=consumer, value=ETH)
    a.increase_time(3601)
    tx(dt, "cancel", 4, sender=consumer)
    # Trade 5: the provider rejects the pushed payout, then pulls it with withdraw().
    send(dt, "initTransaction", provider, C1, RAW, C2, RAW, sender=consumer, value=ETH)
    send(dt, "provideData", 5, C3, RAW, C4, RAW, sender=provider)
    w3.provider.make_request("anvil_setCode", [provider, "0x5f5ffd"])
    tx(dt, "verifiedData", 5, sender=consumer, name="verifiedData_deferred")
    w3.provider.make_request("anvil_setCode", [provider, "0x"])
    tx(dt, "withdraw", sender=provider)

    reg = deploy(w3, "Registry", sender=deployer)
    tx(reg, "registerOffer", 0, C1, RAW, 10**15, sender=dp1)
    tx(reg, "updateOffer", 1, C2, RAW, 2 * 10**15, sender=dp1)
    tx(reg, "withdrawOffer", 1, sender=dp1)

    tt = deploy(w3, "TrainingTask", sender=deployer)
    deadline = a.now() + 86400
    tx(tt, "openTask", C1, RAW, C2, RAW, C3, RAW, C4, 1, deadline, sender=mp, value=10 * ETH)
    tx(tt, "recordMatch", 1, dp1, cp1, ETH, sender=mp)
    send(tt, "recordMatch", 1, dp2, cp2, ETH, sender=mp)
    tx(tt, "submitUpdate", 1, 0, C1, RAW, sender=cp1)
    send(tt, "submitUpdate", 1, 1, C2, RAW, sender=cp2)
    tx(tt, "publishGlobalModel", 1, C3, RAW, sender=mp)
    tx(tt, "finishTask", 1, [2 * ETH, ETH], sender=mp)
    tx(tt, "revealKey", 1, C4, RAW, sender=mp)
    tx(tt, "withdraw", sender=dp1, name="TrainingTask.withdraw")
    send(tt, "openTask", C1, RAW, C2, RAW, C3, RAW, C4, 1, a.now() + 60, sender=mp, value=ETH)
    send(tt, "recordMatch", 2, dp1, cp1, ETH // 2, sender=mp)
    a.increase_time(61)
    tx(tt, "refundAbandoned", 2, sender=mp)
    return gas


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dainode-gas-") as tmp:
        a = Anvil(Path(tmp))
        try:
            gas = measure(a)
        finally:
            a.stop()
    total = gas["initTransaction"] + gas["provideData"] + gas["verifiedData"]
    if args.json:
        out = {"functions": {k: {"gas_used": v, "paper": PAPER.get(k)} for k, v in gas.items()}, "trade_total": total}
        print(json.dumps(out, sort_keys=True))
        return 0
    print(f"{'function':<28}{'gasUsed':>10}{'paper':>10}{'ratio':>8}")
    for k, v in gas.items():
        p = PAPER.get(k)
        print(f"{k:<28}{v:>10}{p if p is not None else '-':>10}{(f'{v / p:.2f}' if p else '-'):>8}")
    print(f"{'trade_total (init+provide+verified)':<38}{total:>10}")
    for k, limit in TARGETS.items():
        got = total if k == "trade_total" else gas[k]
        print(f"target {k}: {got} <= {limit}: {'met' if got <= limit else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
