"""`dainode init` and `dainode start`: create an identity and run the daemon."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from dainode.cli.common import CommandFailed, add_data_dir_arg, data_dir_of
from dainode.config import Config, build_config
from dainode.errors import ServiceCrashed
from dainode.fsutil import ensure_private_dir
from dainode.identity import init_identity, is_initialised, load_or_init_identity, resolve_password
from dainode.log import setup_logging

log = logging.getLogger("dainode.node")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create the data dir with a libp2p key and an encrypted Ethereum keystore")
    add_data_dir_arg(p)
    _add_password_args(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("start", help="run the daemon in the foreground")
    p.add_argument("--config", metavar="FILE", help="TOML config file (see config/default.toml)")
    add_data_dir_arg(p)
    p.add_argument("--roles", help="comma list of data,model,compute (empty: relay only)")
    p.add_argument("--listen", action="append", metavar="MULTIADDR", help="listen multiaddr (repeatable)")
    p.add_argument("--bootstrap", action="append", metavar="MULTIADDR", help="bootstrap peer /…/p2p/<id> (repeatable)")
    p.add_argument("--chain", metavar="dev|none|URL", help="dev (private anvil), none, or an Ethereum JSON-RPC URL")
    p.add_argument("--log-level", help="debug, info, warning or error")
    p.add_argument("--log-format", help="text or json")
    _add_password_args(p)
    p.set_defaults(func=cmd_start)


def _add_password_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--password-file", metavar="FILE", help="read the keystore password from FILE (else $DAINODE_PASSWORD or a prompt)")
    p.add_argument("--light-kdf", action="store_true", help="cheaper key derivation for new keys (tests, throwaway nodes)")


def config_from_args(args: argparse.Namespace) -> Config:
    flags = {
        "data_dir": args.data_dir,
        "roles": args.roles,
        "p2p.listen": args.listen,
        "p2p.bootstrap": args.bootstrap,
        "chain.endpoint": args.chain,
        "log_level": args.log_level,
        "log_format": args.log_format,
    }
    return build_config(config_file=args.config, flags=flags)


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    data_dir = Path(data_dir_of(args)).expanduser()  # --data-dir, $DAINODE_DATA_DIR, $DAINODE_HOME, ~/.dainode: as every command
    if is_initialised(data_dir):
        raise CommandFailed(f"{data_dir} is already initialised; nothing was changed")
    password = resolve_password(args.password_file, confirm=True)
    identity = init_identity(data_dir, password, light_kdf=args.light_kdf)
    print(f"data dir  {data_dir}")
    print(f"address   {identity.address}")
    print(f"peer id   {identity.peer_id.to_base58()}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from dainode.node import Node  # imported here so client commands stay fast

    config = config_from_args(args)
    setup_logging(config.log_level, config.log_format)
    password = resolve_password(args.password_file, confirm=False)
    ensure_private_dir(config.data_path)
    identity, created = load_or_init_identity(config.data_path, password, light_kdf=args.light_kdf)
    if created:
        log.info("initialised %s: account %s, peer %s", config.data_path, identity.address, identity.peer_id.to_base58())
    node = Node(config, identity)
    try:
        trio.run(_run_until_signal, node)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:  # noqa: BLE001 - turn crashes into one clear line + status
        crash = _find(exc, ServiceCrashed)
        if crash is not None:
            log.error("node stopped: %s", crash)
            return 1
        raise
    log.info("stopped")
    return 0


async def _run_until_signal(node) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, node)
        await node.run()
        nursery.cancel_scope.cancel()


async def _stop_on_signal(node) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, stopping", signal.Signals(signum).name)
            node.stop()


def _find(exc: BaseException, kind: type) -> BaseException | None:
    """Find an exception of `kind` inside (nested) exception groups."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        return _find(exc.__cause__, kind) if isinstance(exc.__cause__, (kind, BaseExceptionGroup)) else None
    return None
