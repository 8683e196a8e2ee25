"""`dainode init` and `dainode start`: create an identity and run the daemon."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from dainode.cli.common import CommandFailed, add_data_dir_arg, data_dir_of
from dainode.config import build_config
from dainode.errors import ConfigError, ServiceCrashed

if TYPE_CHECKING:
    from dainode.config import Config

# trio, dainode.identity (eth-account, libp2p) and dainode.node are imported inside the
# commands that use them: every client command builds this parser, and importing them here
# cost each `dainode status` over a second (tests/unit/cli/test_imports.py guards this).

log = logging.getLogger("dainode.node")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create the data dir with a libp2p key and an encrypted Ethereum keystore")
    add_data_dir_arg(p)
    _add_password_args(p)
    p.add_argument("--force", action="store_true", help="replace an existing (or half) identity; the old key files are moved to keys/backup-*/")
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
    p.add_argument("--http-listen", metavar="HOST:PORT|none", help="dashboard and /metrics address (default 127.0.0.1:5050)")
    p.add_argument("--http-allow-remote", action="store_true", default=None, help="allow --http-listen on a non-loopback address")
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
        "http.listen": args.http_listen,
        "http.allow_remote": args.http_allow_remote,
    }
    return build_config(config_file=args.config, flags=flags)


def prepare_data_dir(path: Path) -> None:
    """Create the data dir (mode 0700), or say in one line why it cannot be used (ConfigError: exit 2)."""
    from dainode.fsutil import ensure_private_dir

    if path.exists() and not path.is_dir():
        raise ConfigError(f"data dir {path} exists but is not a directory; pass a directory with --data-dir", key="data_dir")
    try:
        ensure_private_dir(path)
        probe = path / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"data dir {path} cannot be used: {exc.strerror or exc}"
            f"{f' ({exc.filename})' if exc.filename and str(exc.filename) != str(path) else ''}; "
            f"pass a directory this user may create and write with --data-dir",
            key="data_dir",
        ) from None


def cmd_init(args: argparse.Namespace) -> int:
    from dainode.datadir import DataDirLock
    from dainode.identity import backup_keys, init_identity, is_initialised, resolve_password

    data_dir = Path(data_dir_of(args)).expanduser()  # --data-dir, $DAINODE_DATA_DIR, $DAINODE_HOME, ~/.dainode: as every command
    prepare_data_dir(data_dir)
    if is_initialised(data_dir) and not args.force:
        raise CommandFailed(
            f"{data_dir} is already initialised; nothing was changed (`--force` makes a new identity and moves the old key files to keys/backup-*/)"
        )
    password = resolve_password(args.password_file, confirm=True)
    with DataDirLock(data_dir):  # no daemon may use the keys while they are created or replaced
        backup = backup_keys(data_dir) if args.force else None
        identity = init_identity(data_dir, password, light_kdf=args.light_kdf)
    print(f"data dir  {data_dir}")
    if backup is not None:
        print(f"old keys  {backup}")
    print(f"address   {identity.address}")
    print(f"peer id   {identity.peer_id.to_base58()}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # bad flags are reported before the slow imports below
    import trio

    from dainode.datadir import DataDirLock
    from dainode.identity import load_or_init_identity, resolve_password
    from dainode.limits import restore_recursion_limit
    from dainode.log import setup_logging
    from dainode.node import Node

    # py_ecc (eth stack) raised the recursion limit to 100,000 at import: deep input would
    # overflow the C stack (segfault) instead of raising RecursionError. Set it back first.
    restore_recursion_limit()

    setup_logging(config.log_level, config.log_format)
    password = resolve_password(args.password_file, confirm=False)
    prepare_data_dir(config.data_path)
    # the lock comes before the keys: two starts on a fresh dir must not both create an identity
    lock = DataDirLock(config.data_path).acquire()
    try:
        identity, created = load_or_init_identity(config.data_path, password, light_kdf=args.light_kdf)
        if created:
            log.info("initialised %s: account %s, peer %s", config.data_path, identity.address, identity.peer_id.to_base58())
        node = Node(config, identity, lock=lock)
        try:
            trio.run(_run_until_signal, node)
        except KeyboardInterrupt:
            return 0
        except BaseException as exc:  # noqa: BLE001 - turn crashes into one clear line + status
            crash = _find(exc, ServiceCrashed)
            if crash is not None:
                log.error("node stopped: %s", crash)
                return 2 if isinstance(crash.cause, ConfigError) else 1  # 2: fix the configuration
            raise
    finally:
        lock.release()
    log.info("stopped")
    return 0


async def _run_until_signal(node) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, node)
        await node.run()
        nursery.cancel_scope.cancel()


async def _stop_on_signal(node) -> None:
    import trio

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
