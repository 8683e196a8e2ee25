"""Contract ABIs and bytecode from contracts/build/: offline call encoding, result/event/error decoding."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import eth_abi
from eth_abi.exceptions import DecodingError, EncodingError
from eth_utils import keccak, to_checksum_address

from dainode.errors import ChainError, ConfigError

CONTRACT_NAMES = ("DataTransfer", "Registry", "TrainingTask")

# Built-in Solidity errors: Error(string) from require/revert("..."), Panic(uint256) from asserts/overflow.
ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
PANIC_SELECTOR = bytes.fromhex("4e487b71")
PANIC_CODES = {
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "bad storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


def default_build_dir() -> Path:
    """contracts/build/ of the checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "contracts" / "build"


def abi_type(item: dict) -> str:
    """ABI JSON parameter -> canonical type string (tuples expanded, array suffix kept)."""
    t = item["type"]
    if t.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in item.get("components", []))
        return f"({inner}){t[len('tuple'):]}"
    return t


def signature(item: dict) -> str:
    return f"{item['name']}({','.join(abi_type(i) for i in item.get('inputs', []))})"


def _normalise(value: Any, typ: str) -> Any:
    """Decoded ABI values in the shape callers want: checksummed addresses, tuples as lists."""
    if typ.endswith("]"):
        base = typ[: typ.rindex("[")]
        return [_normalise(v, base) for v in value]
    if typ == "address":
        return to_checksum_address(value)
    if typ.startswith("("):
        inner = _split_tuple(typ[1:-1])
        return tuple(_normalise(v, t) for v, t in zip(value, inner))
    return value


def _split_tuple(inner: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur:
        parts.append(cur)
    return parts


def _check_fixed_bytes(what: str, types: list[str], args: tuple) -> None:
    """eth-abi right-pads short values for bytesN; a 20-byte value passed as a 32-byte CID digest
    would then be silently wrong on chain, so demand the exact length."""
    for pos, (t, v) in enumerate(zip(types, args)):
        if t.startswith("bytes") and t[5:].isdigit() and isinstance(v, (bytes, bytearray)) and len(v) != int(t[5:]):
            raise ChainError(f"argument {pos} of {what} is {t} but has {len(v)} bytes; pass exactly {t[5:]} bytes")


@dataclass(frozen=True)
class Event:
    """One decoded contract log. `removed` is True when a reorg took it back out of the chain."""

    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    address: str
    removed: bool = False

    @property
    def key(self) -> tuple[str, int]:
        """Identity of a log within one block history: (block hash, log index)."""
        return (self.block_hash, self.log_index)

    def to_json(self) -> dict:
        return {
            "contract": self.contract,
            "name": self.name,
            "args": {k: _jsonable(v) for k, v in self.args.items()},
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "tx_hash": self.tx_hash,
            "log_index": self.log_index,
            "address": self.address,
            "removed": self.removed,
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**53:
        return str(v)  # JSON numbers lose precision beyond 2**53 in most readers
    return v


@dataclass
class DecodedError:
    contract: str | None
    name: str
    args: tuple

    def describe(self) -> str:
        where = f"{self.contract}." if self.contract else ""
        return f"{where}{self.name}({', '.join(repr(_jsonable(a)) for a in self.args)})"


@dataclass
class Contract:
    """One compiled contract: ABI lookup tables plus its deployed address (if known)."""

    name: str
    abi: list[dict]
    bytecode: bytes
    address: str | None = None
    functions: dict[str, list[dict]] = field(default_factory=dict, init=False)
    events: dict[bytes, dict] = field(default_factory=dict, init=False)
    errors: dict[bytes, dict] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for item in self.abi:
            kind = item.get("type")
            if kind == "function":
                self.functions.setdefault(item["name"], []).append(item)
            elif kind == "event" and not item.get("anonymous"):
                self.events[keccak(text=signature(item))] = item
            elif kind == "error":
                self.errors[keccak(text=signature(item))[:4]] = item

    def at(self, address: str) -> "Contract":
        return Contract(self.name, self.abi, self.bytecode, to_checksum_address(address))

    def function(self, fn_name: str, nargs: int) -> dict:
        items = self.functions.get(fn_name)
        if not items:
            known = ", ".join(sorted(self.functions)) or "none"
            raise ChainError(f"{self.name} has no function {fn_name!r}; its functions: {known}")
        matches = [i for i in items if len(i.get("inputs", [])) == nargs]
        if len(matches) != 1:
            sigs = ", ".join(signature(i) for i in items)
            raise ChainError(f"{self.name}.{fn_name} takes other arguments than the {nargs} given; signatures: {sigs}")
        return matches[0]

    def encode_call(self, fn_name: str, *args: Any) -> bytes:
        item = self.function(fn_name, len(args))
        types = [abi_type(i) for i in item.get("inputs", [])]
        _check_fixed_bytes(f"{self.name}.{fn_name}", types, args)
        try:
            return keccak(text=signature(item))[:4] + eth_abi.encode(types, list(args))
        except (EncodingError, TypeError, ValueError, OverflowError) as exc:
            raise ChainError(f"bad arguments for {self.name}.{signature(item)}: {exc}") from None

    def decode_result(self, fn_name: str, nargs: int, data: bytes) -> Any:
        """One output -> the value; several -> a tuple; none -> None."""
        item = self.function(fn_name, nargs)
        types = [abi_type(o) for o in item.get("outputs", [])]
        if not types:
            return None
        try:
            values = eth_abi.decode(types, data)
        except (DecodingError, ValueError) as exc:
            raise ChainError(f"cannot decode the result of {self.name}.{fn_name}: {exc}") from None
        values = tuple(_normalise(v, t) for v, t in zip(values, types))
        return values[0] if len(values) == 1 else values

    def encode_deploy(self, *args: Any) -> bytes:
        if not self.bytecode:
            raise ChainError(f"{self.name} has no bytecode in its artifact; recompile the contracts")
        ctor = next((i for i in self.abi if i.get("type") == "constructor"), {"inputs": []})
        types = [abi_type(i) for i in ctor.get("inputs", [])]
        if len(types) != len(args):
            raise ChainError(f"{self.name} constructor takes {len(types)} arguments ({', '.join(types)}), got {len(args)}")
        try:
            return self.bytecode + eth_abi.encode(types, list(args))
        except (EncodingError, TypeError, ValueError, OverflowError) as exc:
            raise ChainError(f"bad constructor arguments for {self.name}: {exc}") from None

    def decode_log(self, log: dict) -> Event | None:
        """A raw JSON-RPC log -> Event, or None when its topic is not one of this contract's events."""
        topics = [bytes.fromhex(t[2:]) for t in log.get("topics", [])]
        if not topics or topics[0] not in self.events:
            return None
        item = self.events[topics[0]]
        inputs = item.get("inputs", [])
        indexed = [i for i in inputs if i.get("indexed")]
        plain = [i for i in inputs if not i.get("indexed")]
        if len(topics) - 1 != len(indexed):
            return None  # same signature, different indexing: not ours
        args: dict[str, Any] = {}
        try:
            for inp, topic in zip(indexed, topics[1:]):
                t = abi_type(inp)
                if t in ("string", "bytes") or t.endswith("]") or t.startswith("("):
                    args[inp["name"]] = topic  # dynamic indexed values are only present as their hash
                else:
                    args[inp["name"]] = _normalise(eth_abi.decode([t], topic)[0], t)
            data = bytes.fromhex(log.get("data", "0x")[2:])
            types = [abi_type(i) for i in plain]
            for inp, value, t in zip(plain, eth_abi.decode(types, data), types):
                args[inp["name"]] = _normalise(value, t)
        except (DecodingError, ValueError) as exc:
            raise ChainError(f"cannot decode {self.name}.{item['name']} log in tx {log.get('transactionHash')}: {exc}") from None
        ordered = {i["name"]: args[i["name"]] for i in inputs}
        return Event(
            contract=self.name,
            name=item["name"],
            args=ordered,
            block_number=int(log["blockNumber"], 16),
            block_hash=log["blockHash"],
            tx_hash=log["transactionHash"],
            log_index=int(log["logIndex"], 16),
            address=to_checksum_address(log["address"]),
            removed=bool(log.get("removed", False)),
        )


class ContractSet:
    """The compiled contracts (by name) and a decoder for revert data across all of them."""

    def __init__(self, contracts: dict[str, Contract]):
        self.contracts = contracts

    def __getitem__(self, name: str) -> Contract:
        try:
            return self.contracts[name]
        except KeyError:
            raise ChainError(f"unknown contract {name!r}; known: {', '.join(sorted(self.contracts)) or 'none'}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.contracts

    def names(self) -> list[str]:
        return sorted(self.contracts)

    def with_addresses(self, addresses: dict[str, str]) -> "ContractSet":
        out = dict(self.contracts)
        for name, addr in addresses.items():
            if name in out:
                out[name] = out[name].at(addr)
        return ContractSet(out)

    def by_address(self) -> dict[str, Contract]:
        return {c.address.lower(): c for c in self.contracts.values() if c.address}

    def decode_log(self, log: dict) -> Event | None:
        contract = self.by_address().get(str(log.get("address", "")).lower())
        return contract.decode_log(log) if contract else None

    def decode_error(self, data: bytes, *, prefer: str | None = None) -> DecodedError | None:
        """Revert data -> the named error (custom errors from every ABI, Error(string), Panic(uint256))."""
        if len(data) < 4:
            return None
        sel, body = data[:4], data[4:]
        try:
            if sel == ERROR_STRING_SELECTOR:
                return DecodedError(None, "Error", (eth_abi.decode(["string"], body)[0],))
            if sel == PANIC_SELECTOR:
                code = eth_abi.decode(["uint256"], body)[0]
                return DecodedError(None, "Panic", (code, PANIC_CODES.get(code, "unknown panic code")))
            ordered = sorted(self.contracts.values(), key=lambda c: c.name != prefer)
            for c in ordered:
                item = c.errors.get(sel)
                if item is not None:
                    types = [abi_type(i) for i in item.get("inputs", [])]
                    values = eth_abi.decode(types, body)
                    return DecodedError(c.name, item["name"], tuple(_normalise(v, t) for v, t in zip(values, types)))
        except (DecodingError, ValueError):
            return None
        return None


def load_artifact(path: Path) -> Contract:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"contract artifact {path} is missing; run scripts/compile-contracts", key="contracts") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"contract artifact {path} is unreadable ({exc}); run scripts/compile-contracts", key="contracts") from None
    abi = doc.get("abi")
    code = doc.get("bytecode") or ""
    if isinstance(code, dict):  # solc's evm.bytecode object
        code = code.get("object", "")
    if not isinstance(abi, list):
        raise ConfigError(f"contract artifact {path} has no abi list", key="contracts")
    code = code[2:] if code.startswith("0x") else code
    return Contract(doc.get("contractName") or Path(path).stem, abi, bytes.fromhex(code))


def load_contracts(build_dir: Path | None = None, names: tuple[str, ...] = CONTRACT_NAMES) -> ContractSet:
    build_dir = Path(build_dir) if build_dir else default_build_dir()
    return ContractSet({n: load_artifact(build_dir / f"{n}.json") for n in names})
