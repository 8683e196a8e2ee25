"""Header hashing and Merkle-Patricia proof checks, with honest and tampered inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rlp
from eth_utils import keccak, to_checksum_address
from trie import HexaryTrie

from dainode.chain.proof import EMPTY_CODE_HASH, header_rlp, slot_key, verify_account_proof, verify_header, verify_storage_proof
from dainode.errors import ProofError

HEADER = json.loads((Path(__file__).parent / "data" / "anvil_prague_header.json").read_text())


def test_real_prague_header_from_anvil_hashes_to_its_hash():
    # Recorded from anvil 1.7.1 (all fork fields up to Prague's requestsHash).
    assert "requestsHash" in HEADER and "parentBeaconBlockRoot" in HEADER
    assert verify_header(HEADER) == bytes.fromhex(HEADER["hash"][2:])
    assert "0x" + keccak(header_rlp(HEADER)).hex() == HEADER["hash"]


@pytest.mark.parametrize("field", ["stateRoot", "parentHash", "number", "baseFeePerGas", "requestsHash", "timestamp"])
def test_any_changed_header_field_is_detected(field):
    bad = dict(HEADER)
    value = bad[field]
    bad[field] = hex(int(value, 16) + 1) if len(value) < 20 else "0x" + ("ab" * ((len(value) - 2) // 2))
    with pytest.raises(ProofError, match="does not hash"):
        verify_header(bad)


def test_dropping_a_fork_field_breaks_the_hash_and_gaps_are_refused():
    shorter = {k: v for k, v in HEADER.items() if k != "requestsHash"}
    with pytest.raises(ProofError):
        verify_header(shorter)
    gap = {k: v for k, v in HEADER.items() if k != "withdrawalsRoot"}
    with pytest.raises(ProofError, match="earlier fork field withdrawalsRoot"):
        verify_header(gap)


# --- a small real state trie built locally, with eth_getProof-shaped answers -------------


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def build_state():
    storage = HexaryTrie({})
    values = {0: 7, 1: 2**200 + 5, 9: 1}
    for slot, value in values.items():
        storage.set(keccak(slot_key(slot)), rlp.encode(value))
    address = to_checksum_address("0x" + "42" * 20)
    code_hash = keccak(b"\x60\x00")
    account = [3, 10**18, storage.root_hash, code_hash]
    state = HexaryTrie({})
    state.set(keccak(bytes.fromhex(address[2:])), rlp.encode(account))
    for i in range(20):  # neighbours so the proof has branch nodes
        state.set(keccak(i.to_bytes(20, "big")), rlp.encode([i, i, storage.root_hash, EMPTY_CODE_HASH]))

    def proof(slots):
        return {
            "address": address.lower(),
            "nonce": hex(3),
            "balance": hex(10**18),
            "storageHash": _hex(storage.root_hash),
            "codeHash": _hex(code_hash),
            "accountProof": [_hex(rlp.encode(n)) for n in state.get_proof(keccak(bytes.fromhex(address[2:])))],
            "storageProof": [
                {
                    "key": hex(s),
                    "value": hex(values.get(s, 0)),
                    "proof": [_hex(rlp.encode(n)) for n in storage.get_proof(keccak(slot_key(s)))],
                }
                for s in slots
            ],
        }

    return state.root_hash, address, proof, values


def test_honest_account_and_storage_proofs_verify():
    root, address, proof, values = build_state()
    p = proof([0, 1, 9, 5])
    account = verify_account_proof(root, p)
    assert (account.address, account.nonce, account.balance) == (address, 3, 10**18)
    got = [verify_storage_proof(account.storage_root, e, s) for e, s in zip(p["storageProof"], [0, 1, 9, 5])]
    assert got == [7, 2**200 + 5, 1, 0]  # slot 5 was never written: proven absent = 0


def test_tampered_claims_and_nodes_are_rejected():
    root, _, proof, _ = build_state()
    p = proof([0])
    p["balance"] = hex(10**18 + 1)
    with pytest.raises(ProofError, match="claimed state"):
        verify_account_proof(root, p)

    p = proof([0])
    node = bytearray(bytes.fromhex(p["accountProof"][-1][2:]))
    node[-1] ^= 1
    p["accountProof"][-1] = _hex(bytes(node))
    with pytest.raises(ProofError):
        verify_account_proof(root, p)

    p = proof([0])
    p["accountProof"][0] = "0xzz"
    with pytest.raises(ProofError):
        verify_account_proof(root, p)

    p = proof([1])
    account = verify_account_proof(root, p)
    p["storageProof"][0]["value"] = hex(3)
    with pytest.raises(ProofError, match="differs from the proven"):
        verify_storage_proof(account.storage_root, p["storageProof"][0], 1)
    with pytest.raises(ProofError, match="instead of"):
        verify_storage_proof(account.storage_root, proof([1])["storageProof"][0], 2)


def test_a_proof_against_another_root_is_rejected():
    root, _, proof, _ = build_state()
    with pytest.raises(ProofError):
        verify_account_proof(keccak(b"other root"), proof([]))


def test_slot_keys_are_padded_to_32_bytes():
    assert slot_key(1) == bytes(31) + b"\x01"
    assert slot_key("0x0a") == bytes(31) + b"\x0a"
    assert slot_key(b"\x01\x02") == bytes(30) + b"\x01\x02"
