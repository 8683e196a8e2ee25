"""Daemons as subprocesses for integration tests (the product's own launcher, `dainode.localnet`), and test files."""

import os
import time
from pathlib import Path

from dainode.localnet import PASSWORD, DaemonProcess, dainode_cmd, daemon_env, free_port, init_nodes, raw_request, run_cli

__all__ = ["PASSWORD", "DaemonProcess", "dainode_cmd", "daemon_env", "free_port", "init_nodes", "random_file", "raw_request",
           "run_cli", "start_all", "wait_for"]


def random_file(path: Path, size: int) -> Path:
    """Write `size` random bytes to `path` in 4 MiB pieces (memory stays small for big files)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * 1024 * 1024)
            f.write(os.urandom(n))
            left -= n
    return path


def start_all(*nodes: DaemonProcess, timeout: float = 120.0) -> list[DaemonProcess]:
    """Launch every daemon, then wait until each answers: the starts overlap instead of queueing (each is ~2 s of
    imports and key loading)."""
    for node in nodes:
        node.launch()
    for node in nodes:
        node.wait_ready(timeout)
    return list(nodes)


def wait_for(what: str, fn, timeout: float, every: float = 0.5):
    """Poll `fn` until it returns something truthy (returned) or `timeout` s pass (AssertionError naming `what` and
    the last value seen)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not within {timeout:g} s: {what} (last: {last!r})")
