"""Direct request/response over libp2p streams: uvarint-length-prefixed msgpack, size limits, per-request timeouts."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

import msgpack
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from dainode.errors import DainodeError, ProtocolError, RemoteError, RequestTimeout, StreamBroken
from dainode.limits import MAX_MSGPACK_DEPTH, value_depth_exceeds

log = logging.getLogger("dainode.p2p")

DEFAULT_MAX_SIZE = 1 << 20  # bytes per request or response
DEFAULT_TIMEOUT_S = 10.0
HANDLER_TIMEOUT_S = 30.0

Handler = Callable[[str, dict], Awaitable[dict]]


def encode(obj: dict) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode(data: bytes) -> dict:
    try:
        # the C unpacker stops at 1024 levels (StackError); handlers walk values in Python, so bound it lower
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise ProtocolError(f"peer sent bytes that are not msgpack ({type(exc).__name__})") from None
    if value_depth_exceeds(obj, MAX_MSGPACK_DEPTH):
        raise ProtocolError(f"peer sent msgpack nested deeper than {MAX_MSGPACK_DEPTH} levels")
    if not isinstance(obj, dict):
        raise ProtocolError(f"peer sent a msgpack {type(obj).__name__}, expected a map")
    return obj


async def read_frame(stream: INetStream, max_size: int) -> dict:
    try:
        data = await read_varint_prefixed_bytes_limited(stream, max_size)
    except Exception as exc:  # MessageTooLarge, ParseError, IncompleteReadError, stream errors
        name = type(exc).__name__
        if "TooLarge" in name:
            raise ProtocolError(f"peer sent a frame larger than {max_size} bytes") from None
        raise ProtocolError(f"could not read a frame from the peer: {name}: {exc}") from None
    return decode(data)


class ReqResp:
    """Request/response protocols on the node's host.

    A response frame is `{"ok": <dict>}` or `{"error": <message>}`; handlers answer with a
    dict or raise a DainodeError (its message goes back to the requester as RemoteError).
    """

    def __init__(self, host: IHost, *, max_size: int = DEFAULT_MAX_SIZE, handler_timeout_s: float = HANDLER_TIMEOUT_S):
        self.host = host
        self.max_size = max_size
        self.handler_timeout_s = handler_timeout_s
        self._handlers: dict[str, Handler] = {}
        self.bad_frames: dict[str, int] = {}  # protocol id -> requests whose frame was not a msgpack map (counted, refused)

    def set_handler(self, protocol_id: str, handler: Handler) -> None:
        """Serve `protocol_id` (e.g. `/dai/negotiate/1.0.0`) with `async handler(peer_id, request) -> response`."""
        if not protocol_id.startswith("/"):
            raise ValueError(f"protocol id {protocol_id!r} must start with '/'")
        self._handlers[protocol_id] = handler

        async def serve(stream: INetStream) -> None:
            await self._serve(protocol_id, stream)

        self.host.set_stream_handler(TProtocol(protocol_id), serve)

    async def _serve(self, protocol_id: str, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        try:
            with trio.move_on_after(self.handler_timeout_s) as scope:
                try:
                    try:
                        request = await read_frame(stream, self.max_size)
                    except ProtocolError:
                        self.bad_frames[protocol_id] = self.bad_frames.get(protocol_id, 0) + 1
                        raise
                    response = await self._handlers[protocol_id](peer, request)
                    if not isinstance(response, dict):
                        raise ProtocolError(f"handler for {protocol_id} returned {type(response).__name__}, not a dict")
                    frame = encode({"ok": response})
                except DainodeError as exc:
                    log.info("request %s from %s failed: %s", protocol_id, peer, exc)
                    frame = encode({"error": str(exc)})
                except Exception as exc:  # a bug in a handler: say so loudly, answer, keep serving
                    log.error("handler for %s crashed on a request from %s: %s", protocol_id, peer, exc, exc_info=exc)
                    frame = encode({"error": f"internal error in the {protocol_id} handler"})
                if len(frame) > self.max_size:
                    frame = encode({"error": f"response of {len(frame)} bytes exceeds the {self.max_size}-byte limit"})
                await stream.write(encode_varint_prefixed(frame))
            if scope.cancelled_caught:
                log.warning("request %s from %s: handler did not finish within %s s", protocol_id, peer, self.handler_timeout_s)
                await stream.reset()
                return
            await stream.close()
        except Exception as exc:  # a peer hanging up mid-exchange must not take the node down
            log.debug("request %s from %s: stream error %s: %s", protocol_id, peer, type(exc).__name__, exc)
            try:
                await stream.reset()
            except Exception:
                pass

    async def request(self, peer_id: str | ID, protocol_id: str, request: dict, *, timeout: float = DEFAULT_TIMEOUT_S) -> dict:
        """Send `request` to `peer_id` on `protocol_id` and return its response dict.

        Raises RequestTimeout (no answer in `timeout` s, dial included), ProtocolError (the peer
        does not speak the protocol or sent garbage), StreamBroken (the connection broke mid-exchange),
        RemoteError (its handler refused).
        """
        pid = peer_id if isinstance(peer_id, ID) else ID.from_base58(peer_id)
        frame = encode(request)
        if len(frame) > self.max_size:
            raise ProtocolError(f"request of {len(frame)} bytes exceeds the {self.max_size}-byte limit")
        with trio.move_on_after(timeout) as scope:
            try:
                stream = await self.host.new_stream(pid, [TProtocol(protocol_id)])
            except Exception as exc:
                raise ProtocolError(f"cannot open {protocol_id} to {pid}: {type(exc).__name__}: {exc}") from exc
            try:
                await stream.write(encode_varint_prefixed(frame))
                response = await read_frame(stream, self.max_size)
            except BaseException as exc:
                with trio.CancelScope(shield=True):
                    try:
                        await stream.reset()
                    except Exception:
                        pass
                if isinstance(exc, Exception) and not isinstance(exc, DainodeError):
                    # py-libp2p's own stream errors (StreamError, StreamReset, ConnectionClosedError, ...):
                    # one type for callers, who treat a broken exchange like any unreachable peer
                    raise StreamBroken(f"{protocol_id} request to {pid} broke off: {type(exc).__name__}: {exc}") from exc
                raise
            try:
                await stream.close()
            except Exception:
                pass
        if scope.cancelled_caught:
            raise RequestTimeout(f"{protocol_id} request to {pid} got no answer within {timeout} s")
        if "error" in response:
            raise RemoteError(f"{pid} refused {protocol_id}: {response['error']}")
        ok = response.get("ok")
        if not isinstance(ok, dict):
            raise ProtocolError(f"{pid} sent a {protocol_id} response without 'ok' or 'error'")
        return ok


__all__ = ["ReqResp", "ProtocolError", "RequestTimeout", "RemoteError", "StreamBroken"]
