"""Durable, verified, flatfs-style on-disk blockstore keyed by multihash."""

from __future__ import annotations

import base64
import itertools
import logging
import os
import threading
from pathlib import Path
from typing import Iterator

from dainode.errors import InvalidBlock, StoreError
from dainode.fsutil import fsync_dir
from dainode.store.cid import CID, IDENTITY, RAW, decode_multihash, verify_block

log = logging.getLogger(__name__)

# The bitswap spec allows blocks up to 2 MiB (py-libp2p 0.8.1 refuses anything over 512 KiB).
MAX_BLOCK_SIZE = 2 * 1024 * 1024
_SUFFIX = ".data"
_TMP_DIR = ".tmp"


def _key_name(mh: bytes) -> str:
    # go-ds-flatfs as kubo uses it: base32 upper without padding of the multihash ("CIQ…")
    return base64.b32encode(mh).decode("ascii").rstrip("=")


def _name_key(name: str) -> bytes:
    return base64.b32decode(name + "=" * (-len(name) % 8))


def _writer_alive(tmp_name: str) -> bool:
    """True if the process that named this temp file (`<pid>-…`) still runs."""
    try:
        pid = int(tmp_name.split("-", 1)[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


class Blockstore:
    """Blocks as files `<root>/<shard>/<B32 multihash>.data`, shard = next-to-last 2 chars (kubo's default).

    Writes are temp file + fsync + rename + fsync dir, so a block file is either complete
    or absent; reads re-verify the hash, so a file corrupted on disk is dropped, never served.
    Identity-hash CIDs carry their data inline and are never stored. Thread-safe: every
    operation is a single atomic filesystem step on its own file.
    """

    def __init__(self, root: Path, *, sync: bool = True):
        self.root = Path(root)
        self.sync = sync
        self._tmp = self.root / _TMP_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(exist_ok=True)
        self._counter = itertools.count()
        self._lock = threading.Lock()
        # Temp files only survive a crash between write and rename: never valid blocks.
        for leftover in self._tmp.iterdir():
            if _writer_alive(leftover.name):
                continue  # another Blockstore on this root is writing it right now
            log.info("blockstore: removing leftover temp file %s", leftover.name)
            leftover.unlink(missing_ok=True)

    # -- paths ------------------------------------------------------------------------

    def _path(self, mh: bytes) -> Path:
        name = _key_name(mh)
        return self.root / name[-3:-1] / (name + _SUFFIX)

    def _tmp_path(self) -> Path:
        with self._lock:
            n = next(self._counter)
        return self._tmp / f"{os.getpid()}-{threading.get_ident()}-{n}"

    # -- API --------------------------------------------------------------------------

    def put(self, cid: CID, data: bytes) -> None:
        """Store `data` under `cid` after checking its hash (InvalidBlock otherwise). Idempotent."""
        if len(data) > MAX_BLOCK_SIZE:
            raise InvalidBlock(f"block {cid} is {len(data)} bytes; the limit is {MAX_BLOCK_SIZE} (2 MiB)")
        verify_block(cid, data)
        if cid.hash_code == IDENTITY:
            return
        path = self._path(cid.multihash)
        try:
            if path.stat().st_size == len(data):
                return
        except FileNotFoundError:
            pass
        tmp = self._tmp_path()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            path.parent.mkdir(exist_ok=True)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write block {cid} under {self.root}: {e}") from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.sync:
            fsync_dir(path.parent)

    def get(self, cid: CID) -> bytes | None:
        """The block's bytes, or None if absent. A file that fails verification is removed."""
        if cid.hash_code == IDENTITY:
            return cid.digest
        path = self._path(cid.multihash)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read block {cid} from {path}: {e}") from e
        try:
            verify_block(cid, data)
        except InvalidBlock:
            log.warning("blockstore: %s is corrupt on disk (%d bytes); removing it", path, len(data))
            path.unlink(missing_ok=True)
            return None
        return data

    def has(self, cid: CID) -> bool:
        """True if the block file exists (not re-verified; `get` does that)."""
        if cid.hash_code == IDENTITY:
            return True
        return self._path(cid.multihash).exists()

    def size(self, cid: CID) -> int | None:
        if cid.hash_code == IDENTITY:
            return len(cid.digest)
        try:
            return self._path(cid.multihash).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, cid: CID) -> None:
        """Remove the block if present (no error if absent)."""
        if cid.hash_code == IDENTITY:
            return
        path = self._path(cid.multihash)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        if self.sync:
            fsync_dir(path.parent)

    def keys(self) -> Iterator[bytes]:
        """Multihashes of all stored blocks."""
        for shard in sorted(self.root.iterdir()):
            if shard.name == _TMP_DIR or not shard.is_dir():
                continue
            for f in sorted(shard.iterdir()):
                name = f.name
                if not name.endswith(_SUFFIX):
                    continue
                try:
                    mh = _name_key(name[: -len(_SUFFIX)])
                    decode_multihash(mh)
                except ValueError:
                    log.warning("blockstore: ignoring foreign file %s", f)
                    continue
                yield mh

    def cids(self) -> Iterator[CID]:
        """All stored blocks as CIDv1 with codec raw (the store keys by multihash only, as kubo does)."""
        for mh in self.keys():
            yield CID(1, RAW, mh)

    def stat(self) -> dict:
        blocks = 0
        total = 0
        for mh in self.keys():
            try:
                total += self._path(mh).stat().st_size
            except FileNotFoundError:
                continue  # deleted concurrently
            blocks += 1
        return {"blocks": blocks, "bytes": total}
