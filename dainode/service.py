"""The Service model: one long-running, supervised trio task tree per subsystem."""

from __future__ import annotations

import abc
import functools
import logging

import trio

from dainode.errors import DainodeError, ServiceCrashed, ServiceNotRunning


class _StartedProxy:
    """Forwards `task_status.started()` and marks the service started."""

    def __init__(self, service: "Service", inner):
        self._service = service
        self._inner = inner

    def started(self, value=None) -> None:
        self._inner.started(value)
        self._service._mark_started()


class Service(abc.ABC):
    """A subsystem of the node (admin socket, p2p host, store, chain, roles...).

    Subclasses implement `run(task_status)`: do the set-up, call
    `task_status.started()` when the service is usable, then keep running
    (usually `await trio.sleep_forever()` or a serve loop) until cancelled.
    Every task a service needs lives in a nursery that `run` opens, so a
    service never leaves anything behind when it is cancelled.

    `run` is wrapped so that `task_status.started()` sets the started event
    (`wait_started()`, `running`); `require_running()` raises ServiceNotRunning for
    work handed to a service that has not started or has stopped, so nothing is
    silently dropped.
    """

    #: short name used in logs and crash reports
    name: str = "service"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None or getattr(run, "__isabstractmethod__", False) or getattr(run, "_service_wrapped", False):
            return

        @functools.wraps(run)
        async def wrapped(self, *args, task_status=trio.TASK_STATUS_IGNORED, **kw):
            self._lifecycle()["stopped"] = False
            try:
                await run(self, *args, task_status=_StartedProxy(self, task_status), **kw)
            finally:
                self._lifecycle()["stopped"] = True

        wrapped._service_wrapped = True
        cls.run = wrapped

    def _lifecycle(self) -> dict:
        # Lazily created: subclasses need not call Service.__init__.
        state = self.__dict__.get("_service_lifecycle")
        if state is None:
            state = self.__dict__["_service_lifecycle"] = {"started": trio.Event(), "stopped": False}
        return state

    def _mark_started(self) -> None:
        self._lifecycle()["started"].set()

    @property
    def running(self) -> bool:
        state = self._lifecycle()
        return state["started"].is_set() and not state["stopped"]

    async def wait_started(self) -> None:
        """Return once the service reported started (immediately if it already has)."""
        await self._lifecycle()["started"].wait()

    def require_running(self, what: str = "this") -> None:
        """Raise ServiceNotRunning unless the service is started and not stopped."""
        state = self._lifecycle()
        if not state["started"].is_set():
            raise ServiceNotRunning(f"the {self.name} service has not started yet; cannot do {what} (start it first)")
        if state["stopped"]:
            raise ServiceNotRunning(f"the {self.name} service has stopped; cannot do {what}")

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"dainode.{self.name}")

    @abc.abstractmethod
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Set up, call task_status.started(), run until cancelled."""


async def start_supervised(nursery: trio.Nursery, service: Service) -> None:
    """Start `service` in `nursery` and wait until it reports started.

    A crash, before or after start-up, is logged with the service's name and
    re-raised as ServiceCrashed, which cancels the nursery (the whole node).
    """
    await nursery.start(_supervise, service)


async def _supervise(service: Service, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    log = logging.getLogger(f"dainode.{service.name}")
    try:
        await service.run(task_status=task_status)
    except (trio.Cancelled, ServiceCrashed, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a supervisor must see everything
        if _only_cancellation(exc):
            raise  # nested nurseries wrap a shutdown's Cancelled in groups; that is no crash
        expected = _dainode_error(exc)
        if expected is None:  # a bug: keep the traceback
            log.error("service %s crashed: %s: %s", service.name, type(exc).__name__, exc, exc_info=exc)
            raise ServiceCrashed(service.name, exc) from exc
        # an error raised on purpose says what is wrong in its message; the node's one
        # "node stopped" line reports it, the traceback is only for debugging
        log.debug("service %s stopped by %s: %s", service.name, type(expected).__name__, expected, exc_info=exc)
        raise ServiceCrashed(service.name, expected) from exc
    else:
        log.debug("service %s finished", service.name)


def _dainode_error(exc: BaseException) -> DainodeError | None:
    """The DainodeError behind `exc` when that is all it holds (besides cancellations), else None."""
    if isinstance(exc, DainodeError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        leaves = [] if rest is None else list(_leaves(rest))
        if leaves and all(isinstance(e, DainodeError) for e in leaves):
            return leaves[0]
    return None


def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _only_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return False
