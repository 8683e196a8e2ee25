"""CIDs as the contracts store them: a 32-byte sha2-256 digest plus the multicodec code."""

from __future__ import annotations

from dainode.errors import ChainError
from dainode.store.cid import CID, SHA2_256


def cid_to_chain(cid: CID | str) -> tuple[bytes, int]:
    """A CID -> the (sha2-256 digest, multicodec code) pair the contracts take."""
    cid = CID.parse(str(cid)) if not isinstance(cid, CID) else cid
    if cid.hash_code != SHA2_256 or len(cid.digest) != 32:
        raise ChainError(f"{cid} does not use a 32-byte sha2-256 multihash; the contracts store only those")
    return cid.digest, cid.codec


def cid_from_chain(digest: bytes, codec: int) -> CID:
    """A (digest, codec) pair from a contract event -> the CIDv1 it names."""
    if len(digest) != 32:
        raise ChainError(f"a chain CID digest is 32 bytes, got {len(digest)}")
    return CID(1, int(codec), bytes([SHA2_256, 32]) + bytes(digest))
