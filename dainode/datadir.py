"""The data-dir lock: one process at a time owns a data dir (its keys, stores and admin socket)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dainode.errors import DainodeError

LOCK_FILE = "LOCK"


class DataDirLock:
    """An exclusive flock on `<data_dir>/LOCK`, held from before the keys are read or
    created until the process stops; the file holds the owner's pid (for people, not for
    the lock: a crashed owner's flock is gone with its process)."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.fd: int | None = None

    def acquire(self) -> "DataDirLock":
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DainodeError(f"another dainode is running with data dir {self.data_dir}; stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None

    def __enter__(self) -> "DataDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
