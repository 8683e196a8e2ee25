"""Crash-safe file writes, exclusive creation, private directories and key-file mode checks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dainode.errors import IdentityError


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it mode 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` so that `path` holds either the old or the new content, never a mix.

    tmp file in the same directory (created with `mode`, so secrets are never
    world-readable, not even briefly) -> write -> fsync -> rename -> fsync dir.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_exclusive(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create `path` holding `data`, failing with FileExistsError if it exists (never replaces).

    The bytes go to a temp file (O_EXCL, `mode`) that is fsynced and then hard-linked to
    `path`: link(2) fails atomically when the name exists, so two writers cannot both
    create it, and a crash leaves `path` either complete or absent.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)  # the umask may have narrowed it
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running: a zombie counts as exited, one of another user as alive."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc: ask the kernel
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_private_file(path: Path) -> None:
    """Refuse a key file that group or others may read (as ssh does), naming the chmod to run.

    Refused rather than silently fixed: a key that was readable may have been copied, and
    its owner should decide whether to keep using it.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise IdentityError(f"missing key file {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise IdentityError(f"key file {path} is not a regular file; restore it from a backup")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise IdentityError(
            f"key file {path} has mode {mode:04o}: group/others can read it, so the key may have leaked; "
            f"if that is acceptable run `chmod 600 {path}` and start again"
        )
