"""EIP-712 match consents for TrainingTask: the digest, offline signing with eth-account, verification."""

from __future__ import annotations

from dataclasses import dataclass

import eth_abi
from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_utils import keccak, to_checksum_address

from dainode.errors import ConsentError

# Must match contracts/src/TrainingTask.sol (NAME_HASH, VERSION_HASH, CONSENT_TYPEHASH).
DOMAIN_NAME = "dainode TrainingTask"
DOMAIN_VERSION = "2"
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
CONSENT_TYPE = (
    "MatchConsent(uint256 taskId,uint256 dataOfferId,uint256 computeOfferId,"
    "uint256 dataPrice,uint256 computePrice,uint256 deadline)"
)
CONSENT_TYPEHASH = keccak(text=CONSENT_TYPE)
# secp256k1 group order; the contract refuses s > N/2 (malleable twin of a valid signature).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT_MAX = 2**256 - 1
PRICE_MAX = 2**80 - 1  # the contract stores prices as uint80 (PriceTooLarge above)


@dataclass(frozen=True)
class MatchConsent:
    """What a data provider and a compute provider both sign to be matched in a task.

    `deadline` (unix s) is when the consent stops being usable, not the task's deadline."""

    task_id: int
    data_offer_id: int
    compute_offer_id: int
    data_price: int
    compute_price: int
    deadline: int

    def __post_init__(self) -> None:
        for name in ("task_id", "data_offer_id", "compute_offer_id", "data_price", "compute_price", "deadline"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= UINT_MAX:
                raise ConsentError(f"consent {name} must be an integer in [0, 2**256), got {v!r}")
        for name in ("data_price", "compute_price"):
            if getattr(self, name) > PRICE_MAX:
                raise ConsentError(f"consent {name} {getattr(self, name)} wei exceeds the contract's limit 2**80-1")

    def to_typed_data(self) -> dict:
        """The EIP-712 message fields (camelCase, as in the Solidity type)."""
        return {
            "taskId": self.task_id, "dataOfferId": self.data_offer_id, "computeOfferId": self.compute_offer_id,
            "dataPrice": self.data_price, "computePrice": self.compute_price, "deadline": self.deadline,
        }


def _address(value: str, what: str) -> str:
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError):
        raise ConsentError(f"{what} {value!r} is not an Ethereum address (0x + 40 hex digits)") from None


def domain_separator(chain_id: int, contract: str) -> bytes:
    """keccak256 of the EIP-712 domain of the TrainingTask deployed at `contract` on `chain_id`."""
    return keccak(eth_abi.encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [keccak(text=DOMAIN_TYPE), keccak(text=DOMAIN_NAME), keccak(text=DOMAIN_VERSION), chain_id,
         _address(contract, "TrainingTask address")],
    ))


def consent_digest(consent: MatchConsent, chain_id: int, contract: str) -> bytes:
    """The 32-byte hash both providers sign (TrainingTask.consentDigest on chain gives the same)."""
    struct_hash = keccak(eth_abi.encode(
        ["bytes32"] + ["uint256"] * 6,
        [CONSENT_TYPEHASH, consent.task_id, consent.data_offer_id, consent.compute_offer_id,
         consent.data_price, consent.compute_price, consent.deadline],
    ))
    return keccak(b"\x19\x01" + domain_separator(chain_id, contract) + struct_hash)


def sign_consent(signer, consent: MatchConsent, chain_id: int, contract: str) -> bytes:
    """Sign offline; `signer` is a dainode Signer (sign_digest) or an eth-account LocalAccount. 65 bytes r||s||v."""
    digest = consent_digest(consent, chain_id, contract)
    if hasattr(signer, "sign_digest"):
        return signer.sign_digest(digest)
    return bytes(signer.unsafe_sign_hash(digest).signature)


def recover_consent_signer(consent: MatchConsent, signature: bytes, chain_id: int, contract: str) -> str:
    """The address that signed `consent`, under the same rules the contract applies (65 bytes, v 27/28, low s)."""
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != 65:
        n = len(signature) if isinstance(signature, (bytes, bytearray)) else type(signature).__name__
        raise ConsentError(f"a consent signature is 65 bytes (r||s||v), got {n}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise ConsentError(f"consent signature has v={v}; the contract accepts only 27 or 28")
    if s > SECP256K1_N // 2:
        raise ConsentError("consent signature has a high s value (malleable form); the contract refuses it")
    try:
        sig = keys.Signature(vrs=(v - 27, r, s))
        pub = sig.recover_public_key_from_msg_hash(consent_digest(consent, chain_id, contract))
    except (BadSignature, ValueError) as exc:
        raise ConsentError(f"consent signature does not recover to any key: {exc}") from None
    return pub.to_checksum_address()


def verify_consent(consent: MatchConsent, signature: bytes, expected: str, chain_id: int, contract: str) -> None:
    """Raise ConsentError unless `signature` is `expected`'s consent (check a peer's signature before use)."""
    want = _address(expected, "expected signer")
    got = recover_consent_signer(consent, signature, chain_id, contract)
    if got != want:
        raise ConsentError(
            f"consent for task {consent.task_id} (offers {consent.data_offer_id}/{consent.compute_offer_id}) "
            f"is signed by {got}, not by {want}; ask {want} to sign this exact consent"
        )
