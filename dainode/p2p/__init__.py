"""libp2p host, discovery, signed gossip and request/response streams (API: docs/p2p.md)."""
