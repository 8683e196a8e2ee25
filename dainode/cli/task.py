"""`dainode task create|list|status`: clients of the task_* admin RPC methods."""

from __future__ import annotations

import argparse
import os

from dainode.cli.common import CommandFailed, add_data_dir_arg, print_json, print_table
from dainode.cli.offer import _call


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("task", help="open training tasks and follow them")
    tsub = p.add_subparsers(dest="task_command", metavar="SUBCOMMAND", required=True)

    c = tsub.add_parser("create", help="open a training task from a manifest (needs --roles model)")
    add_data_dir_arg(c)
    c.add_argument("manifest", metavar="MANIFEST.toml", help="the task manifest (see config/task.example.toml)")
    c.add_argument("--json", action="store_true", help='print {"task_id": N, ...} as JSON')
    c.set_defaults(func=cmd_task_create)

    ls = tsub.add_parser("list", help="tasks this node takes part in")
    add_data_dir_arg(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_task_list)

    st = tsub.add_parser("status", help="one task: phase, rounds, matches, pay")
    add_data_dir_arg(st)
    st.add_argument("task_id", type=int, metavar="ID")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_task_status)


def cmd_task_create(args: argparse.Namespace) -> int:
    from dainode.tasks.manifest import load_manifest

    path = os.path.abspath(os.path.expanduser(args.manifest))
    load_manifest(path)  # a bad manifest exits 2 here (ConfigError), before the daemon or the chain sees it
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc}", 2) from None
    out = _call(args, "task_create", {"manifest_toml": text, "base_dir": os.path.dirname(path)}, timeout=300.0)
    if args.json:
        print_json(out)
    else:
        print_table([(k, out[k]) for k in ("task_id", "tx", "manifest_cid", "pool_wei")])
    return 0


def cmd_task_list(args: argparse.Namespace) -> int:
    tasks = _call(args, "task_list", {})
    if args.json:
        print_json(tasks)
        return 0
    if not tasks:
        print("no tasks")
    for t in tasks:
        print(f"{t['task_id']:>4}  {t['phase']:<12} round {t['round']}/{t['rounds']}  {','.join(t['roles'])}  {t.get('name') or ''}")
    return 0


def cmd_task_status(args: argparse.Namespace) -> int:
    s = _call(args, "task_status", {"task_id": args.task_id})
    if args.json:
        print_json(s)
        return 0
    print_table([("task", s["task_id"]), ("phase", s["phase"]), ("round", f"{s['round']}/{s['rounds']}"),
                 ("pool", f"{s['pool_wei']} wei"), ("refund", f"{s['refund_wei']} wei"), ("report", s.get("report_dir") or "-"),
                 ("privacy", s.get("privacy") or "?")])
    for who, what in (s.get("visibility") or {}).items():
        print(f"  {who.replace('_', ' ')} sees: {what}")
    for h in s["history"]:
        print(f"  round {h['round']:>3}: accuracy {h['accuracy']:.4f} loss {h['loss']:.4f}")
    for m in s["matches"]:
        print(f"  match {m['match_id']}: data {m['data_provider']} ({m['data_price_wei']} wei) compute {m['compute_provider']} "
              f"({m['compute_price_wei']} wei) updates {m['updates_accepted']} accepted, {len(m['updates_rejected'])} rejected, "
              f"earned {m['earned_wei']} wei")
    for f in s.get("failures") or []:
        print(f"  failure: {f}")
    if s.get("stopped"):
        print(f"  the model provider's run of this task stopped: {s['stopped']} (it resumes when that node restarts)")
    return 0
