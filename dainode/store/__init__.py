"""IPFS content storage: blockstore, UnixFS, bitswap."""
