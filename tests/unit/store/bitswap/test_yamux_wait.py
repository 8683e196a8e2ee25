"""yamux_wait: a writer blocked on a full send window resumes when the window opens, not on a 10 ms poll."""

from __future__ import annotations

import trio
import trio.testing
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from dainode.store.bitswap import yamux_wait


class FakeConn:
    """Just enough of a Yamux connection for YamuxStream.write."""

    def __init__(self):
        self.frames: list[bytes] = []

    async def _write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)


async def _blocked_writer_progress(write) -> tuple[int, int]:
    """Frames written before and after the peer opens the window, with a clock that never moves."""
    yamux_wait.install()
    conn = FakeConn()
    stream = YamuxStream(1, conn, True)
    stream.send_window = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, stream, b"x" * 1000)
        await trio.testing.wait_all_tasks_blocked()
        before = len(conn.frames)
        async with stream.window_lock:  # what the library's WINDOW_UPDATE handler does
            stream.send_window += 4096
        await trio.testing.wait_all_tasks_blocked()
        after = len(conn.frames)
        nursery.cancel_scope.cancel()
    return before, after


def test_writer_wakes_on_window_update_without_time_passing():
    clock = trio.testing.MockClock(rate=0)  # time stands still: a sleep(0.01) poll never returns
    assert trio.run(_blocked_writer_progress, lambda stream, data: stream.write(data), clock=clock) == (0, 1)


def test_library_writer_needs_its_10ms_poll():
    clock = trio.testing.MockClock(rate=0)
    original = yamux_wait.write.__wrapped__
    assert trio.run(_blocked_writer_progress, original, clock=clock) == (0, 0)


def test_closing_wakes_a_blocked_writer():
    async def main():
        yamux_wait.install()
        stream = YamuxStream(1, FakeConn(), True)
        stream.send_window = 0
        errors = []

        async def write():
            try:
                await stream.write(b"x")
            except Exception as exc:
                errors.append(type(exc).__name__)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            await trio.testing.wait_all_tasks_blocked()
            stream.closed = True
        return errors

    assert trio.run(main, clock=trio.testing.MockClock(rate=0)) == ["MuxedStreamError"]
