"""Offline transaction signing with the node's in-memory Ethereum key (the key never leaves this object)."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from dainode.errors import ChainError


class Signer:
    """Signs EIP-1559 transactions locally; only signed bytes go to the RPC endpoint.

    Holds the unlocked LocalAccount of the node's identity. Its repr and str show the
    address only, so a stray log line or traceback cannot print the key.
    """

    def __init__(self, account: LocalAccount):
        self._account = account

    @property
    def address(self) -> str:
        return self._account.address

    def __repr__(self) -> str:
        return f"Signer({self.address})"

    __str__ = __repr__

    def sign(self, tx: dict) -> tuple[bytes, str]:
        """Sign a transaction dict; returns (raw transaction bytes, 0x tx hash)."""
        try:
            signed = self._account.sign_transaction(tx)
        except (TypeError, ValueError, KeyError) as exc:
            # eth-account's messages describe the field, never the key.
            raise ChainError(f"cannot sign transaction: {type(exc).__name__}: {exc}") from None
        return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()

    def sign_message(self, message: bytes) -> bytes:
        """EIP-191 personal-sign signature (65 bytes) over `message`."""
        from eth_account.messages import encode_defunct

        return bytes(self._account.sign_message(encode_defunct(primitive=message)).signature)

    def sign_digest(self, digest: bytes) -> bytes:
        """Raw secp256k1 signature (65 bytes r||s||v, v 27/28) over a 32-byte digest, e.g. an EIP-712 hash.

        Only for digests whose structure the caller built (dainode.chain.consent): signing an
        arbitrary hash could sign a transaction."""
        if len(digest) != 32:
            raise ChainError(f"a digest to sign must be 32 bytes, got {len(digest)}")
        return bytes(self._account.unsafe_sign_hash(digest).signature)
