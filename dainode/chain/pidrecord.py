"""The dev chain's PID record: which anvil this data dir spawned, so a restart can stop one left behind."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import psutil

from dainode.fsutil import atomic_write

log = logging.getLogger("dainode.chain")

# create_time is rounded by the kernel's clock ticks; psutil reads the same value back for
# the same process, so a small tolerance only absorbs float formatting.
CREATE_TIME_TOLERANCE_S = 0.05


def write_pid_record(path: Path, pid: int, cmdline: list[str]) -> dict:
    """Record a freshly spawned anvil durably (atomic write + fsync) before the node relies on it."""
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = None  # already gone: the caller's readiness check reports why
    record = {"pid": pid, "create_time": create_time, "cmdline": list(cmdline)}
    atomic_write(Path(path), json.dumps(record, sort_keys=True).encode("utf-8"), mode=0o600)
    return record


def read_pid_record(path: Path) -> dict | None:
    """The record, or None when there is none; an unreadable one is logged and ignored (it names no process we can trust)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("dev chain: PID record %s is unreadable (%s); ignoring it", path, exc)
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int) or not isinstance(record.get("cmdline"), list):
        log.warning("dev chain: PID record %s is malformed; ignoring it", path)
        return None
    return record


def remove_pid_record(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def recorded_process(record: dict) -> psutil.Process | None:
    """The live process the record names, or None when that PID is gone or now belongs to another process."""
    pid = record["pid"]
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        same_start = record.get("create_time") is not None and abs(proc.create_time() - record["create_time"]) <= CREATE_TIME_TOLERANCE_S
        same_cmd = proc.cmdline() == record["cmdline"]
    except psutil.Error:
        return None
    if not (same_start and same_cmd):
        log.info("dev chain: recorded anvil pid %d is now another process (%s); leaving it alone", pid, _describe(proc))
        return None
    return proc


def _describe(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:120] or proc.name()
    except psutil.Error:
        return "unknown"


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def stop_left_behind(path: Path, timeout: float = 15.0) -> int | None:
    """Stop the anvil recorded at `path` if it still runs (checked by PID, start time and argv); returns its PID.

    SIGTERM makes anvil write its --state file; SIGCONT wakes one that was stopped (SIGSTOP)
    so it can act on the SIGTERM; SIGKILL after `timeout`. A zombie counts as gone: its
    parent (the dead node) is not there to reap it, init does. Blocking: run in a thread."""
    record = read_pid_record(path)
    if record is None:
        return None
    proc = recorded_process(record)
    if proc is None:
        remove_pid_record(path)
        return None
    log.warning(
        "dev chain: anvil pid %d from a previous run of this node is still running (its node died without stopping it); stopping it",
        proc.pid,
    )
    for sig in (signal.SIGTERM, signal.SIGCONT):
        try:
            proc.send_signal(sig)
        except psutil.Error:
            break
    deadline = time.monotonic() + timeout
    while not _gone(proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _gone(proc):
        log.warning("dev chain: anvil pid %d ignored SIGTERM for %.0f s; killing it (its last state dump stands)", proc.pid, timeout)
        try:
            proc.kill()
        except psutil.Error:
            pass
        while not _gone(proc) and time.monotonic() < deadline + 10:
            time.sleep(0.05)
    remove_pid_record(path)
    log.info("dev chain: left-behind anvil pid %d stopped", proc.pid)
    return proc.pid
