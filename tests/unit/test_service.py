"""Supervision: a crash is named and stops the owner; a shutdown is not a crash."""

from __future__ import annotations

import logging

import pytest
import trio

from dainode.errors import ServiceCrashed, ServiceNotRunning
from dainode.service import Service, start_supervised


class Sleeper(Service):
    name = "sleeper"

    def __init__(self):
        self.cancelled = False

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED):
        try:
            async with trio.open_nursery() as nursery:  # nested nurseries wrap Cancelled in groups
                nursery.start_soon(trio.sleep_forever)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.cancelled = True


class Crasher(Service):
    name = "crasher"

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await trio.sleep(0.01)
        raise RuntimeError("disk on fire")


async def test_cancellation_is_not_a_crash(caplog):
    s = Sleeper()
    with caplog.at_level(logging.ERROR):
        async with trio.open_nursery() as nursery:
            await start_supervised(nursery, s)
            nursery.cancel_scope.cancel()
    assert s.cancelled
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]


async def test_crash_is_logged_by_name_and_cancels_siblings(caplog):
    sibling = Sleeper()
    with caplog.at_level(logging.ERROR):
        with pytest.raises(BaseExceptionGroup) as info:
            async with trio.open_nursery() as nursery:
                await start_supervised(nursery, sibling)
                await start_supervised(nursery, Crasher())
    crash, _ = info.value.split(ServiceCrashed)
    assert crash is not None
    err = crash.exceptions[0]
    assert err.service == "crasher" and "disk on fire" in str(err)
    assert sibling.cancelled
    assert any("service crasher crashed" in r.getMessage() for r in caplog.records)


async def test_crash_before_started_is_reported_to_the_starter():
    class EarlyCrash(Service):
        name = "early"

        async def run(self, *, task_status=trio.TASK_STATUS_IGNORED):
            raise OSError("port in use")

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await start_supervised(nursery, EarlyCrash())
    crash, rest = info.value.split(ServiceCrashed)
    assert rest is None and "early" in str(crash.exceptions[0]) and "port in use" in str(crash.exceptions[0])


# --- the started event and use-before-start -----------------------------------------------


def test_service_is_abstract():
    class NoRun(Service):
        pass

    with pytest.raises(TypeError):
        NoRun()


async def test_started_event_and_running_flag():
    s = Sleeper()
    assert not s.running
    with pytest.raises(ServiceNotRunning, match="has not started"):
        s.require_running("a job")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.run)  # not via nursery.start: wait_started is the only signal
        with trio.fail_after(5):
            await s.wait_started()
        assert s.running
        s.require_running("a job")
        nursery.cancel_scope.cancel()
    assert not s.running
    with pytest.raises(ServiceNotRunning, match="stopped"):
        s.require_running("a job")


async def test_bitswap_spawn_before_start_raises_instead_of_dropping():
    from dainode.store.bitswap import Bitswap

    class Host:
        def set_stream_handler(self, *a):
            pass

    engine = Bitswap(Host(), blocks=None)
    ran = []

    async def work():
        ran.append(1)

    with pytest.raises(ServiceNotRunning, match="bitswap"):
        engine.spawn(work)
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        engine.spawn(work)
        await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert ran == [1]
    with pytest.raises(ServiceNotRunning):
        engine.spawn(work)
