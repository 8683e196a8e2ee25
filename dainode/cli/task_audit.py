"""`dainode task verify ID` and `dainode task watch ID`: clients of the task_verify / task_watch admin RPC methods.

Registered into the `task` command whoever creates it (dainode/cli/task.py adds create/list/status).
"""

from __future__ import annotations

import argparse
import sys

from dainode.cli.common import CommandFailed, add_data_dir_arg, data_dir_of, print_json


def _task_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    parser = sub.choices.get("task")
    if parser is None:
        parser = sub.add_parser("task", help="training tasks: create, follow, verify")
    for action in parser._actions:  # the `task` parser another module made: reuse its subcommands
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="task_command", metavar="SUBCOMMAND", required=True)


def register(sub: argparse._SubParsersAction) -> None:
    tsub = _task_subparsers(sub)
    v = tsub.add_parser("verify", help="recompute a task from the chain and IPFS: PASS (exit 0) or FAIL with the differences (exit 1)")
    add_data_dir_arg(v)
    v.add_argument("task_id", type=int, metavar="ID")
    v.add_argument("--json", action="store_true", help="print the whole verdict as JSON")
    v.set_defaults(func=cmd_verify)
    w = tsub.add_parser("watch", help="follow a task round by round until it ends")
    add_data_dir_arg(w)
    w.add_argument("task_id", type=int, metavar="ID")
    w.set_defaults(func=cmd_watch)


def _call(args, method: str, params: dict, timeout: float):
    from dainode.admin import client as admin_client
    from dainode.errors import NodeNotRunningError, RpcError

    try:
        return admin_client.call(data_dir_of(args), method, params, timeout=timeout)
    except NodeNotRunningError as exc:
        raise CommandFailed(str(exc)) from None
    except RpcError as exc:
        if exc.code == RpcError.METHOD_NOT_FOUND:
            raise CommandFailed(f"the running node has no {method}: start it with a chain (--chain dev or --chain URL)") from None
        kind = exc.data.get("type") if isinstance(exc.data, dict) else None
        code = 2 if exc.code == RpcError.INVALID_PARAMS or kind == "ConfigError" else 1
        raise CommandFailed(exc.message if code == 2 else f"{method} failed: {exc.message}", code) from None
    except TimeoutError:
        raise CommandFailed(f"{method}: the daemon did not answer within {timeout:g} s") from None


def cmd_verify(args: argparse.Namespace) -> int:
    out = _call(args, "task_verify", {"task_id": args.task_id}, timeout=1800.0)
    if args.json:
        print_json(out)
    else:
        print(f"task {out['task_id']}: {out['verdict']}  (phase {out['phase']}, {out['rounds']} rounds, {out['matches']} matches)")
        for h in out.get("history", []):
            print(f"  round {h['round']}: accuracy {h['accuracy']:.4f} loss {h['loss']:.4f}")
        for d in out["differences"]:
            print(f"  DIFF {d['where']}: posted {d['posted']!r}, recomputed {d['recomputed']!r}" + (f" ({d['detail']})" if d["detail"] else ""))
        for d in out.get("caveats", []):
            print(f"  NOTE {d['where']}: posted {d['posted']!r}, now {d['recomputed']!r} ({d['detail']})")
    return 0 if out["ok"] else 1


def _bar(frac: float, width: int = 30) -> str:
    n = int(round(max(0.0, min(1.0, frac)) * width))
    return "#" * n + "-" * (width - n)


def cmd_watch(args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty()
    printed: set[int] = set()
    known = None
    while True:
        out = _call(args, "task_watch", {"task_id": args.task_id, "known": known, "wait_s": 10.0}, timeout=90.0)
        known = out["marker"]
        rounds = max(int(out["rounds"]), 1)
        for h in out["history"]:
            if h["round"] in printed:
                continue
            printed.add(h["round"])
            acc = "n/a" if h.get("accuracy") is None else f"{h['accuracy']:.4f}"
            loss = "n/a" if h.get("loss") is None else f"{h['loss']:.4f}"
            if tty:
                sys.stdout.write("\r\033[K")
            print(f"round {h['round'] + 1}/{rounds} accuracy {acc} loss {loss} updates {h.get('included', '?')} "
                  f"rejected {h.get('excluded', '?')}", flush=True)
        if tty and not out["done"]:
            done = len(out["history"])
            sys.stdout.write(f"\r\033[K[{_bar(done / rounds)}] {done}/{rounds} rounds, phase {out['phase']}, "
                             f"{out['open_round_updates']} updates in the open round")
            sys.stdout.flush()
        if out["done"]:
            if tty:
                sys.stdout.write("\r\033[K")
            print(f"task {out['task_id']} {out['phase']}: {len(out['history'])}/{rounds} rounds, credited {out['credited_wei']} wei"
                  + (f", challenged {len(out['challenges'])}x" if out["challenges"] else ""), flush=True)
            return 0
