"""StoreService: the node's IPFS peer - blockstore, pins, UnixFS add/get/cat and bitswap on the p2p host."""

from __future__ import annotations

import io
import itertools
import math
import os
import stat
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import trio
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from multiaddr import Multiaddr

from dainode.config import Config
from dainode.errors import DainodeError, InvalidCid, P2PError, PathRefused, StoreError
from dainode.fsutil import fsync_dir
from dainode.service import Service
from dainode.store.bitswap import Bitswap, Session
from dainode.store.blockstore import Blockstore
from dainode.store.cid import CID, RAW, check_file_cid, check_verifiable, verify_block
from dainode.store.dagpb import decode_node, decode_unixfs
from dainode.store.inbox import Inbox
from dainode.store.paths import PRIVATE, check_add_path, check_get_path, file_mode, open_for_add
from dainode.store.pins import PinStore
from dainode.store.tempfiles import clean_journal, clean_next_to, journal, temp_path
from dainode.store.unixfs import export_file, import_file, links_of, walk_dag

MAX_JOBS = 64
ANNOUNCE_QUIET_S = 3.0  # deferred DHT announcements go out once no add happened for this long ...
ANNOUNCE_MAX_DEFER_S = 60.0  # ... or when the oldest has waited this long
CONNECT_TIMEOUT_S = 10.0


#: Blocks up to this size are read (and existence checks made) on the event loop: a stat or a small read from
#: the page cache costs microseconds, a worker-thread hop two context switches, which on a loaded machine is
#: milliseconds per hop; bitswap answers a small want with several of them.
INLINE_READ = 128 * 1024


class _BlockAccess:
    """The engine's view of the blockstore: binary CIDs; bulk disk I/O in worker threads, small reads inline."""

    def __init__(self, blockstore: Blockstore):
        self.bs = blockstore

    async def has(self, cid: bytes) -> bool:
        return self.bs.has(CID.parse(cid))  # one stat

    def _small(self, cids: list[CID]) -> bool:
        total = 0
        for c in cids:
            size = self.bs.size(c)
            total += size or 0
        return total <= INLINE_READ

    async def get(self, cid: bytes) -> bytes | None:
        c = CID.parse(cid)
        if self._small([c]):
            return self.bs.get(c)
        return await trio.to_thread.run_sync(self.bs.get, c)

    async def get_many(self, cids: list[bytes]) -> list[bytes | None]:
        parsed = [CID.parse(c) for c in cids]
        if self._small(parsed):
            return [self.bs.get(c) for c in parsed]
        return await trio.to_thread.run_sync(lambda: [self.bs.get(c) for c in parsed])

    async def put(self, cid: bytes, data: bytes) -> None:
        await trio.to_thread.run_sync(self.bs.put, CID.parse(cid), data)

    def verify(self, cid: bytes, data: bytes) -> None:
        verify_block(CID.parse(cid), data)


def parse_cid(value: Any) -> CID:
    if not isinstance(value, str):
        raise InvalidCid(f"a CID must be a string like bafy… or Qm…, not {type(value).__name__}")
    return CID.parse(value)


class _Stop(Exception):
    """Ends an export early (cat with a length)."""


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The exception to report from a nursery's group: a Cancelled group stays a group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            exc = _first_error(exc)
        if isinstance(exc, (DainodeError, _Stop)):
            return exc
    return group


class StoreService(Service):
    """See docs/store.md. Started by the Node after p2p; uses `p2p.host` for bitswap."""

    name = "store"

    def __init__(self, config: Config, p2p, data_dir: Path):
        self.config = config
        self.p2p = p2p
        self.data_dir = Path(data_dir)
        self.blockstore = Blockstore(self.data_dir / "blocks")
        self.pins = PinStore(self.data_dir / "pins.sqlite")
        self.bitswap = Bitswap(
            p2p.host,
            _BlockAccess(self.blockstore),
            find_providers=self._find_providers if hasattr(p2p, "find_providers") else None,
            connect=self._connect_info,
        )
        self._gc_lock = trio.Lock()
        self._in_use: dict[bytes, int] = {}  # multihashes an ongoing add/get/pin needs (gc keeps them)
        self.jobs: dict[str, dict] = {}
        self._job_ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self._active_tmps: set[Path] = set()
        self.inbox = Inbox()  # documents pushed to this node ahead of the event naming them (see accept_push)
        self._deferred: OrderedDict[CID, float] = OrderedDict()  # CIDs to announce once adds are quiet (_announce)
        self._deferred_wake = trio.Event()
        self._last_add = -math.inf

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await trio.to_thread.run_sync(clean_journal, self.data_dir, self._active_tmps)
                await nursery.start(self.bitswap.run)
                nursery.start_soon(self._announce_pins)
                nursery.start_soon(self._announce_deferred)
                self.log.info("store ready: %s", self.data_dir / "blocks")
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.pins.close()

    async def _announce_pins(self) -> None:
        """Announce every recursively or directly pinned root on the DHT (when the p2p layer has one)."""
        if not hasattr(self.p2p, "provide"):
            return
        await trio.sleep(2.0)  # let bootstrap connections come up first
        for pin in await trio.to_thread.run_sync(self.pins.list):
            await self._provide(pin.cid)

    async def _provide(self, cid: CID) -> None:
        provide = getattr(self.p2p, "provide", None)
        if provide is None:
            return
        try:
            await provide(cid.multihash)
        except (P2PError, OSError) as exc:
            self.log.info("could not announce %s on the DHT: %s", cid, exc)

    def _spawn(self, fn, *args) -> None:
        if self._nursery is None:
            raise StoreError("the store service is not running")
        self._nursery.start_soon(fn, *args)

    def _announce(self, cid: CID, *, soon: bool = False) -> None:
        """Queue a DHT announcement. Small in-memory documents (`soon=False`: a task's per-round models, results and
        updates, which the peers that need them get from a connected node at once) are announced when adds have
        been quiet for ANNOUNCE_QUIET_S (at most ANNOUNCE_MAX_DEFER_S late), so the DHT traffic of every put does
        not land on the rounds; everything else is announced at once."""
        if self._nursery is None:  # not running (a library user importing offline): nothing to announce to
            return
        if soon:
            self._nursery.start_soon(self._provide, cid)
            return
        self._deferred.setdefault(cid, trio.current_time())
        self._deferred_wake.set()

    async def _announce_deferred(self) -> None:
        while True:
            await self._deferred_wake.wait()
            self._deferred_wake = trio.Event()
            while self._deferred:
                oldest = min(self._deferred.values())
                quiet_until = self._last_add + ANNOUNCE_QUIET_S
                due = min(quiet_until, oldest + ANNOUNCE_MAX_DEFER_S)
                if trio.current_time() < due:
                    with trio.move_on_at(due):
                        await self._deferred_wake.wait()  # a new add (or a test) makes it look again
                    self._deferred_wake = trio.Event()
                    continue
                cid, _ = self._deferred.popitem(last=False)
                await self._provide(cid)

    # --- peers ---------------------------------------------------------------------------

    async def _find_providers(self, mh: bytes) -> list[PeerInfo]:
        return await self.p2p.find_providers(mh)

    async def _connect_info(self, info: PeerInfo) -> None:
        self.p2p.host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await self.p2p.host.connect(info)

    async def connect_providers(self, addrs: list[str]) -> None:
        """Dial provider hints (`/ip4/…/tcp/…/p2p/<id>`) before a fetch; P2PError if none can be reached."""
        errors = []
        for addr in addrs:
            try:
                info = info_from_p2p_addr(Multiaddr(addr))
            except Exception as exc:
                raise StoreError(f"provider {addr!r} is not a multiaddr ending in /p2p/<peer id>: {exc}") from None
            try:
                await self._connect_info(info)
            except Exception as exc:  # dial errors come in many library types
                errors.append(f"{addr}: {type(exc).__name__}: {exc}")
        if addrs and len(errors) == len(addrs):
            raise P2PError("cannot reach any provider: " + "; ".join(errors))

    def session(self) -> Session:
        return Session(self.bitswap, timeout_s=self.config.store.fetch_timeout_s, max_wants=self.config.store.max_concurrent_wants)

    def _hold(self, mh: bytes) -> None:
        self._in_use[mh] = self._in_use.get(mh, 0) + 1

    def _release(self, keys: list[bytes]) -> None:
        for mh in keys:
            n = self._in_use.get(mh, 0) - 1
            if n <= 0:
                self._in_use.pop(mh, None)
            else:
                self._in_use[mh] = n

    # --- add -----------------------------------------------------------------------------

    async def add(
        self,
        path: "str | Path | BinaryIO",
        *,
        cid_version: int | None = None,
        chunk_size: int | None = None,
        raw_leaves: bool | None = None,
        only_hash: bool = False,
        pin: bool = True,
    ) -> dict:
        """Import a local file (path) or a binary stream as UnixFS; returns {cid, size, blocks, pinned}.

        Pinned by default (like kubo), and then announced on the DHT.
        """
        store = self.config.store
        cid_version = store.cid_version if cid_version is None else cid_version
        chunk_size = store.chunk_size if chunk_size is None else chunk_size
        if raw_leaves is None:
            raw_leaves = store.raw_leaves if cid_version == 1 else False  # kubo: CIDv0 implies dag-pb leaves
        stream = path if hasattr(path, "read") else None
        warnings: list[str] = []
        if stream is None:  # a path: see docs/store.md "Local files" for what may be read
            path, warnings = check_add_path(path, self.data_dir)
        added: list[bytes] = []

        def put(cid: CID, data: bytes) -> None:
            if not only_hash:
                self.blockstore.put(cid, data)
                added.append(cid.to_bytes())

        def run_import():
            options = dict(chunk_size=chunk_size, cid_version=cid_version, raw_leaves=raw_leaves)
            if stream is not None:
                return import_file(stream, put, **options)
            try:
                with open_for_add(path, self.data_dir) as f:
                    return import_file(f, put, **options)
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc}") from exc

        # a small document in memory (a round's model, result or update) is imported on the event loop: one block
        # write and one pin commit cost less than the two worker-thread hops (see INLINE_READ)
        small = isinstance(stream, io.BytesIO) and len(stream.getbuffer()) <= INLINE_READ
        async with self._gc_lock:  # a gc between writing the blocks and pinning the root would eat them
            result = run_import() if small else await trio.to_thread.run_sync(run_import)
            if pin and not only_hash:
                if small:
                    self.pins.add(result.cid, recursive=True)
                else:
                    await trio.to_thread.run_sync(lambda: self.pins.add(result.cid, recursive=True))
        if self.bitswap.ledgers:
            for cid in added:
                self.bitswap.notify_new_block(cid)
        if pin and not only_hash:
            self._last_add = trio.current_time()
            self._announce(result.cid, soon=not small)
        for warning in warnings:
            self.log.warning("add %s: %s", result.cid, warning)
        return {"cid": str(result.cid), "size": result.size, "blocks": result.blocks, "pinned": bool(pin and not only_hash),
                "warnings": warnings}

    # --- pushed documents ---------------------------------------------------------------

    def _hash_now(self, data: bytes) -> CID:
        store = self.config.store
        raw_leaves = store.raw_leaves if store.cid_version == 1 else False
        result = import_file(io.BytesIO(data), lambda cid, block: None, chunk_size=store.chunk_size,
                             cid_version=store.cid_version, raw_leaves=raw_leaves)
        return result.cid

    async def hash_bytes(self, data: bytes) -> CID:
        """The CID `add` gives `data` with this node's settings; nothing stored or announced (small data inline:
        hashing a document of a few chunks costs less than the thread hop)."""
        if len(data) <= 4 * self.config.store.chunk_size:
            return self._hash_now(data)
        return await trio.to_thread.run_sync(self._hash_now, data)

    async def accept_push(self, cid: str, data: bytes) -> bool:
        """Hold a whole document a peer pushed, if `data` hashes to `cid` (False, and nothing held, if not);
        `fetch_bytes(cid)` then returns it without asking the network."""
        if str(await self.hash_bytes(bytes(data))) != str(parse_cid(cid)):
            return False
        self.inbox.put(str(parse_cid(cid)), bytes(data))
        return True

    async def fetch_bytes(self, cid: str, *, limit: int, providers: list[str] | None = None) -> bytes:
        """A whole file by CID: a pushed copy if one is (or arrives while fetching), else `cat` over bitswap."""
        key = str(parse_cid(cid))
        data = self.inbox.get(key)
        if data is None:
            data = await self._race_push(key, limit, providers)
        if len(data) > limit:
            raise StoreError(f"{key} has {len(data)} bytes, more than the {limit}-byte limit of this read")
        return data

    async def _race_push(self, key: str, limit: int, providers: list[str] | None) -> bytes:
        got: list = []

        async def pushed(cancel: trio.CancelScope) -> None:
            got.append(await self.inbox.wait(key))
            cancel.cancel()

        async def fetched(cancel: trio.CancelScope) -> None:
            try:
                if providers:
                    await self.connect_providers(providers)
                got.append(await self.cat(key, limit=limit))
            except DainodeError as exc:
                got.append(exc)
            cancel.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pushed, nursery.cancel_scope)
            nursery.start_soon(fetched, nursery.cancel_scope)
        if isinstance(got[0], DainodeError):
            raise got[0]
        return got[0]

    # --- get / cat -----------------------------------------------------------------------

    async def _root_size(self, cid: CID, block: bytes) -> int | None:
        if cid.codec == RAW:
            return len(block)
        try:
            node = decode_node(block)
            return decode_unixfs(node.data).filesize if node.data is not None else None
        except DainodeError:
            return None

    async def export(self, cid: CID, write, progress: dict | None = None) -> int:
        """Stream a UnixFS file through `write`, fetching missing blocks with one session."""
        check_file_cid(cid)  # an unsupported codec/hash is refused at once, not after the fetch timeout
        held: list[bytes] = []
        with self.session() as session:

            async def get_block(c: CID) -> bytes:
                self._hold(c.multihash)
                held.append(c.multihash)
                data = await session.get(c.to_bytes())
                if progress is not None and c == cid:
                    progress["total"] = await self._root_size(c, data)
                return data

            try:
                return await export_file(cid, get_block, write, prefetch=self.config.store.max_concurrent_wants)
            except BaseExceptionGroup as group:  # the exporter's nursery wraps what its tasks raise
                raise _first_error(group) from None
            finally:
                self._release(held)

    async def get(
        self,
        cid: str,
        path: str | Path,
        *,
        providers: list[str] | None = None,
        progress: dict | None = None,
        overwrite: bool = False,
        mode: str = PRIVATE,
    ) -> dict:
        """Fetch the file `cid` into `path` (temp file, fsync, rename: `path` is complete or absent).

        `path` follows docs/store.md "Local files": outside the data dir, a regular file,
        replaced only with `overwrite`; created 0600, or 0644 minus the umask with mode="shared".
        """
        root = parse_cid(cid)
        check_file_cid(root)
        out = check_get_path(path, self.data_dir, overwrite=overwrite)
        perm = file_mode(mode)
        await trio.to_thread.run_sync(clean_next_to, out, self._active_tmps)
        if providers:
            await self.connect_providers(providers)
        progress = progress if progress is not None else {}
        progress.setdefault("bytes", 0)
        n = next(self._job_ids)
        tmp = temp_path(out, n)
        entry = journal(self.data_dir, n, tmp)
        self._active_tmps.add(tmp)
        started = time.monotonic()
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perm), "wb") as f:

                def write(data: bytes) -> None:
                    f.write(data)
                    progress["bytes"] += len(data)

                size = await self.export(root, write, progress)
                await trio.to_thread.run_sync(lambda: (f.flush(), os.fsync(f.fileno())))
            self._publish(tmp, out, overwrite)
            fsync_dir(out.parent)
        finally:
            tmp.unlink(missing_ok=True)
            self._active_tmps.discard(tmp)
            entry.unlink(missing_ok=True)
        elapsed = time.monotonic() - started
        return {"cid": str(root), "path": str(out), "size": size, "elapsed_s": round(elapsed, 3)}

    @staticmethod
    def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
        """Move the finished temp file to `out`: link(2) when nothing may be replaced (fails
        atomically if `out` appeared meanwhile), rename(2) over a regular file otherwise."""
        if not overwrite:
            try:
                os.link(tmp, out)
            except FileExistsError:
                raise PathRefused(f"{out} appeared while the file was fetched; not replaced (pass overwrite: true)") from None
            return
        try:
            st = os.lstat(out)
            if not stat.S_ISREG(st.st_mode):
                raise PathRefused(f"{out} became a non-regular file while the file was fetched; not replaced")
        except FileNotFoundError:
            pass
        os.replace(tmp, out)

    async def cat(self, cid: str, offset: int = 0, length: int | None = None, *, limit: int) -> bytes:
        """Bytes [offset, offset+length) of a file, at most `limit` of them (StoreError beyond)."""
        root = parse_cid(cid)
        if offset < 0 or (length is not None and length < 0):
            raise StoreError("offset and length must be 0 or more")
        if length is not None and length > limit:
            raise StoreError(f"length {length} exceeds the {limit}-byte limit of cat; read in pieces or use get")
        end_wanted = offset + (limit if length is None else length)
        buf = bytearray()
        pos = 0

        def write(data: bytes) -> None:
            nonlocal pos
            start = pos
            pos += len(data)
            lo, hi = max(start, offset), min(pos, end_wanted)
            if lo < hi:
                buf.extend(data[lo - start : hi - start])
            if pos > end_wanted:
                if length is None:
                    raise StoreError(
                        f"{root} has more than {limit} bytes after offset {offset}, the limit of cat over RPC; "
                        f"pass offset/length to read it in pieces, or use `dainode get CID -o FILE`"
                    )
                raise _Stop
            if length is not None and pos == end_wanted:
                raise _Stop

        try:
            await self.export(root, write)
        except _Stop:
            pass
        return bytes(buf)

    # --- jobs (long gets the CLI polls) --------------------------------------------------

    def start_get_job(
        self, cid: str, path: str, providers: list[str] | None, *, overwrite: bool = False, mode: str = PRIVATE
    ) -> dict:
        check_file_cid(parse_cid(cid))
        check_get_path(path, self.data_dir, overwrite=overwrite)  # refused now, not in the job
        file_mode(mode)
        job_id = f"get-{next(self._job_ids)}"
        job = {"job": job_id, "cid": cid, "path": str(path), "state": "running", "bytes": 0, "total": None,
               "error": None, "result": None, "started": time.time()}
        self.jobs[job_id] = job
        finished = [k for k, j in self.jobs.items() if j["state"] != "running"]
        while len(self.jobs) > MAX_JOBS and finished:
            self.jobs.pop(finished.pop(0))
        self._spawn(self._run_job, job, providers, overwrite, mode)
        return job

    async def _run_job(self, job: dict, providers: list[str] | None, overwrite: bool, mode: str) -> None:
        try:
            job["result"] = await self.get(
                job["cid"], job["path"], providers=providers, progress=job, overwrite=overwrite, mode=mode
            )
            job["state"] = "done"
        except DainodeError as exc:
            job["state"], job["error"] = "failed", str(exc)
        except Exception as exc:  # a bug must not take the node down with it; report it on the job
            self.log.exception("get job %s failed", job["job"])
            job["state"], job["error"] = "failed", f"internal error: {type(exc).__name__}: {exc}"
        job["elapsed_s"] = round(time.time() - job["started"], 3)

    # --- pins and gc ---------------------------------------------------------------------

    async def pin_add(self, cid: str, *, recursive: bool = True) -> dict:
        root = parse_cid(cid)
        check_verifiable(root)
        held: list[bytes] = []
        with self.session() as session:

            async def get_block(c: CID) -> bytes:
                self._hold(c.multihash)
                held.append(c.multihash)
                return await session.get(c.to_bytes())

            try:
                count = 0
                if recursive:
                    async for c in walk_dag(root, get_block):
                        if c.codec == RAW:  # walk_dag does not fetch raw leaves; a pin needs them local
                            await get_block(c)
                        count += 1
                else:
                    await get_block(root)
                    count = 1
                await self.bitswap.flush()  # fetched blocks are written in the background
                async with self._gc_lock:
                    kind = await trio.to_thread.run_sync(lambda: self.pins.add(root, recursive=recursive))
            finally:
                self._release(held)
        self._announce(root, soon=True)
        return {"cid": str(root), "type": kind, "blocks": count}

    async def pin_rm(self, cid: str) -> dict:
        root = parse_cid(cid)
        removed = await trio.to_thread.run_sync(self.pins.remove, root)
        if not removed:
            raise StoreError(f"{root} is not pinned")
        return {"cid": str(root), "unpinned": True}

    async def pin_ls(self, type: str | None = None) -> list[dict]:
        pins = await trio.to_thread.run_sync(lambda: self.pins.list(type))
        return [{"cid": str(p.cid), "type": p.type, "created": p.created} for p in pins]

    async def gc(self) -> dict:
        in_use = self._in_use
        async with self._gc_lock:
            return await trio.to_thread.run_sync(lambda: self.pins.gc(self.blockstore, links_of, protect=lambda mh: mh in in_use))

    async def stat(self) -> dict:
        st = await trio.to_thread.run_sync(self.blockstore.stat)
        pins = await trio.to_thread.run_sync(self.pins.list)
        return {
            "repo_path": str(self.data_dir / "blocks"),
            "blocks": st["blocks"],
            "bytes": st["bytes"],
            "pins": len(pins),
            "pins_recursive": sum(p.type == "recursive" for p in pins),
            "pins_direct": sum(p.type == "direct" for p in pins),
        }

    def rpc_methods(self) -> dict:
        from dainode.store.rpc import StoreRpc

        return StoreRpc(self).methods()
