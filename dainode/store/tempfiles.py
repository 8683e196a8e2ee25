"""Temp files of store_get (`.NAME.dainode-PID-N.tmp`): their journal, and removing what a killed get left."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from dainode.fsutil import pid_alive

#: `<data_dir>/get-tmp/<pid>-<n>` holds the path of the temp file of a get under way; what a
#: killed daemon left there is deleted at the next start (the data-dir lock: nobody else uses them)
GET_JOURNAL = "get-tmp"
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.dainode-(?P<pid>[0-9]+)-(?P<n>[0-9]+)\.tmp$")

log = logging.getLogger("dainode.store")


def temp_path(out: Path, n: int) -> Path:
    return out.with_name(f".{out.name}.dainode-{os.getpid()}-{n}.tmp")


def journal(data_dir: Path, n: int, tmp: Path) -> Path:
    """Record a get's temp file (before it is created) so that a start after kill -9 can delete it.

    Not fsynced: a killed process's writes survive in the page cache; after a power loss the
    next get of the same path still finds the file (clean_next_to).
    """
    folder = Path(data_dir) / GET_JOURNAL
    folder.mkdir(mode=0o700, exist_ok=True)
    entry = folder / f"{os.getpid()}-{n}"
    entry.write_bytes(os.fsencode(tmp))
    return entry


def _remove_stale(tmp: Path, active: set[Path]) -> bool:
    """Delete `tmp` if it is a get temp file of a process that is gone (or of ours, not in use)."""
    m = _TMP_RE.match(tmp.name)
    if m is None or tmp in active:
        return False
    pid = int(m["pid"])
    if pid != os.getpid() and pid_alive(pid):  # another live process (a second node?) owns it
        return False
    try:
        if not stat.S_ISREG(os.lstat(tmp).st_mode):
            return False
        tmp.unlink()
    except OSError:
        return False
    log.info("removed %s, the temp file of an interrupted get", tmp)
    return True


def clean_journal(data_dir: Path, active: set[Path]) -> int:
    """At start: delete the temp files that gets of an earlier (killed) run of this node left behind."""
    folder = Path(data_dir) / GET_JOURNAL
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
            continue
        try:
            tmp = Path(os.fsdecode(entry.read_bytes()))
        except OSError:
            continue
        if tmp.is_absolute():
            removed += _remove_stale(tmp, active)
        entry.unlink(missing_ok=True)
    return removed


def clean_next_to(out: Path, active: set[Path]) -> int:
    """Before a get of `out`: delete `.NAME.dainode-PID-N.tmp` files for it whose process is gone."""
    try:
        names = os.listdir(out.parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        m = _TMP_RE.match(name)
        if m is not None and m["name"] == out.name:
            removed += _remove_stale(out.parent / name, active)
    return removed
