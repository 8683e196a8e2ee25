"""The Node: owns every subsystem service of one dainode process in one nursery."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

from dainode import __version__
from dainode.admin.client import socket_path
from dainode.admin.jsonrpc import MethodRegistry
from dainode.admin.server import AdminServer
from dainode.config import Config
from dainode.datadir import LOCK_FILE, DataDirLock  # noqa: F401 - LOCK_FILE kept importable from here
from dainode.identity import Identity
from dainode.limits import restore_recursion_limit
from dainode.p2p.service import P2PService
from dainode.roles.base import build_roles
from dainode.roles.context import RoleContext
from dainode.roles.index import OfferIndex
from dainode.roles.task_status import TaskQueries
from dainode.service import Service, start_supervised
from dainode.state import open_state
from dainode.store.service import StoreService

STATE_FILE = "state.db"


class Node(Service):
    """One dainode process. Services start in dependency order; the admin socket opens last,
    so a daemon that answers `node_info` is fully up."""

    name = "node"

    def __init__(self, config: Config, identity: Identity, lock: DataDirLock | None = None):
        self.config = config
        self.identity = identity
        self.data_dir = Path(config.data_dir).expanduser()
        self.started_at = time.monotonic()
        self.registry = MethodRegistry()
        self.services: list[Service] = []
        self._stop = trio.Event()
        # `dainode start` takes the lock before it reads the keys and hands it over
        self._lock = lock if lock is not None else DataDirLock(self.data_dir)
        self.p2p = P2PService(config, identity)
        self.store = StoreService(config, self.p2p, self.data_dir)
        self.state = open_state(self.data_dir / STATE_FILE)
        self.chain = None
        if config.chain.endpoint != "none":
            from dainode.chain.service import ChainService  # not imported by chain-less nodes

            self.chain = ChainService(config, identity.account, state=self.state)
        # Roles are built (and their layers checked: ConfigError names the flag) before anything starts.
        self.role_ctx = RoleContext.of_node(self)
        self.offer_index = OfferIndex(self.role_ctx)
        self.task_queries = TaskQueries(self.role_ctx)
        self.audit = None
        if self.chain is not None:
            from dainode.audit.service import AuditService

            # every node can verify any task; a data provider also challenges a failing split
            self.audit = AuditService(self.role_ctx, self.chain, auto_challenge="data" in config.roles)
        self.roles = build_roles(list(config.roles), self.role_ctx)
        self.http = None
        if config.http.listen != "none":
            from dainode.dashboard.service import HttpService  # checks http.listen (ConfigError) before anything starts

            self.http = HttpService(self)

    # --- lifecycle --------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the node to shut down (idempotent; safe from signal handlers and RPC)."""
        self._stop.set()

    async def _start(self, nursery: trio.Nursery, service: Service) -> None:
        await start_supervised(nursery, service)
        self.services.append(service)
        methods = getattr(service, "rpc_methods", None)
        if methods is not None:
            self.registry.add_all(methods())

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._acquire_lock()
        try:
            async with trio.open_nursery() as nursery:
                self.registry.add_all(self.rpc_methods())
                # subsystems in dependency order; each registers its RPC methods as it starts
                await self._start(nursery, self.p2p)
                await self._start(nursery, self.store)
                if self.chain is not None:
                    await self._start(nursery, self.chain)
                # every node indexes offers; roles start after the layers they use
                await self._start(nursery, self.offer_index)
                await self._start(nursery, self.task_queries)
                if self.audit is not None:
                    await self._start(nursery, self.audit)
                for role in self.roles:
                    await self._start(nursery, role)
                # services may import the eth stack lazily (chain); py_ecc raises the recursion
                # limit on first import, so restore it once they are all up
                restore_recursion_limit()
                if self.http is not None:
                    await self._start(nursery, self.http)
                # the admin socket opens last, so a node that answers is fully up
                await self._start(nursery, AdminServer(socket_path(self.data_dir), self.registry))
                self.log.info(
                    "node ready: peer %s, account %s, roles %s",
                    self.p2p.peer_id,
                    self.identity.address,
                    ",".join(self.config.roles) or "relay",
                )
                task_status.started()
                await self._stop.wait()
                self.log.info("stopping")
                nursery.cancel_scope.cancel()
        finally:
            self.state.close()
            self._release_lock()

    def _acquire_lock(self) -> None:
        """One daemon per data dir: a second one would fight over the socket, keys and stores."""
        if not self._lock.held:
            self._lock.acquire()

    def _release_lock(self) -> None:
        self._lock.release()

    # --- admin RPC --------------------------------------------------------------------

    def rpc_methods(self) -> dict[str, Any]:
        return {
            "node_info": self.rpc_node_info,
            "node_stop": self.rpc_node_stop,
            "rpc_modules": self.rpc_modules,
            "rpc_methods": self.rpc_method_names,
        }

    async def rpc_node_info(self) -> dict:
        return {
            "version": __version__,
            "peer_id": self.p2p.peer_id,
            "address": self.identity.address,
            "roles": list(self.config.roles),
            "listen_addrs": self.p2p.listen_addrs(),
            "data_dir": str(self.data_dir),
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "pid": os.getpid(),
            "recursion_limit": sys.getrecursionlimit(),
            "services": [s.name for s in self.services],
            "http_url": self.http.url if self.http is not None else None,
        }

    async def rpc_node_stop(self) -> dict:
        self.stop()
        return {"stopping": True}

    async def rpc_modules(self) -> dict:
        return self.registry.modules()

    async def rpc_method_names(self) -> list[str]:
        return self.registry.names()
