"""Which local files store_add may read and store_get may write for an admin-socket client (docs/store.md)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dainode.errors import PathRefused

#: never read or written through store_* paths: kernel and device files, not content
SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))
PRIVATE, SHARED = "private", "shared"
FILE_MODES = {PRIVATE: 0o600, SHARED: 0o644}  # SHARED is narrowed by the daemon's umask


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _resolve(path: str | Path, data_dir: Path, verb: str) -> tuple[Path, Path]:
    """(the path as given, made absolute; the real path with every symlink and .. resolved), both checked."""
    given = Path(path).expanduser()
    if not given.is_absolute():
        raise PathRefused(f"{path!s} is a relative path; give an absolute path (the daemon's working directory is not yours)")
    real = Path(os.path.realpath(given))
    for tree in SYSTEM_TREES:
        if _inside(given, tree) or _inside(real, tree):
            raise PathRefused(f"{given} is under {tree}: store_{verb} never touches kernel or device files")
    home = Path(os.path.realpath(data_dir))
    if _inside(real, home):
        shown = f"{given} (really {real})" if real != given else str(given)
        raise PathRefused(
            f"{shown} is inside the node's data dir {home} (keys, state, socket, lock): store_{verb} never "
            "reads or writes there; choose a path outside it"
        )
    return given, real


def _private_inodes(data_dir: Path) -> set[tuple[int, int]]:
    """(device, inode) of the data dir's own files (top level and keys/), to catch hard links to them."""
    found = set()
    for folder in (Path(data_dir), Path(data_dir) / "keys"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.add((st.st_dev, st.st_ino))
    return found


def check_add_path(path: str | Path, data_dir: Path) -> tuple[Path, list[str]]:
    """The real path `store_add` may read, and warnings for the result; PathRefused otherwise."""
    given, real = _resolve(path, data_dir, "add")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise PathRefused(f"{given}: no such file on the daemon's machine") from None
    except OSError as exc:
        raise PathRefused(f"cannot read {given}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused(f"{given} is {_kind(st.st_mode)}: store_add reads regular files only")
    if (st.st_dev, st.st_ino) in _private_inodes(data_dir):
        raise PathRefused(f"{given} is a hard link to a file of the node's data dir {data_dir}: store_add never reads it")
    warnings = []
    if not st.st_mode & stat.S_IROTH:
        warnings.append(
            f"{given} is not readable by others (mode {stat.S_IMODE(st.st_mode):04o}): it may be a secret, and it is now "
            "in the store, served to any peer that asks for its CID (`dainode pin rm` + `repo gc` removes it)"
        )
    return real, warnings


def open_for_add(real: Path, data_dir: Path):
    """Open a checked path for reading without following a swapped-in symlink, FIFO or device."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PathRefused(f"cannot open {real}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in _private_inodes(data_dir):
        os.close(fd)
        raise PathRefused(f"{real} changed while it was being checked; it is no longer a regular file outside the data dir")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def check_get_path(path: str | Path, data_dir: Path, *, overwrite: bool = False) -> Path:
    """The real path `store_get` may create (or replace, with `overwrite`); PathRefused otherwise."""
    given, real = _resolve(path, data_dir, "get")
    if not real.parent.is_dir():
        raise PathRefused(f"directory {real.parent} does not exist; create it or choose another output path")
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return real
    except OSError as exc:
        raise PathRefused(f"cannot check {given}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused(f"{given} is {_kind(st.st_mode)}: store_get writes regular files only and never replaces anything else")
    if (st.st_dev, st.st_ino) in _private_inodes(data_dir):
        raise PathRefused(f"{given} is a hard link to a file of the node's data dir {data_dir}: store_get never replaces it")
    if not overwrite:
        raise PathRefused(f"{given} exists; pass overwrite: true (CLI: --overwrite) to replace it")
    return real


def file_mode(mode: str) -> int:
    if mode not in FILE_MODES:
        raise PathRefused(f'mode must be "{PRIVATE}" (0600, the default) or "{SHARED}" (0644 minus the daemon\'s umask), not {mode!r}')
    return FILE_MODES[mode]
