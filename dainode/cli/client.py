"""Client commands that talk to a running daemon: status, stop, rpc, attach."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from dainode.admin.client import AdminClient, socket_path
from dainode.fsutil import pid_alive
from dainode.cli.common import CommandFailed, add_data_dir_arg, data_dir_of, print_json, print_table, rpc_call
from dainode.errors import NodeNotRunningError, RpcError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the running node's identity, roles and addresses")
    add_data_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print node_info as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("stop", help="stop the running daemon and wait until it has exited")
    add_data_dir_arg(p)
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the daemon to exit")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("rpc", help="call an admin JSON-RPC method: dainode rpc METHOD [JSON_PARAMS]")
    add_data_dir_arg(p)
    p.add_argument("method")
    p.add_argument("params", nargs="?", help='JSON array or object, e.g. \'{"limit": 5}\'')
    p.set_defaults(func=cmd_rpc, late_positional="params")

    p = sub.add_parser("attach", help="interactive admin prompt (METHOD [JSON_PARAMS] per line)")
    add_data_dir_arg(p)
    p.set_defaults(func=cmd_attach)


def cmd_status(args: argparse.Namespace) -> int:
    info = rpc_call(args, "node_info")
    if args.json:
        print_json(info)
        return 0
    print_table(
        [
            ("version", info.get("version")),
            ("peer id", info.get("peer_id")),
            ("address", info.get("address")),
            ("roles", ", ".join(info.get("roles") or []) or "relay only"),
            ("listening", info.get("listen_addrs") or []),
            ("data dir", info.get("data_dir")),
            ("uptime", f"{info.get('uptime_s', 0):.1f} s"),
        ]
    )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    pid = rpc_call(args, "node_info").get("pid")
    rpc_call(args, "node_stop")
    deadline = time.monotonic() + args.timeout
    # The admin socket closes first and the node then stops its services: "stopped" only
    # once the process is gone, so a script can start the next daemon at once.
    while time.monotonic() < deadline:
        if pid is None and not socket_path(data_dir_of(args)).exists():
            print("stopped")
            return 0
        if pid is not None and not pid_alive(pid):
            print(f"stopped (pid {pid} exited)")
            return 0
        time.sleep(0.05)
    raise CommandFailed(
        f"the daemon (pid {pid}) accepted node_stop but was still running after {args.timeout} s; "
        f"see its log, wait longer (--timeout), or end it with `kill {pid}` (SIGTERM)"
    )


def _parse_params(text: str | None):
    if text is None or not text.strip():
        return None
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise CommandFailed(f"params are not valid JSON: {exc}", code=2) from None
    if not isinstance(params, (list, dict)):
        raise CommandFailed("params must be a JSON array or object", code=2)
    return params


def cmd_rpc(args: argparse.Namespace) -> int:
    print_json(rpc_call(args, args.method, _parse_params(args.params)))
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    try:
        client = AdminClient(socket_path(data_dir_of(args)), timeout=None)
    except NodeNotRunningError as exc:
        raise CommandFailed(str(exc)) from None
    with client:
        _setup_completion(client)
        print(f"attached to {client.path}; type METHOD [JSON_PARAMS], `help`, or `exit`")
        while True:
            try:
                line = input("dainode> ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if not line:
                continue
            if line in ("exit", "quit"):
                return 0
            if line == "help":
                print("  ".join(client.call("rpc_methods")))
                continue
            method, _, rest = line.partition(" ")
            try:
                print(json.dumps(client.call(method, _parse_params(rest)), indent=2, sort_keys=True))
            except CommandFailed as exc:
                print(f"error: {exc}")
            except RpcError as exc:
                print(f"error {exc.code}: {exc.message}")
            except NodeNotRunningError as exc:
                print(str(exc), file=sys.stderr)
                return 1


def _setup_completion(client: AdminClient) -> None:
    try:
        import readline
    except ImportError:  # not every Python build has it; the prompt works without
        return
    try:
        names = client.call("rpc_methods")
    except RpcError:
        return

    def complete(text: str, state: int):
        matches = [n for n in names if n.startswith(text)]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
