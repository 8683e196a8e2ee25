"""The `dainode` command line: daemon commands and clients of the admin socket."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from dainode import __version__
from dainode.cli.common import CommandFailed
from dainode.errors import ConfigError, DainodeError

# Each module defines register(subparsers). Add new command areas here.
COMMAND_MODULES = [
    "dainode.cli.daemon",
    "dainode.cli.client",
    "dainode.cli.p2p",
    "dainode.cli.store",
    "dainode.cli.chain",
    "dainode.cli.offer",
    "dainode.cli.task",
    "dainode.cli.task_audit",  # verify/watch join the `task` command (after any module that creates it)
    "dainode.cli.dashboard",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dainode",
        description="Peer-to-peer daemon for privacy-preserving distributed training (data, model and compute providers).",
    )
    parser.add_argument("--version", action="version", version=f"dainode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def _first_dainode_error(exc: BaseException) -> DainodeError | None:
    if isinstance(exc, DainodeError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_dainode_error(inner)
            if found is not None:
                return found
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # argparse gives an optional positional (`rpc METHOD [PARAMS]`) its empty value as soon
        # as it meets METHOD, so a PARAMS after a flag is "unrecognized": fill it in here.
        late = getattr(args, "late_positional", None)
        if late and getattr(args, late) is None and len(extras) == 1 and not extras[0].startswith("-"):
            setattr(args, late, extras.pop())
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CommandFailed as exc:
        print(f"dainode: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"dainode: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001
        err = _first_dainode_error(exc)
        if err is None:
            raise
        print(f"dainode: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
