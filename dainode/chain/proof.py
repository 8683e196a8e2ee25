"""Light-client checks: block header hash, eth_getProof account and storage proofs against stateRoot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth_utils import keccak, to_checksum_address
from trie import HexaryTrie
from trie.exceptions import BadTrieProof

from dainode.chain.rpc import RpcClient, block_tag, from_hex, to_hex, to_int
from dainode.errors import ChainError, ProofError

EMPTY_TRIE_ROOT = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
EMPTY_CODE_HASH = keccak(b"")

# Header fields in RLP order. The first 15 exist since Frontier; the rest were appended by
# London, Shanghai, Cancun and Prague, and a header carries a prefix of them.
_BASE_FIELDS = (
    ("parentHash", "bytes"), ("sha3Uncles", "bytes"), ("miner", "bytes"), ("stateRoot", "bytes"),
    ("transactionsRoot", "bytes"), ("receiptsRoot", "bytes"), ("logsBloom", "bytes"), ("difficulty", "int"),
    ("number", "int"), ("gasLimit", "int"), ("gasUsed", "int"), ("timestamp", "int"), ("extraData", "bytes"),
    ("mixHash", "bytes"), ("nonce", "bytes"),
)
_FORK_FIELDS = (
    ("baseFeePerGas", "int"),          # London (EIP-1559)
    ("withdrawalsRoot", "bytes"),      # Shanghai (EIP-4895)
    ("blobGasUsed", "int"),            # Cancun (EIP-4844)
    ("excessBlobGas", "int"),          # Cancun (EIP-4844)
    ("parentBeaconBlockRoot", "bytes"),  # Cancun (EIP-4788)
    ("requestsHash", "bytes"),         # Prague (EIP-7685)
)


def _field(header: dict, name: str, kind: str) -> Any:
    value = header[name]
    if kind == "int":
        return to_int(value)
    return from_hex(value)


def header_rlp(header: dict) -> bytes:
    """RLP of a JSON-RPC block header (hash = keccak of it)."""
    try:
        items = [_field(header, n, k) for n, k in _BASE_FIELDS]
    except KeyError as exc:
        raise ProofError(f"block header from the endpoint lacks field {exc.args[0]}") from None
    seen_gap = None
    for name, kind in _FORK_FIELDS:
        if header.get(name) is None:
            seen_gap = name
            continue
        if seen_gap is not None:
            raise ProofError(f"block header has {name} but not the earlier fork field {seen_gap}; cannot encode it")
        items.append(_field(header, name, kind))
    return rlp.encode(items)


def verify_header(header: dict) -> bytes:
    """Check keccak(rlp(header)) == header.hash; returns the hash bytes. ProofError otherwise."""
    if not isinstance(header, dict) or "hash" not in header:
        raise ProofError("the endpoint returned no block header")
    claimed = from_hex(header["hash"])
    actual = keccak(header_rlp(header))
    if actual != claimed:
        raise ProofError(
            f"block {header.get('number')} header does not hash to its claimed hash {header['hash']} "
            f"(computed 0x{actual.hex()}): the endpoint's header is not genuine"
        )
    return claimed


def _nodes(proof: list[str], what: str) -> list:
    try:
        return [rlp.decode(from_hex(p)) for p in proof]
    except (rlp.DecodingError, ChainError) as exc:
        raise ProofError(f"{what} proof contains a node that is not valid RLP: {exc}") from None


def _get_from_proof(root: bytes, key: bytes, proof: list[str], what: str) -> bytes:
    try:
        return HexaryTrie.get_from_proof(root, key, _nodes(proof, what))
    except BadTrieProof as exc:
        raise ProofError(f"{what} proof does not verify against root 0x{root.hex()}: {exc}") from None
    except (ValueError, TypeError, IndexError, AssertionError, rlp.DecodingError) as exc:
        raise ProofError(f"{what} proof is malformed: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class AccountState:
    address: str
    nonce: int
    balance: int
    storage_root: bytes
    code_hash: bytes

    def to_json(self) -> dict:
        return {
            "address": self.address,
            "nonce": self.nonce,
            "balance": str(self.balance),
            "storage_root": to_hex(self.storage_root),
            "code_hash": to_hex(self.code_hash),
            "has_code": self.code_hash != EMPTY_CODE_HASH,
        }


def verify_account_proof(state_root: bytes, proof: dict) -> AccountState:
    """Verify an eth_getProof result's account part; the claimed fields must equal the proven ones."""
    address = to_checksum_address(proof["address"])
    raw = _get_from_proof(state_root, keccak(from_hex(address)), proof["accountProof"], f"account {address}")
    if raw == b"":
        proven = AccountState(address, 0, 0, EMPTY_TRIE_ROOT, EMPTY_CODE_HASH)
    else:
        try:
            nonce, balance, storage_root, code_hash = rlp.decode(raw)
        except (rlp.DecodingError, ValueError) as exc:
            raise ProofError(f"account {address} leaf is not an RLP account: {exc}") from None
        proven = AccountState(address, int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"), storage_root, code_hash)
    claimed = AccountState(
        address, to_int(proof["nonce"]), to_int(proof["balance"]), from_hex(proof["storageHash"]), from_hex(proof["codeHash"])
    )
    if raw == b"" and claimed.code_hash == bytes(32):
        claimed = AccountState(address, claimed.nonce, claimed.balance, claimed.storage_root, EMPTY_CODE_HASH)
    if proven != claimed:
        raise ProofError(f"account {address}: the endpoint's claimed state differs from what its proof proves")
    return proven


def slot_key(slot: int | str | bytes) -> bytes:
    """A storage slot as the 32-byte big-endian word the trie key is keccak'd from."""
    if isinstance(slot, str):
        slot = to_int(slot) if slot.startswith("0x") else int(slot)
    if isinstance(slot, int):
        if slot < 0 or slot >= 2**256:
            raise ChainError(f"storage slot {slot} is outside 0..2**256-1")
        return slot.to_bytes(32, "big")
    if len(slot) > 32:
        raise ChainError("a storage slot has at most 32 bytes")
    return bytes(slot).rjust(32, b"\0")


def verify_storage_proof(storage_root: bytes, entry: dict, slot: int | str | bytes) -> int:
    key = slot_key(slot)
    if to_int(entry["key"]) != int.from_bytes(key, "big"):
        raise ProofError(f"the endpoint proved slot {entry['key']} instead of 0x{key.hex()}")
    raw = _get_from_proof(storage_root, keccak(key), entry["proof"], f"storage slot 0x{key.hex()}")
    try:
        proven = int.from_bytes(rlp.decode(raw), "big") if raw else 0
    except rlp.DecodingError as exc:
        raise ProofError(f"storage slot 0x{key.hex()} leaf is not RLP: {exc}") from None
    if proven != to_int(entry["value"]):
        raise ProofError(f"storage slot 0x{key.hex()}: claimed value {entry['value']} differs from the proven {hex(proven)}")
    return proven


class StateVerifier:
    """Fetches header + proof from an untrusted endpoint and returns only values that verify."""

    def __init__(self, rpc: RpcClient):
        self.rpc = rpc

    async def header(self, block: int | str = "latest") -> dict:
        header = await self.rpc.call("eth_getBlockByNumber", block_tag(block), False)
        if header is None:
            raise ChainError(f"block {block} does not exist on the endpoint")
        verify_header(header)
        return header

    async def verify_state(self, address: str, slots: list = (), block: int | str = "latest") -> dict:
        """Verified account fields and storage slots at one block (header hash checked first)."""
        try:
            address = to_checksum_address(address)
        except ValueError:
            raise ChainError(f"{address!r} is not an Ethereum address") from None
        keys = [slot_key(s) for s in slots]
        header = await self.header(block)
        # Ask for the proof at the header's exact number: "latest" could move in between.
        proof = await self.rpc.call("eth_getProof", address, [to_hex(k) for k in keys], header["number"])
        account = verify_account_proof(from_hex(header["stateRoot"]), proof)
        entries = proof.get("storageProof") or []
        if len(entries) != len(keys):
            raise ProofError(f"the endpoint proved {len(entries)} storage slots, {len(keys)} were asked")
        values = {to_hex(k): hex(verify_storage_proof(account.storage_root, e, k)) for e, k in zip(entries, keys)}
        return {
            "block": {"number": to_int(header["number"]), "hash": header["hash"], "state_root": header["stateRoot"]},
            "account": account.to_json(),
            "storage": values,
            "verified": True,
        }

    async def verify_account(self, address: str, block: int | str = "latest") -> AccountState:
        res = await self.verify_state(address, [], block)
        a = res["account"]
        return AccountState(a["address"], a["nonce"], int(a["balance"]), from_hex(a["storage_root"]), from_hex(a["code_hash"]))

    async def verify_storage(self, address: str, slot: int | str | bytes, block: int | str = "latest") -> int:
        res = await self.verify_state(address, [slot], block)
        return int(next(iter(res["storage"].values())), 16)
