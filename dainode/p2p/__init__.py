"""libp2p host, discovery, signed gossip and request/response streams."""
