"""dainode: a peer-to-peer daemon for blockchain-coordinated, privacy-preserving distributed training."""

__version__ = "0.1.0"
