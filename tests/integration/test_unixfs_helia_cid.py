"""Interop: the same bytes and settings give the same root CID and the same blocks in dainode and @helia/unixfs."""

from __future__ import annotations

import base64
import io
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from dainode.store.cid import CID
from dainode.store.unixfs import export_file, import_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "unixfs_import.mjs"
KIB = 1024
CHUNK = 256 * KIB

# (name, size, chunk size, max links, raw leaves, CID version)
CASES = [
    ("empty", 0, CHUNK, 1024, True, 1),
    ("one-byte", 1, CHUNK, 1024, True, 1),
    ("one-chunk", CHUNK, CHUNK, 1024, True, 1),
    ("one-chunk-plus-1", CHUNK + 1, CHUNK, 1024, True, 1),
    ("five-chunks", 5 * CHUNK - 7, CHUNK, 1024, True, 1),
    # > 1024 leaves without 256 MiB: 1 KiB chunks cross Helia's 1024-link boundary
    ("1024-leaves", 1024 * KIB, KIB, 1024, True, 1),
    ("1025-leaves", 1024 * KIB + 1, KIB, 1024, True, 1),  # last group holds a single leaf
    ("1500-leaves", 1500 * KIB, KIB, 1024, True, 1),
    ("kubo-174-links", 400 * KIB + 3, KIB, 174, True, 1),
    ("deep-4-links", 70 * KIB + 1, KIB, 4, True, 1),
    ("v1-dag-pb-leaves", CHUNK + 1, CHUNK, 1024, False, 1),
    ("v0-empty", 0, CHUNK, 174, False, 0),
    ("v0-one-byte", 1, CHUNK, 174, False, 0),
    ("v0-one-chunk-plus-1", CHUNK + 1, CHUNK, 174, False, 0),
    ("v0-1500-leaves", 1500 * KIB, KIB, 174, False, 0),
    ("v0-raw-leaves", 3 * KIB + 5, KIB, 174, True, 0),
]


@pytest.fixture(scope="module")
def helia_results(tmp_path_factory):
    node = shutil.which("node")
    assert node, "Node.js (node) must be on PATH for the Helia interop test (see Makefile: make install)"
    tmp = tmp_path_factory.mktemp("unixfs-helia")
    jobs = []
    for i, (name, size, chunk, links, raw, version) in enumerate(CASES):
        path = tmp / f"{name}.bin"
        path.write_bytes(random.Random(i).randbytes(size))
        jobs.append(
            {"path": str(path), "chunkSize": chunk, "maxChildren": links, "rawLeaves": raw,
             "cidVersion": version, "dumpBlocks": True}
        )
    proc = subprocess.run(
        [node, str(SCRIPT), json.dumps(jobs)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(CASES)
    return {name: (Path(line["path"]), line) for (name, *_), line in zip(CASES, lines)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_same_root_cid_and_blocks_as_helia(case, helia_results):
    name, size, chunk, links, raw, version = case
    path, helia = helia_results[name]
    data = path.read_bytes()
    ours: dict[CID, bytes] = {}
    result = import_file(
        io.BytesIO(data), lambda c, b: ours.__setitem__(c, b),
        chunk_size=chunk, max_links=links, raw_leaves=raw, cid_version=version,
    )
    assert str(result.cid) == helia["cid"]
    assert result.size == size
    theirs = {CID.parse(c): base64.b64decode(b) for c, b in helia["blocks"].items()}
    assert ours == theirs  # byte-identical DAG, not only the root

    # dainode's exporter reads Helia's DAG back to the original bytes
    out = bytearray()

    async def get(cid: CID) -> bytes:
        await trio.lowlevel.checkpoint()
        return theirs[cid]

    await export_file(CID.parse(helia["cid"]), get, out.extend, prefetch=4)
    assert bytes(out) == data
