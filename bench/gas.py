#!/usr/bin/env python3
"""Gas used by every contract function on a fresh anvil, beside the paper's Table I.

Usage: python bench/gas.py [--json]
Starts its own anvil (stopped by PID on exit), deploys contracts/build/, runs each DataTransfer
function (first trade: cold storage, the worst case), the Registry ones, every TrainingTask function
(first call: cold storage) and the gas of a whole 4-provider, 10-round training task.
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
# TrainingTask functions that do the job of a Table I row (escrow a payment / publish data CIDs / settle).
CORRESPONDS = {"openTask": "initTransaction", "TrainingTask.provideData": "provideData", "finalize": "verifiedData"}
TARGETS = {"initTransaction": 81112, "provideData": 61061, "trade_total": 81112 + 61061 + 21000}
ETH = 10**18
C1, C2, C3, C4 = (bytes([i]) * 32 for i in (0x11, 0x22, 0x33, 0x44))
RAW, DAG_PB = 0x55, 0x70


def measure(a: Anvil) -> dict[str, int]:
    w3 = a.w3
    deployer, consumer, provider, authority = w3.eth.accounts[:4]
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
    # Trade 6: the consumer stays silent; the provider settles alone after the timeout.
    send(dt, "initTransaction", provider, C1, RAW, C2, RAW, sender=consumer, value=ETH)
    send(dt, "provideData", 6, C3, RAW, C4, RAW, sender=provider)
    a.increase_time(2 * 3600 + 1)
    tx(dt, "settleAfterTimeout", 6, sender=provider)

    reg = deploy(w3, "Registry", sender=deployer)
    dp1 = w3.eth.accounts[5]
    tx(reg, "registerOffer", 0, C1, RAW, 10**15, sender=dp1)
    tx(reg, "updateOffer", 1, C2, RAW, 2 * 10**15, sender=dp1)
    tx(reg, "withdrawOffer", 1, sender=dp1)

    tt = deploy(w3, "TrainingTask", reg.address, ZERO, sender=deployer)  # arbiter = the deployer
    measure_training_task(a, tt, reg, gas, tx)
    return gas


def _key(i: int):
    """Private key of anvil's i-th dev account (public test mnemonic), to sign match consents."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic("test test test test test test test test test test test junk",
                                 account_path=f"m/44'/60'/0'/0/{i}")


def measure_training_task(a: Anvil, tt, reg, gas: dict[str, int], tx) -> None:
    """Every TrainingTask function once, and the whole 4-provider, 10-round task (gas["task_total"])."""
    from dainode.chain.consent import MatchConsent, sign_consent
    from dainode.chain.training_task import TaskParams, cid_to_chain, commit_test_set, consent_to_abi
    from dainode.store.cid import cid_of

    w3 = a.w3
    acc = w3.eth.accounts
    mp, dps, cps, stranger = acc[1], acc[2:6], acc[6:10], acc[0]
    keys = {acc[i]: _key(i) for i in range(10)}
    rd, aw, cw = 600, 300, 900
    test_set, salt = cid_of(b"test set"), b"\x5a" * 32
    cid = cid_to_chain(cid_of(b"x"))
    offers = {}
    for i in range(4):
        offers[dps[i]] = send(reg, "registerOffer", 0, C1, RAW, 10**15, sender=dps[i])["logs"][0]["topics"][1]
        offers[cps[i]] = send(reg, "registerOffer", 1, C2, RAW, 10**15, sender=cps[i])["logs"][0]["topics"][1]
    offers = {k: int.from_bytes(bytes(v), "big") for k, v in offers.items()}
    total = 0

    def step(fn, *args, sender, value=0, name=None, count=False):
        nonlocal total
        used = send(tt, fn, *args, sender=sender, value=value)["gasUsed"]
        if name is not None and name not in gas:
            gas[name] = used
        if count:
            total += used
        return used

    def open_task(rounds, pool, quorum=0):
        now = a.now()
        p = TaskParams(cid_of(b"m"), cid_of(b"he"), cid_of(b"enc"), commit_test_set(test_set, salt), rounds, rd, aw, cw,
                       now + 60 + TaskParams.span(rounds, rd, aw) + 3600, quorum)
        tid = tt.functions.nextTaskId().call()
        return tid, p.to_abi(), pool

    def match(tid, i, price, count=False):
        c = MatchConsent(tid, offers[dps[i]], offers[cps[i]], price, price, a.now() + 3600)
        ds, cs = (sign_consent(keys[x[i]], c, w3.eth.chain_id, tt.address) for x in (dps, cps))
        step("recordMatch", consent_to_abi(c), ds, cs, sender=mp, name="recordMatch", count=count)

    # The whole task: 4 providers, 10 rounds.
    tid, params, pool = open_task(10, 20 * ETH)
    step("openTask", params, sender=mp, value=pool, name="openTask", count=True)
    for i in range(4):
        match(tid, i, ETH, count=True)
    for i in range(4):
        step("provideData", tid, i, *cid, *cid, sender=dps[i], name="TrainingTask.provideData", count=True)
    step("startTraining", tid, sender=mp, name="startTraining", count=True)
    for r in range(10):
        late = "_round10" if r == 9 else ""  # warm balances: what every round after the first costs
        for i in range(4):
            step("submitUpdate", tid, i, r, *cid, sender=cps[i], name="submitUpdate" + late, count=True)
        step("publishGlobalModel", tid, r, *cid, sender=mp, name="publishGlobalModel" + late, count=True)
    split = [3 * ETH] * 4
    step("postSplit", tid, split, *cid, sender=mp, name="postSplit", count=True)
    step("revealKey", tid, *cid, sender=mp, name="revealKey", count=True)
    step("revealTestSet", tid, *cid_to_chain(test_set), salt, sender=mp, name="revealTestSet", count=True)
    a.increase_time(cw + 1)
    step("finalize", tid, split, sender=stranger, name="finalize", count=True)
    for who in dps + cps:
        step("withdraw", sender=who, name="TrainingTask.withdraw", count=True)
    gas["task_total"] = total

    # Rejection, challenge, and the arbiter's two rulings (two 1-round tasks with 2 matches).
    for ruling in ("upholdSplit", "replaceSplit"):
        tid, params, pool = open_task(1, 10 * ETH)
        step("openTask", params, sender=mp, value=pool)
        for i in range(2):
            match(tid, i, ETH)
            step("provideData", tid, i, *cid, *cid, sender=dps[i])
        step("startTraining", tid, sender=mp)
        for i in range(2):
            step("submitUpdate", tid, i, 0, *cid, sender=cps[i])
        step("rejectUpdate", tid, 1, 0, *cid, sender=mp, name="rejectUpdate")
        a.increase_time(rd)
        step("publishGlobalModel", tid, 0, *cid, sender=mp)
        bonus = tt.functions.task(tid).call()[9]
        step("postSplit", tid, [bonus, 0], *cid, sender=mp)
        step("revealKey", tid, *cid, sender=mp)
        step("revealTestSet", tid, *cid_to_chain(test_set), salt, sender=mp)
        step("challenge", tid, *cid, sender=dps[1], name="challenge")
        if ruling == "upholdSplit":
            step("upholdSplit", tid, [bonus, 0], sender=stranger, name="upholdSplit")
        else:
            half = bonus // 2
            step("replaceSplit", tid, [bonus - half, half], *cid, sender=stranger, name="replaceSplit")
    # A model provider that goes silent: anyone abandons after the aggregation window.
    tid, params, pool = open_task(3, 10 * ETH)
    step("openTask", params, sender=mp, value=pool)
    for i in range(2):
        match(tid, i, ETH)
        step("provideData", tid, i, *cid, *cid, sender=dps[i])
    step("startTraining", tid, sender=mp)
    step("submitUpdate", tid, 0, 0, *cid, sender=cps[0])
    a.increase_time(rd + aw + 1)
    step("abandon", tid, sender=stranger, name="abandon")
    step("withdrawTo", stranger, sender=dps[0], name="withdrawTo")


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
    task_total = gas.pop("task_total")
    total = gas["initTransaction"] + gas["provideData"] + gas["verifiedData"]

    def paper_row(k: str) -> str | None:
        return k if k in PAPER else CORRESPONDS.get(k)

    if args.json:
        out = {"functions": {k: {"gas_used": v, "paper": PAPER.get(paper_row(k) or "")} for k, v in gas.items()},
               "trade_total": total, "task_total": task_total}
        print(json.dumps(out, sort_keys=True))
        return 0
    print(f"{'function':<28}{'gasUsed':>10}{'paper':>10}{'ratio':>8}  paper row")
    for k, v in gas.items():
        row = paper_row(k)
        p = PAPER.get(row or "")
        shown = row if row and row != k else ""
        print(f"{k:<28}{v:>10}{p if p is not None else '-':>10}{(f'{v / p:.2f}' if p else '-'):>8}  {shown}")
    print(f"{'trade_total (init+provide+verified)':<38}{total:>10}")
    print(f"{'task_total (4 providers, 10 rounds)':<38}{task_total:>10}   "
          f"= open + 4 recordMatch + 4 provideData + startTraining + 40 submitUpdate + 10 publishGlobalModel"
          f" + postSplit + revealKey + revealTestSet + finalize + 8 withdraw")
    print(f"{'  per provider':<38}{task_total // 4:>10}   vs one paper trade {sum(PAPER[k] for k in ('initTransaction', 'provideData', 'verifiedData'))}")
    for k, limit in TARGETS.items():
        got = total if k == "trade_total" else gas[k]
        print(f"target {k}: {got} <= {limit}: {'met' if got <= limit else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
