"""HttpService: the read-only dashboard and /metrics, served by hypercorn's trio worker inside the node's nursery."""

from __future__ import annotations

import errno
import logging

import trio

from dainode import metrics
from dainode.dashboard.auth import allowed_hosts, check_listen, is_loopback, load_or_create_token
from dainode.errors import ConfigError
from dainode.service import Service

log = logging.getLogger("dainode.http")


class HttpService(Service):
    """Binds http.listen (port 0: a free one), then serves until the node stops. `url` is set once bound."""

    name = "http"

    def __init__(self, node):
        self.node = node
        self.config = node.config.http
        self.host, self.port = check_listen(self.config.listen, self.config.allow_remote)  # ConfigError before anything starts
        self.url: str | None = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        from hypercorn.config import Config as HyperConfig
        from hypercorn.trio.run import worker_serve
        from hypercorn.utils import wrap_app

        from dainode.dashboard.app import DashboardApp
        from dainode.dashboard.views import DashboardData

        token = await trio.to_thread.run_sync(load_or_create_token, self.node.data_dir)
        metrics.enable()
        data = DashboardData(self.node)
        app = DashboardApp(data, token)
        cfg = HyperConfig()
        host = f"[{self.host}]" if ":" in self.host else self.host
        cfg.bind = [f"{host}:{self.port}"]
        cfg.accesslog = None
        cfg.errorlog = logging.getLogger("dainode.http.server")
        cfg.keep_alive_timeout = 30  # an SSE stream outlives the default 5 s only because it keeps sending
        cfg.graceful_timeout = 0.5  # open event streams must not hold up `dainode stop`
        try:
            sockets = cfg.create_sockets()
        except OSError as exc:
            why = "is in use by another program" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror or exc})"
            raise ConfigError(f"http.listen {self.config.listen} {why}; pick another port (port 0 picks a free one) "
                              'or set http.listen = "none" to turn the dashboard off', key="http.listen") from None
        for sock in sockets.insecure_sockets:
            sock.listen(cfg.backlog)
        bound_port = sockets.insecure_sockets[0].getsockname()[1]
        app.bound(allowed_hosts(self.host, bound_port), bound_port)
        self.url = f"http://{'localhost' if is_loopback(self.host) else host}:{bound_port}/"
        if not is_loopback(self.host):
            log.warning("the dashboard listens on %s, a non-loopback address (http.allow_remote): anyone who can reach it "
                        "and has the token sees this node's peers, offers, tasks and payouts", self.config.listen)
        async with trio.open_nursery() as nursery:
            data.attach(nursery)
            await nursery.start(lambda task_status: worker_serve(wrap_app(app, cfg.wsgi_max_body_size, "asgi"), cfg,
                                                                 sockets=sockets, task_status=task_status))
            log.info("dashboard on %s (`dainode dashboard` prints it with the token)", self.url)
            task_status.started()
