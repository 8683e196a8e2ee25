"""Content commands (kubo style): add, cat, get, pin add|rm|ls, repo gc|stat."""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

from dainode.cli.common import CommandFailed, add_data_dir_arg, print_json, print_table, rpc_call

POLL_S = 0.25
PROGRESS_MIN_BYTES = 4 * 1024 * 1024  # smaller files finish before a progress line is worth printing
CAT_PIECE = 8 * 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("add", help="add a file to the node's IPFS store and print its root CID")
    add_data_dir_arg(p)
    p.add_argument("file", help="path of the file (read by the daemon, so it must be on this machine)")
    p.add_argument("--cid-version", type=int, choices=(0, 1), help="CID version (default: store.cid_version, 1)")
    p.add_argument("--chunk-size", type=int, help="chunk size in bytes (default: store.chunk_size, 262144)")
    p.add_argument("--raw-leaves", dest="raw_leaves", action="store_true", default=None, help="leaves as raw blocks (default for CIDv1)")
    p.add_argument("--no-raw-leaves", dest="raw_leaves", action="store_false", help="leaves as dag-pb UnixFS nodes (default for CIDv0)")
    p.add_argument("--only-hash", action="store_true", help="compute the CID only; store nothing")
    p.add_argument("--pin", dest="pin", action="store_true", default=True, help="pin the file (default)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin (a later `repo gc` removes it)")
    p.add_argument("--json", action="store_true", help="print the store_add result as JSON")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("cat", help="write a file's bytes to stdout")
    add_data_dir_arg(p)
    p.add_argument("cid")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--length", type=int, help="bytes to read (default: to the end)")
    p.set_defaults(func=cmd_cat)

    p = sub.add_parser("get", help="fetch a file by CID into a local path (progress on stderr)")
    add_data_dir_arg(p)
    p.add_argument("cid")
    p.add_argument("-o", "--output", required=True, help="where to write the file (written atomically)")
    p.add_argument("--peer", action="append", default=[], help="provider multiaddr (…/p2p/ID) to dial first; repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it is an existing regular file (default: refuse)")
    p.add_argument("--shared", action="store_true", help="create OUTPUT readable by others (0644 minus the daemon's umask; default 0600)")
    p.set_defaults(func=cmd_get)

    pin = sub.add_parser("pin", help="pin add|rm|ls").add_subparsers(dest="pin_command", metavar="SUBCOMMAND")
    pin.required = True
    p = pin.add_parser("add", help="pin a CID (fetches what is missing)")
    add_data_dir_arg(p)
    p.add_argument("cid")
    p.add_argument("--direct", action="store_true", help="pin only the root block, not the whole DAG")
    p.set_defaults(func=cmd_pin_add)
    p = pin.add_parser("rm", help="unpin a CID")
    add_data_dir_arg(p)
    p.add_argument("cid")
    p.set_defaults(func=cmd_pin_rm)
    p = pin.add_parser("ls", help="list pins")
    add_data_dir_arg(p)
    p.add_argument("--type", choices=("recursive", "direct"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pin_ls)

    repo = sub.add_parser("repo", help="repo gc|stat").add_subparsers(dest="repo_command", metavar="SUBCOMMAND")
    repo.required = True
    p = repo.add_parser("gc", help="delete blocks no pin keeps")
    add_data_dir_arg(p)
    p.set_defaults(func=cmd_repo_gc)
    p = repo.add_parser("stat", help="blocks, bytes and pins in the store")
    add_data_dir_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_repo_stat)


def cmd_add(args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise CommandFailed(f"{args.file}: no such file", code=2)
    params = {"path": str(path.absolute()), "only_hash": args.only_hash, "pin": args.pin}
    for key in ("cid_version", "chunk_size", "raw_leaves"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    out = rpc_call(args, "store_add", params, timeout=None)
    for warning in out.get("warnings", []):
        sys.stderr.write(f"dainode: warning: {warning}\n")
    if args.json:
        print_json(out)
    else:
        print(out["cid"])
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    if args.offset < 0:
        raise CommandFailed(f"--offset must be 0 or more, not {args.offset}", code=2)
    if args.length is not None and args.length < 0:
        raise CommandFailed(f"--length must be 0 or more, not {args.length} (leave it out to read to the end)", code=2)
    offset, remaining = args.offset, args.length
    out = sys.stdout.buffer
    while remaining is None or remaining > 0:
        piece = CAT_PIECE if remaining is None else min(CAT_PIECE, remaining)
        res = rpc_call(args, "store_cat", {"cid": args.cid, "offset": offset, "length": piece}, timeout=None)
        data = base64.b64decode(res["data"])
        out.write(data)
        offset += len(data)
        if remaining is not None:
            remaining -= len(data)
        if len(data) < piece:
            break
    out.flush()
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_get(args: argparse.Namespace) -> int:
    out = str(Path(args.output).expanduser().absolute())
    params = {"cid": args.cid, "path": out, "providers": args.peer, "background": True, "overwrite": args.overwrite,
              "mode": "shared" if args.shared else "private"}
    job = rpc_call(args, "store_get", params)
    started = time.monotonic()
    shown = False
    while job["state"] == "running":
        time.sleep(POLL_S)
        try:
            job = rpc_call(args, "store_progress", {"job": job["job"]})
        except CommandFailed as exc:
            if not exc.not_running:
                raise
            if shown:
                sys.stderr.write("\n")
            raise CommandFailed(
                f"get {args.cid} stopped after {_human(job.get('bytes') or 0)}: {exc}; "
                f"{out} was not written; run the same get again once the daemon is back"
            ) from None
        total = job.get("total")
        if not args.quiet and total and total >= PROGRESS_MIN_BYTES and job["state"] == "running":
            elapsed = max(time.monotonic() - started, 1e-6)
            pct = 100.0 * job["bytes"] / total
            rate = job["bytes"] / elapsed / 1e6
            sys.stderr.write(f"\r{_human(job['bytes'])} / {_human(total)}  {pct:5.1f}%  {rate:6.1f} MB/s ")
            sys.stderr.flush()
            shown = True
    if shown:
        sys.stderr.write("\n")
    if job["state"] != "done":
        raise CommandFailed(f"get {args.cid} failed: {job.get('error')}")
    res = job["result"]
    if not args.quiet:
        rate = res["size"] / max(res["elapsed_s"], 1e-6) / 1e6
        sys.stderr.write(f"saved {res['path']} ({_human(res['size'])}, {res['elapsed_s']:.2f} s, {rate:.1f} MB/s)\n")
    return 0


def cmd_pin_add(args: argparse.Namespace) -> int:
    out = rpc_call(args, "store_pin_add", {"cid": args.cid, "recursive": not args.direct}, timeout=None)
    print(f"pinned {out['cid']} {out['type']}ly")
    return 0


def cmd_pin_rm(args: argparse.Namespace) -> int:
    out = rpc_call(args, "store_pin_rm", {"cid": args.cid})
    print(f"unpinned {out['cid']}")
    return 0


def cmd_pin_ls(args: argparse.Namespace) -> int:
    params = {"type": args.type} if args.type else {}
    pins = rpc_call(args, "store_pin_ls", params)
    if args.json:
        print_json(pins)
        return 0
    for p in pins:
        print(f"{p['cid']} {p['type']}")
    return 0


def cmd_repo_gc(args: argparse.Namespace) -> int:
    out = rpc_call(args, "store_gc", timeout=None)
    print(f"removed {out['removed']} blocks ({_human(out['freed_bytes'])}), kept {out['kept']}")
    return 0


def cmd_repo_stat(args: argparse.Namespace) -> int:
    st = rpc_call(args, "store_stat")
    if args.json:
        print_json(st)
        return 0
    print_table([("blocks", st["blocks"]), ("size", _human(st["bytes"])), ("pins", st["pins"]), ("path", st["repo_path"])])
    return 0
