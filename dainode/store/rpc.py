"""Admin RPC of the store: store_* (add, get, cat, pins, gc, stat, progress) and bitswap_stat."""

from __future__ import annotations

import base64
import functools
from typing import TYPE_CHECKING

import trio

from dainode.admin.jsonrpc import reply_budget
from dainode.errors import PathRefused, RpcError, StoreError
from dainode.store.cid import CID

if TYPE_CHECKING:
    from dainode.store.service import StoreService

#: `store_cat` returns at most this many bytes per call (JSON carries them as base64 or hex).
CAT_LIMIT = 16 * 1024 * 1024
#: Room for the JSON around `data` in a store_cat reply (cid, offset, size, id...).
_CAT_ENVELOPE = 1024


def _invalid_paths(method):
    """A refused local path is an invalid parameter (-32602), with the reason as the message."""

    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except PathRefused as exc:
            raise RpcError(RpcError.INVALID_PARAMS, str(exc), {"type": "PathRefused"}) from None

    return wrapper


class StoreRpc:
    def __init__(self, store: "StoreService"):
        self.store = store

    def methods(self) -> dict:
        return {
            "store_add": self.store_add,
            "store_get": self.store_get,
            "store_progress": self.store_progress,
            "store_cat": self.store_cat,
            "store_pin_add": self.store_pin_add,
            "store_pin_rm": self.store_pin_rm,
            "store_pin_ls": self.store_pin_ls,
            "store_gc": self.store_gc,
            "store_stat": self.store_stat,
            "bitswap_stat": self.bitswap_stat,
        }

    @_invalid_paths
    async def store_add(
        self,
        path: str,
        cid_version: int | None = None,
        chunk_size: int | None = None,
        raw_leaves: bool | None = None,
        only_hash: bool = False,
        pin: bool = True,
    ) -> dict:
        """Import the local file `path` (read by the daemon) as UnixFS; returns {cid, size, blocks, pinned, warnings}.

        `path`: absolute, a regular file outside the node's data dir and /proc, /sys, /dev
        (docs/store.md "Local files"); `warnings` says when it is not readable by others.
        """
        if cid_version is not None and cid_version not in (0, 1):
            raise RpcError(RpcError.INVALID_PARAMS, "cid_version must be 0 or 1")
        return await self.store.add(
            path, cid_version=cid_version, chunk_size=chunk_size, raw_leaves=raw_leaves, only_hash=only_hash, pin=pin
        )

    @_invalid_paths
    async def store_get(
        self,
        cid: str,
        path: str,
        providers: list[str] | None = None,
        background: bool = False,
        overwrite: bool = False,
        mode: str = "private",
    ) -> dict:
        """Fetch file `cid` into `path` on the daemon's machine (atomic: complete or absent).

        `providers`: multiaddrs (…/p2p/<id>) to dial first. `background`: return a job at once
        and poll `store_progress(job)`; otherwise return {cid, path, size, elapsed_s} when done.
        `path`: absolute, outside the node's data dir and /proc, /sys, /dev; an existing regular
        file is replaced only with `overwrite: true`. `mode`: "private" (0600) or "shared"
        (0644 minus the daemon's umask).
        """
        if background:
            return _public(self.store.start_get_job(cid, path, providers, overwrite=overwrite, mode=mode))
        return await self.store.get(cid, path, providers=providers, overwrite=overwrite, mode=mode)

    async def store_progress(self, job: str) -> dict:
        """State of a background get: {job, state: running|done|failed, bytes, total, error, result}."""
        found = self.store.jobs.get(job)
        if found is None:
            raise RpcError(RpcError.INVALID_PARAMS, f"no job {job!r} (jobs are kept in memory until the daemon restarts)")
        return _public(found)

    async def store_cat(self, cid: str, offset: int = 0, length: int | None = None, encoding: str = "base64") -> dict:
        """Bytes of a file (at most 16 MiB per call; use offset/length for more, or store_get)."""
        if encoding not in ("base64", "hex"):
            raise RpcError(RpcError.INVALID_PARAMS, 'encoding must be "base64" or "hex"')
        # What still fits in this request's reply (a batch shares one budget): refuse up front
        # rather than read and encode bytes that would be thrown away.
        room = max(reply_budget.get() - _CAT_ENVELOPE, 0)
        fits = room * 3 // 4 if encoding == "base64" else room // 2
        limit = min(CAT_LIMIT, fits)
        if length is not None and length > limit:
            raise StoreError(
                f"store_cat of {length} bytes does not fit in this reply: at most {limit} bytes "
                f"({CAT_LIMIT} per call, and replies to one request or batch are limited); "
                f"read it in smaller pieces (offset/length, one per request), or use store_get (`dainode get CID -o FILE`)"
            )
        data = await self.store.cat(cid, offset, length, limit=limit)
        # encoding megabytes is CPU work: off the event loop, so other clients are served meanwhile
        text = await trio.to_thread.run_sync(_encode, data, encoding) if len(data) > 1 << 20 else _encode(data, encoding)
        return {"cid": cid, "offset": offset, "size": len(data), "encoding": encoding, "data": text}

    async def store_pin_add(self, cid: str, recursive: bool = True) -> dict:
        """Pin `cid` (fetching missing blocks of its DAG first)."""
        return await self.store.pin_add(cid, recursive=recursive)

    async def store_pin_rm(self, cid: str) -> dict:
        return await self.store.pin_rm(cid)

    async def store_pin_ls(self, type: str | None = None) -> list[dict]:
        return await self.store.pin_ls(type)

    async def store_gc(self) -> dict:
        """Delete every block that no pin keeps: {removed, freed_bytes, kept, missing_pinned}."""
        return await self.store.gc()

    async def store_stat(self) -> dict:
        return await self.store.stat()

    async def bitswap_stat(self) -> dict:
        """Blocks/bytes sent and received, duplicates, bad blocks per peer, wantlist, peers."""
        stat = self.store.bitswap.stat()
        stat["wantlist"] = [str(CID.parse(bytes.fromhex(c))) for c in stat["wantlist"]]
        return stat


def _encode(data: bytes, encoding: str) -> str:
    return base64.b64encode(data).decode() if encoding == "base64" else data.hex()


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items()}
