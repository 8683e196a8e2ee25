"""Test-only: a bare py-libp2p peer that speaks /dai/negotiate/1.0.0 byte by byte (floods, malformed frames)."""

from __future__ import annotations

import contextlib

import msgpack
import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.utils.varint import encode_varint_prefixed

from dainode.p2p.host import build_host
from dainode.p2p.reqresp import read_frame
from dainode.roles.negotiate import PROTOCOL


@contextlib.asynccontextmanager
async def raw_peer(daemon_addr: str):
    """A libp2p host with no dainode roles, connected to the daemon at `daemon_addr`; yields `send(frame) -> reply`."""
    host = build_host(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"])
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(daemon_addr))
        await host.connect(info)

        async def send(frame: bytes, timeout: float = 15.0) -> dict | None:
            """One request of raw bytes; the decoded reply frame, or None if the daemon reset the stream."""
            with trio.fail_after(timeout):
                stream = await host.new_stream(info.peer_id, [TProtocol(PROTOCOL)])
                try:
                    await stream.write(encode_varint_prefixed(frame))
                    return await read_frame(stream, 1 << 20)
                except Exception:
                    return None
                finally:
                    with contextlib.suppress(Exception):
                        await stream.close()

        yield send


def frame(msg) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)
