"""Bitswap 1.2.0 over the node's libp2p host: wire codec, engine (serving/receiving), fetch sessions."""

from dainode.store.bitswap.engine import Bitswap, BlockAccess
from dainode.store.bitswap.session import Session

__all__ = ["Bitswap", "BlockAccess", "Session"]
