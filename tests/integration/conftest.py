"""Fixtures for tests that run real daemons as subprocesses."""

from __future__ import annotations

import pytest

from tests.integration.daemon import DaemonProcess


@pytest.fixture
def daemon_factory(tmp_path):
    """Create DaemonProcess objects; every one is stopped (by PID) at teardown, also on failure."""
    made: list[DaemonProcess] = []

    def make(name: str = "node", **kwargs) -> DaemonProcess:
        d = DaemonProcess(tmp_path, name, **kwargs)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
