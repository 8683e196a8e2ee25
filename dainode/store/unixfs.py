"""UnixFS file importer (fixed-size chunks, balanced DAG, as @helia/unixfs builds it) and streaming exporter."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, BinaryIO, Callable

import trio

from dainode.errors import InvalidBlock, StoreError
from dainode.limits import MAX_DAG_DEPTH
from dainode.store.cid import CID, DAG_PB, RAW, cid_of
from dainode.store.dagpb import (
    T_FILE,
    T_RAW,
    TYPE_NAMES,
    PBLink,
    PBNode,
    UnixFSData,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)

DEFAULT_CHUNK_SIZE = 262144
DEFAULT_MAX_LINKS = 1024  # @helia/unixfs; kubo uses 174
MAX_CHUNK_SIZE = 1024 * 1024  # a UnixFS leaf must stay well under the 2 MiB block limit

PutFn = Callable[[CID, bytes], None]
GetBlockFn = Callable[[CID], Awaitable[bytes]]


@dataclass(frozen=True)
class ImportResult:
    cid: CID
    size: int  # file bytes
    blocks: int  # blocks handed to `put` (duplicates included)
    dag_size: int = 0  # serialized size of the whole DAG (the root's Tsize)


@dataclass
class _Item:
    """A finished node of the tree being built: what a parent needs to link to it."""

    cid: CID
    tsize: int  # serialized size of the sub-DAG
    filesize: int  # file bytes below it


# --- import -----------------------------------------------------------------------


def _read_chunk(stream: BinaryIO, size: int) -> bytes:
    # read() may return short counts (pipes, sockets): fill the chunk, as the js chunker does
    parts = []
    want = size
    while want:
        part = stream.read(want)
        if not part:
            break
        parts.append(part)
        want -= len(part)
    return b"".join(parts)


def import_file(
    stream: BinaryIO,
    put: PutFn,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    cid_version: int = 1,
    raw_leaves: bool = True,
    max_links: int = DEFAULT_MAX_LINKS,
) -> ImportResult:
    """Chunk `stream`, build the balanced UnixFS DAG, hand every block to `put`, return the root.

    Same bytes and settings give the same root CID as @helia/unixfs (ipfs-unixfs-importer):
    a one-chunk file is its leaf itself; a parent links up to `max_links` children with
    Name "" and Tsize = serialized size of the child's DAG. Memory: one chunk plus the
    pending links of each open tree level. `only_hash`: pass a `put` that discards.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise StoreError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE} bytes, not {chunk_size}")
    if max_links < 2:
        raise StoreError(f"max_links must be at least 2, not {max_links}")
    if cid_version not in (0, 1):
        raise StoreError(f"CID version must be 0 or 1, not {cid_version}")
    builder = _Builder(put, cid_version, raw_leaves, max_links)
    first = True
    while True:
        chunk = _read_chunk(stream, chunk_size)
        if chunk or first:  # an empty file is one empty chunk, as the reference chunker emits
            builder.add_leaf(chunk)
        first = False
        done = len(chunk) < chunk_size
        del chunk  # do not hold the previous chunk while the next one is read
        if done:
            break
    return builder.finish()


class _Builder:
    def __init__(self, put: PutFn, cid_version: int, raw_leaves: bool, max_links: int):
        self.put = put
        self.cid_version = cid_version
        self.raw_leaves = raw_leaves
        self.max_links = max_links
        self.levels: list[list[_Item]] = [[]]  # pending children per level, 0 = leaves
        self.counts: list[int] = [0]  # items ever added per level
        self.blocks = 0
        self.size = 0

    def _put(self, cid: CID, block: bytes) -> None:
        self.put(cid, block)
        self.blocks += 1

    def add_leaf(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.raw_leaves:
            cid = cid_of(chunk, RAW, 1)  # raw leaves are always CIDv1
            block = chunk
        else:
            block = encode_node(PBNode((), encode_unixfs(UnixFSData(T_FILE, chunk, len(chunk)))))
            cid = cid_of(block, DAG_PB, self.cid_version)
        self._put(cid, block)
        self._push(0, _Item(cid, len(block), len(chunk)))

    def _push(self, level: int, item: _Item) -> None:
        if level == len(self.levels):
            self.levels.append([])
            self.counts.append(0)
        self.levels[level].append(item)
        self.counts[level] += 1
        if len(self.levels[level]) == self.max_links:
            self._push(level + 1, self._parent(self.levels[level]))
            self.levels[level] = []

    def _parent(self, children: list[_Item]) -> _Item:
        # the js importer drops empty leaves from parents; only an empty file has one, and it is never parented
        children = [c for c in children if c.filesize > 0]
        data = encode_unixfs(UnixFSData(T_FILE, None, sum(c.filesize for c in children), [c.filesize for c in children]))
        block = encode_node(PBNode(tuple(PBLink(c.cid, "", c.tsize) for c in children), data))
        cid = cid_of(block, DAG_PB, self.cid_version)
        self._put(cid, block)
        return _Item(cid, len(block) + sum(c.tsize for c in children), sum(c.filesize for c in children))

    def finish(self) -> ImportResult:
        # Same shape as ipfs-unixfs-importer's balanced layout: group each level in runs of
        # max_links (the last run may be short, even a single child) until one node is left.
        level = 0
        while True:
            pending = self.levels[level]
            if self.counts[level] == 1 and level == len(self.levels) - 1:
                root = pending[0]
                break
            if pending:
                self._push(level + 1, self._parent(pending))
                self.levels[level] = []
            level += 1
        return ImportResult(root.cid, self.size, self.blocks, root.tsize)


# --- links and walking ------------------------------------------------------------


def links_of(cid: CID, block: bytes) -> list[CID]:
    """Child CIDs of a block, decided by the CID's codec (raw and identity-hashed raw have none)."""
    if cid.codec == RAW:
        return []
    if cid.codec == DAG_PB:
        return [link.cid for link in decode_node(block).links]
    raise StoreError(f"cannot follow links of {cid}: codec 0x{cid.codec:x} is not supported (only raw and dag-pb)")


async def walk_dag(cid: CID, get_block: GetBlockFn, *, max_depth: int = MAX_DAG_DEPTH) -> AsyncIterator[CID]:
    """Yield every CID of the DAG under `cid` (root first, depth-first); raw blocks are not fetched.

    StoreError for a DAG deeper than `max_depth` levels (the root is level 0), found before
    fetching anything below that level: a peer may serve an endless chain.
    """
    stack = [(cid, 0)]
    while stack:
        current, depth = stack.pop()
        yield current
        if current.codec == RAW:
            continue
        block = await get_block(current)
        links = links_of(current, block)
        if links and depth >= max_depth:
            raise StoreError(
                f"the DAG under {cid} is nested deeper than {max_depth} levels; refused "
                "(the peer serving it is broken or hostile)"
            )
        stack.extend((link, depth + 1) for link in reversed(links))


# --- export -----------------------------------------------------------------------


async def _maybe_await(result) -> None:
    if inspect.isawaitable(result):
        await result


def _file_node(cid: CID, block: bytes) -> tuple[PBNode, UnixFSData]:
    node = decode_node(block)
    if node.data is None:
        raise InvalidBlock(f"{cid} is a dag-pb node without UnixFS data")
    u = decode_unixfs(node.data)
    if u.type not in (T_FILE, T_RAW):
        raise StoreError(f"{cid} is a UnixFS {TYPE_NAMES[u.type]}, not a file; only files can be exported")
    own = len(u.data or b"")
    if len(u.blocksizes) != len(node.links):
        raise InvalidBlock(f"{cid}: {len(node.links)} links but {len(u.blocksizes)} blocksizes")
    if u.filesize is not None and u.filesize != own + sum(u.blocksizes):
        raise InvalidBlock(f"{cid}: filesize {u.filesize} != data {own} + blocksizes {sum(u.blocksizes)}")
    return node, u


@dataclass
class _Frame:
    """An open dag-pb node of the export: its children, the next one to emit, and fetches running ahead."""

    cids: list[CID]
    sizes: list[int]
    next: int = 0
    ahead: dict[int, "_Fetch"] = field(default_factory=dict)


class _Fetch:
    __slots__ = ("done", "block")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.block: bytes | None = None


async def export_file(
    cid: CID,
    get_block: GetBlockFn,
    write: Callable[[bytes], Awaitable[None] | None],
    *,
    prefetch: int = 1,
    max_depth: int = MAX_DAG_DEPTH,
) -> int:
    """Write the file's bytes in order through `write`; return the number of bytes written.

    raw vs dag-pb is decided by the CID's codec, never by looking at the bytes. Every node's
    size claims are checked against its children. `prefetch` > 1 fetches that many children
    of a node ahead concurrently (memory: about prefetch × chunk size per tree level).
    The walk is iterative (an explicit stack, no recursion: the DAG comes from peers), and a
    tree deeper than `max_depth` levels is refused when that depth is reached.
    """
    if prefetch < 1:
        raise StoreError("prefetch must be at least 1")
    written = 0
    root = cid
    stack: list[_Frame] = []  # the open dag-pb nodes from the root down to the current one

    async def emit(data: bytes) -> None:
        nonlocal written
        if data:
            await _maybe_await(write(data))
            written += len(data)

    async def visit(cid: CID, block: bytes, expected: int | None) -> _Frame | None:
        """Emit a node's own bytes; return a frame for its children (None for a leaf)."""
        if cid.codec == RAW:
            if expected is not None and len(block) != expected:
                raise InvalidBlock(f"raw leaf {cid} has {len(block)} bytes, its parent says {expected}")
            await emit(block)
            return None
        if cid.codec != DAG_PB:
            raise StoreError(f"{cid}: codec 0x{cid.codec:x} is not a UnixFS file (expected raw or dag-pb)")
        pb, u = _file_node(cid, block)
        total = len(u.data or b"") + sum(u.blocksizes)
        if expected is not None and total != expected:
            raise InvalidBlock(f"{cid} holds {total} file bytes, its parent says {expected}")
        await emit(u.data or b"")
        if not pb.links:
            return None
        if len(stack) >= max_depth:
            raise StoreError(
                f"the UnixFS DAG under {root} is nested deeper than {max_depth} levels; refused "
                "(a real file needs a handful: the peer serving it is broken or hostile)"
            )
        return _Frame([link.cid for link in pb.links], list(u.blocksizes))

    async def run(nursery: trio.Nursery | None) -> None:
        async def fetch(c: CID, slot: _Fetch) -> None:
            slot.block = await get_block(c)
            slot.done.set()

        def top_up(frame: _Frame) -> None:
            # keep up to `prefetch` children of this node in flight, from the next one to emit on
            assert nursery is not None
            end = min(frame.next + prefetch, len(frame.cids))
            for i in range(frame.next, end):
                if i not in frame.ahead:
                    frame.ahead[i] = slot = _Fetch()
                    nursery.start_soon(fetch, frame.cids[i], slot)

        first = await visit(root, await get_block(root), None)
        if first is not None:
            stack.append(first)
        while stack:
            frame = stack[-1]
            if frame.next == len(frame.cids):
                stack.pop()
                continue
            i = frame.next
            if nursery is None:
                block = await get_block(frame.cids[i])
            else:
                top_up(frame)
                slot = frame.ahead.pop(i)
                await slot.done.wait()
                block, slot.block = slot.block, None
            frame.next += 1
            child = await visit(frame.cids[i], block, frame.sizes[i])
            if child is not None:
                stack.append(child)

    if prefetch == 1:
        await run(None)
    else:
        async with trio.open_nursery() as nursery:
            await run(nursery)
    return written
