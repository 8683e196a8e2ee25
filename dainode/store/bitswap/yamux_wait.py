"""Wake a yamux writer as soon as the peer opens the send window, instead of polling every 10 ms.

py-libp2p 0.8.1's `YamuxStream.write` waits for a WINDOW_UPDATE with
`while window == 0: await trio.sleep(0.01)`. A bulk sender (bitswap serving 256 KiB blocks)
fills the 256 KiB initial window constantly, so every refill costs up to 10 ms of idle
link. Here `send_window` and `closed` become properties whose setters fire a trio.Event,
which every code path of the library that grows the window (or closes the stream) goes
through, and `write` waits on that event. Everything else in `write` is the library's code.
`install()` is idempotent and process-wide.
"""

from __future__ import annotations

import struct

import trio
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux as _y

WINDOW_WAIT_TIMEOUT_S = 5.0  # the library's own limit
_EVENT = "_dai_window_event"


def _wake(stream) -> None:
    ev = stream.__dict__.get(_EVENT)
    if ev is not None:
        ev.set()


def _get_send_window(self) -> int:
    d = self.__dict__
    # a stream created before install() keeps its value under the plain attribute name
    return d["_dai_send_window"] if "_dai_send_window" in d else d.get("send_window", 0)


def _set_send_window(self, value: int) -> None:
    old = _get_send_window(self)
    self.__dict__["_dai_send_window"] = value
    if value > old:
        _wake(self)


def _get_closed(self) -> bool:
    d = self.__dict__
    return d["_dai_closed"] if "_dai_closed" in d else d.get("closed", False)


def _set_closed(self, value: bool) -> None:
    self.__dict__["_dai_closed"] = value
    if value:
        _wake(self)


async def _wait_for_window(self) -> None:
    with trio.move_on_after(WINDOW_WAIT_TIMEOUT_S) as scope:
        while True:
            async with self.window_lock:
                if self.send_window > 0 or self.closed:
                    return
                ev = self.__dict__.get(_EVENT)
                if ev is None or ev.is_set():
                    ev = trio.Event()  # shared by concurrent writers of this stream
                    self.__dict__[_EVENT] = ev
            await ev.wait()
    if scope.cancelled_caught:
        raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")


async def write(self, data: bytes) -> None:
    """`YamuxStream.write` of py-libp2p 0.8.1 with the 10 ms polling replaced by `_wait_for_window`."""
    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    total_len = len(data)
    sent = 0
    while sent < total_len:
        frame: bytes | None = None
        while frame is None:
            async with self.rw_lock.write_lock():
                if self.send_closed:
                    raise MuxedStreamError("Stream is closed for sending")
                async with self.window_lock:
                    if self.closed:
                        raise MuxedStreamError("Stream is closed")
                    if self.send_window > 0:
                        to_send = min(self.send_window, _y.MAX_MESSAGE_SIZE - _y.HEADER_SIZE, total_len - sent)
                        chunk = data[sent : sent + to_send]
                        self.send_window -= to_send
                        header = struct.pack(_y.YAMUX_HEADER_FORMAT, 0, _y.TYPE_DATA, 0, self.stream_id, len(chunk))
                        frame = header + chunk
            if frame is not None:
                break
            self._zero_window_waits += 1
            await _wait_for_window(self)
        await self.conn._write_frame(frame)
        sent += len(frame) - _y.HEADER_SIZE


def install() -> None:
    cls = _y.YamuxStream
    if getattr(cls, "_dai_window_wakeup", False):
        return
    cls.send_window = property(_get_send_window, _set_send_window)
    cls.closed = property(_get_closed, _set_closed)
    write.__wrapped__ = cls.write  # type: ignore[attr-defined]
    cls.write = write
    cls._dai_window_wakeup = True


#: Receive window we grant on a bitswap stream (go-yamux allows up to 16 MiB).
BULK_RECEIVE_WINDOW = 8 * 1024 * 1024


async def widen_receive_window(net_stream, size: int = BULK_RECEIVE_WINDOW) -> int:
    """Grant the peer `size` bytes of credit on this stream now; returns the increment sent.

    Streams start at 256 KiB of credit. With the go-style window updates the node installs
    (dainode/p2p/perf.py: an update only once half the window is consumed) the window grows
    only if that happens within 4 RTTs of the previous update, which on loopback (measured
    RTT ~0.2 ms) practically never does: a bulk sender then stalls every 128 KiB for a round
    trip through both event loops (measured: 37-47 MB/s before, 52-72 MB/s after, 64 MiB).
    A bitswap stream carries messages up to 4 MiB, so we offer 8 MiB up front (the memory a
    peer can make us buffer on it is bounded by that).
    """
    ys = getattr(net_stream, "muxed_stream", None)
    if not isinstance(ys, _y.YamuxStream):
        return 0
    async with ys.window_lock:
        buffered = len(ys.conn.stream_buffers.get(ys.stream_id, b""))
        ys.target_recv_window = max(ys.target_recv_window, size)
        increment = ys.target_recv_window - (ys.recv_window + buffered)
        if increment <= 0:
            return 0
        ys.recv_window += increment
    await ys.send_window_update(increment, skip_lock=True)
    return increment
