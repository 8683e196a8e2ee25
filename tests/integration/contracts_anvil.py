"""A real anvil for contract tests and bench/gas.py: start/stop by PID, deploy artifacts, decode custom errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import eth_abi
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract

from tests.integration.chain_env import AnvilProcess

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "contracts" / "build"
ZERO = "0x0000000000000000000000000000000000000000"


class Anvil(AnvilProcess):
    """An anvil (see chain_env.AnvilProcess) with a web3 handle: contract tests check the contracts
    through an independent client, not through dainode's own (which has tests of its own)."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, prune_history=False, extra_args=("--hardfork", "prague"))
        self.start()
        self.w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 30}))

    def increase_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])
        self.w3.provider.make_request("evm_mine", [])

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]


def artifact(name: str) -> dict:
    return json.loads((BUILD / f"{name}.json").read_text())


def deploy(w3: Web3, name: str, *args, sender: str | None = None) -> Contract:
    art = artifact(name)
    sender = sender or w3.eth.accounts[0]
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = factory.constructor(*args).transact({"from": sender})
    rcpt = w3.eth.wait_for_transaction_receipt(tx, timeout=30)
    assert rcpt["status"] == 1, f"deploying {name} failed"
    return w3.eth.contract(address=rcpt["contractAddress"], abi=art["abi"])


@dataclass
class Reverted(Exception):
    """A call reverted with the custom error `name` and decoded `args`."""

    name: str
    args: tuple


def error_table(abi: list[dict]) -> dict[bytes, tuple[str, list[str]]]:
    table = {}
    for item in abi:
        if item["type"] == "error":
            types = [i["type"] for i in item["inputs"]]
            sig = f"{item['name']}({','.join(types)})"
            table[keccak(text=sig)[:4]] = (item["name"], types)
    return table


def decode_revert(abi: list[dict], data: str) -> Reverted:
    raw = bytes.fromhex(data.removeprefix("0x"))
    table = error_table(abi)
    if raw[:4] not in table:
        raise AssertionError(f"revert data {data!r} is not a custom error of this contract")
    name, types = table[raw[:4]]
    values = eth_abi.decode(types, raw[4:])
    return Reverted(name, tuple(Web3.to_checksum_address(v) if t == "address" else v for t, v in zip(types, values)))


def send(contract: Contract, fn: str, *args, sender: str, value: int = 0) -> dict:
    """Send a transaction; return its receipt, or raise Reverted with the decoded custom error.

    The revert is detected by eth_estimateGas on the pending block (where the tx would land),
    so the decoded error comes from the node, not from a guess.
    """
    w3 = contract.w3
    tx_json = {"from": sender, "to": contract.address, "data": contract.encode_abi(fn, args=list(args)),
               "value": hex(value)}
    resp = w3.provider.make_request("eth_estimateGas", [tx_json, "pending"])
    if "error" in resp:
        data = resp["error"].get("data")
        if not data:
            raise AssertionError(f"{fn} failed without revert data: {resp['error']}")
        raise decode_revert(contract.abi, data if isinstance(data, str) else data.get("data"))
    gas = int(resp["result"], 16)
    h = w3.eth.send_transaction({**tx_json, "value": value, "gas": gas + gas // 5})
    rcpt = w3.eth.wait_for_transaction_receipt(h, timeout=30)
    assert rcpt["status"] == 1, f"{fn} was estimated fine but reverted on chain"
    return rcpt


def gas_cost(rcpt: dict) -> int:
    """Wei the sender paid for a mined transaction."""
    return rcpt["gasUsed"] * rcpt["effectiveGasPrice"]


def _canonical(item: dict) -> str:
    """ABI parameter -> its type in an event/function signature (tuples spelled out)."""
    t = item["type"]
    if t.startswith("tuple"):
        return f"({','.join(_canonical(c) for c in item['components'])}){t[len('tuple'):]}"
    return t


def events(contract: Contract, rcpt: dict, name: str) -> list[dict]:
    """Decoded `name` events of `contract` in a receipt, as plain dicts of their args."""
    ev = getattr(contract.events, name)()
    abi = next(i for i in contract.abi if i["type"] == "event" and i["name"] == name)
    topic = keccak(text=f"{name}({','.join(_canonical(i) for i in abi['inputs'])})")
    # Only this event's logs: process_receipt would warn about every other event in the receipt.
    mine = [log for log in rcpt["logs"] if log["address"] == contract.address and bytes(log["topics"][0]) == topic]
    return [dict(ev.process_log(log)["args"]) for log in mine]


def anvil_fixture(tmp_path_factory):
    """Module-scoped anvil (import as a fixture); stopped by PID at teardown, also on failure."""
    a = Anvil(tmp_path_factory.mktemp("anvil"))
    try:
        yield a
    finally:
        a.stop()
