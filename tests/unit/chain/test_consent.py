"""EIP-712 match consents: digest agrees with eth-account's encoder and the contract's constants; sign/verify rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from dainode.chain.consent import (
    CONSENT_TYPE, DOMAIN_NAME, DOMAIN_VERSION, SECP256K1_N, MatchConsent, consent_digest, domain_separator,
    recover_consent_signer, sign_consent, verify_consent,
)
from dainode.chain.signer import Signer
from dainode.errors import ConsentError

ROOT = Path(__file__).resolve().parents[3]
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN = 31337
ALICE = Account.from_key("0x" + "11" * 32)
BOB = Account.from_key("0x" + "22" * 32)
C = MatchConsent(task_id=7, data_offer_id=3, compute_offer_id=4, data_price=10**18, compute_price=2 * 10**18,
                 deadline=1_900_000_000)


def test_digest_equals_eth_account_typed_data_encoding():
    typed = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
            "MatchConsent": [{"name": n, "type": "uint256"} for n in
                             ("taskId", "dataOfferId", "computeOfferId", "dataPrice", "computePrice", "deadline")],
        },
        "primaryType": "MatchConsent",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": CHAIN, "verifyingContract": CONTRACT},
        "message": C.to_typed_data(),
    }
    signed = ALICE.sign_message(encode_typed_data(full_message=typed))
    assert bytes(signed.message_hash) == consent_digest(C, CHAIN, CONTRACT)
    assert sign_consent(ALICE, C, CHAIN, CONTRACT) == bytes(signed.signature)


def test_type_string_matches_the_contract_source():
    src = (ROOT / "contracts" / "src" / "TrainingTask.sol").read_text()
    assert f'"{CONSENT_TYPE}"' in src
    assert f'keccak256("{DOMAIN_NAME}")' in src and f'keccak256("{DOMAIN_VERSION}")' in src
    abi = json.loads((ROOT / "contracts" / "build" / "TrainingTask.json").read_text())["abi"]
    assert any(i.get("name") == "consentDigest" for i in abi)


def test_every_field_chain_and_contract_change_the_digest():
    base = consent_digest(C, CHAIN, CONTRACT)
    for field in ("task_id", "data_offer_id", "compute_offer_id", "data_price", "compute_price", "deadline"):
        other = MatchConsent(**{**C.__dict__, field: getattr(C, field) + 1})
        assert consent_digest(other, CHAIN, CONTRACT) != base, field
    assert consent_digest(C, CHAIN + 1, CONTRACT) != base
    assert consent_digest(C, CHAIN, "0x" + "00" * 19 + "01") != base
    assert domain_separator(CHAIN, CONTRACT) != domain_separator(CHAIN + 1, CONTRACT)


def test_sign_with_node_signer_then_verify_and_recover():
    sig = sign_consent(Signer(BOB), C, CHAIN, CONTRACT)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert recover_consent_signer(C, sig, CHAIN, CONTRACT) == BOB.address
    verify_consent(C, sig, BOB.address, CHAIN, CONTRACT)
    with pytest.raises(ConsentError, match=f"signed by {BOB.address}, not by {ALICE.address}"):
        verify_consent(C, sig, ALICE.address, CHAIN, CONTRACT)
    other = MatchConsent(**{**C.__dict__, "data_price": C.data_price + 1})
    with pytest.raises(ConsentError, match="not by"):
        verify_consent(other, sig, BOB.address, CHAIN, CONTRACT)


def test_malformed_signatures_are_refused_like_the_contract_does():
    sig = sign_consent(ALICE, C, CHAIN, CONTRACT)
    with pytest.raises(ConsentError, match="65 bytes"):
        recover_consent_signer(C, sig[:64], CHAIN, CONTRACT)
    with pytest.raises(ConsentError, match="v=[01];"):
        recover_consent_signer(C, sig[:64] + bytes([sig[64] - 27]), CHAIN, CONTRACT)
    s = int.from_bytes(sig[32:64], "big")
    high = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])  # the malleable twin
    with pytest.raises(ConsentError, match="high s"):
        recover_consent_signer(C, high, CHAIN, CONTRACT)
    with pytest.raises(ConsentError, match="not an Ethereum address"):
        verify_consent(C, sig, "0x1234", CHAIN, CONTRACT)


def test_consent_fields_are_range_checked():
    with pytest.raises(ConsentError, match="data_price"):
        MatchConsent(1, 1, 2, 2**80, 0, 1)
    with pytest.raises(ConsentError, match="task_id"):
        MatchConsent(-1, 1, 2, 0, 0, 1)
    with pytest.raises(ConsentError, match="deadline"):
        MatchConsent(1, 1, 2, 0, 0, True)


def test_signer_refuses_a_digest_of_the_wrong_length():
    from dainode.errors import ChainError

    with pytest.raises(ChainError, match="32 bytes"):
        Signer(ALICE).sign_digest(b"\x00" * 31)
