"""Ethereum light client: JSON-RPC, offline signing, events, proofs, dev chain."""
