"""Helpers shared by CLI commands: finding the data dir, calling the daemon, printing."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from dainode.admin import client as admin_client
from dainode.config import default_data_dir
from dainode.errors import NodeNotRunningError, RpcError


class CommandFailed(Exception):
    """Raised by a command handler to print one line and exit with `code`."""

    def __init__(self, message: str, code: int = 1, *, not_running: bool = False):
        super().__init__(message)
        self.code = code
        self.not_running = not_running  # the daemon does not answer (or went away mid-call)


def add_data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="node data directory (default: $DAINODE_DATA_DIR, $DAINODE_HOME or ~/.dainode)")


def data_dir_of(args: argparse.Namespace) -> str:
    return getattr(args, "data_dir", None) or os.environ.get("DAINODE_DATA_DIR") or default_data_dir()


def rpc_call(args: argparse.Namespace, method: str, params: Any = None, *, timeout: float | None = 60.0) -> Any:
    """Call the daemon; turn 'not running' and RPC errors into one-line CommandFailed."""
    try:
        return admin_client.call(data_dir_of(args), method, params, timeout=timeout)
    except NodeNotRunningError as exc:
        raise CommandFailed(str(exc), not_running=True) from None
    except RpcError as exc:
        raise CommandFailed(f"{method} failed: {exc.message} (code {exc.code})") from None
    except TimeoutError:
        raise CommandFailed(f"{method}: the daemon did not answer within {timeout} s") from None


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def print_table(rows: list[tuple[str, Any]]) -> None:
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        if isinstance(value, (list, tuple)):
            value = ("\n" + " " * (width + 2)).join(str(v) for v in value) if value else "-"
        print(f"{key:<{width}}  {value}")
