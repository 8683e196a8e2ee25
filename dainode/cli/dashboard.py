"""`dainode dashboard [--open]`: print (or open) the running node's dashboard URL with its token, like `jupyter server list`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dainode.cli.common import CommandFailed, add_data_dir_arg, data_dir_of, print_json, rpc_call
from dainode.errors import DainodeError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="print the running node's dashboard URL with its access token (--open: open it)")
    add_data_dir_arg(p)
    p.add_argument("--open", action="store_true", help="also open the URL in the default web browser")
    p.add_argument("--json", action="store_true", help="print {url, metrics_url, token_file} as JSON")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dainode.dashboard.auth import read_token, token_path  # stdlib only: keeps the client path light

    info = rpc_call(args, "node_info")
    base = info.get("http_url")
    if not base:
        raise CommandFailed('this node runs without a dashboard (http.listen = "none"); start it with --http-listen 127.0.0.1:5050')
    path = token_path(Path(info.get("data_dir") or data_dir_of(args)))
    try:
        token = read_token(path)
    except DainodeError as exc:
        raise CommandFailed(str(exc)) from None
    url = f"{base}?token={token}"
    if args.json:
        print_json({"url": url, "metrics_url": f"{base}metrics", "token_file": str(path)})
    else:
        print(url)
    if args.open:
        import webbrowser

        if not webbrowser.open(url):
            raise CommandFailed("no web browser could be started here; open the URL above yourself")
    return 0
