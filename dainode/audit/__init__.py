"""Anyone's audit of a training task: evidence from chain events + IPFS, `task verify`, `task watch`, automatic challenges."""
