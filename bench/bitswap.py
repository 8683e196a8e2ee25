"""Bitswap throughput: dainode -> dainode (two daemons) vs Helia -> Helia, same random file, same run.

usage: .venv/bin/python bench/bitswap.py [--size MIB] [--runs N] [--profile FILE.prof] [--json]

Each side adds the file on one node and fetches it by CID on another over loopback TCP
(both setups stay up and the fetches alternate, so load from other processes hits both)
(Noise + Yamux), writing it to disk; both copies are compared with the source. dainode
streams to a temp file (memory bounded by store.max_concurrent_wants blocks), Helia
writes fs.cat's chunks to a file. 256 KiB chunks, raw leaves, CIDv1 on both sides.
`--profile` runs the *receiving* daemon under cProfile and prints its top functions.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.daemon import DaemonProcess, random_file  # noqa: E402
from tests.integration.helia import HeliaPeer  # noqa: E402

MiB = 1024 * 1024


class ProfiledDaemon(DaemonProcess):
    """A daemon whose process runs under cProfile (stats written when it exits on SIGTERM)."""

    def __init__(self, *args, profile_path: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.profile_path = profile_path

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cProfile", "-o", str(self.profile_path), "-m", "dainode", *self.args()]


def fetch_dainode(a: DaemonProcess, b: DaemonProcess, cid: str, src: Path, dst: Path) -> float:
    t0 = time.monotonic()
    b.rpc("store_get", cid=cid, path=str(dst), providers=[a.multiaddr], timeout=600)
    elapsed = time.monotonic() - t0
    if not filecmp.cmp(src, dst, shallow=False):
        raise SystemExit("dainode fetched different bytes!")
    dst.unlink()
    b.rpc("store_gc")  # the next run fetches everything again
    return src.stat().st_size / elapsed / 1e6


def fetch_helia(work: Path, h1: HeliaPeer, cid: str, src: Path, dst: Path, i: int) -> float:
    with HeliaPeer(work / f"helia-fetcher-{i}.log") as h2:  # a fresh node: empty blockstore
        h2.call("dial", addr=h1.multiaddr)
        t0 = time.monotonic()
        h2.call("get", cid=cid, path=str(dst), timeoutMs=600_000, timeout=600)
        elapsed = time.monotonic() - t0
    if not filecmp.cmp(src, dst, shallow=False):
        raise SystemExit("Helia fetched different bytes!")
    dst.unlink()
    return src.stat().st_size / elapsed / 1e6


def run(work: Path, src: Path, runs: int, profile: Path | None, profile_provider: Path | None) -> tuple[list, list]:
    """Both setups stay up; fetches alternate dainode, Helia, dainode, … so that load from
    other processes on the machine hits both sides alike."""
    a = ProfiledDaemon(work, "provider", profile_path=profile_provider) if profile_provider else DaemonProcess(work, "provider")
    b = ProfiledDaemon(work, "fetcher", profile_path=profile) if profile else DaemonProcess(work, "fetcher")
    dainode, helia = [], []
    try:
        a.start()
        b.start()
        with HeliaPeer(work / "helia-provider.log") as h1:
            cid = a.rpc("store_add", path=str(src), timeout=300)["cid"]
            hcid = h1.call("add", path=str(src), chunkSize=256 * 1024, rawLeaves=True, cidVersion=1, timeout=300)["cid"]
            if hcid != cid:
                raise SystemExit(f"root CIDs differ: dainode {cid}, Helia {hcid}")
            for i in range(runs):
                dainode.append(fetch_dainode(a, b, cid, src, work / "dainode.bin"))
                helia.append(fetch_helia(work, h1, cid, src, work / "helia.bin", i))
    finally:
        b.stop(timeout=60)
        a.stop(timeout=60)
    return dainode, helia


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=float, default=64, help="file size in MiB (default 64)")
    ap.add_argument("--runs", type=int, default=1, help="fetches per side (default 1)")
    ap.add_argument("--profile", type=Path, help="cProfile the receiving daemon into this file and print its top entries")
    ap.add_argument("--profile-provider", type=Path, help="cProfile the serving daemon into this file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bitswap-") as tmp:
        work = Path(tmp)
        src = random_file(work / "src.bin", int(args.size * MiB))
        dainode, helia = run(work, src, args.runs, args.profile, args.profile_provider)
    best_d, best_h = max(dainode), max(helia)
    med_d, med_h = statistics.median(dainode), statistics.median(helia)
    result = {
        "size_mib": args.size,
        "dainode_mb_s": [round(r, 1) for r in dainode],
        "helia_mb_s": [round(r, 1) for r in helia],
        "ratio_best": round(best_d / best_h, 2),
        "ratio_median": round(med_d / med_h, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"file: {args.size:g} MiB random, 256 KiB chunks, loopback TCP + Noise + Yamux; same root CID on both sides")
        print(f"dainode -> dainode: {', '.join(f'{r:.1f}' for r in dainode)} MB/s")
        print(f"Helia   -> Helia:   {', '.join(f'{r:.1f}' for r in helia)} MB/s")
        print(f"ratio dainode/Helia: best {result['ratio_best']:.2f}, median {result['ratio_median']:.2f}")
    if args.profile:
        print(f"\nreceiving daemon profile ({args.profile}), top 25 by own time:")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    if args.profile_provider:
        print(f"\nserving daemon profile ({args.profile_provider}), top 25 by own time:")
        pstats.Stats(str(args.profile_provider)).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
