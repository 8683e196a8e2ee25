"""Run dainode daemons as child processes on this machine (demo, local testnet, benchmarks, tests); stopped by PID.

The whole local network (one anvil, the contracts, funded nodes, offers) is `dainode.localnet.network.Testnet`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dainode.admin.client import AdminClient, socket_path
from dainode.errors import NodeNotRunningError

PASSWORD = "localnet-password"


#: DAINODE_* settings of the caller that every node gets too.
PASSED_THROUGH = frozenset({"DAINODE_CHAIN_DEV_TIME_TRAVEL"})


def daemon_env(**extra: str) -> dict[str, str]:
    """The caller's environment without its DAINODE_* settings (each node gets its own, except those in
    PASSED_THROUGH: the test suite turns on dev-chain time travel for every node), plus a keystore password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAINODE_") or k in PASSED_THROUGH}
    env["DAINODE_PASSWORD"] = PASSWORD
    env["PYTHONUNBUFFERED"] = "1"
    env["DAINODE_HTTP_LISTEN"] = "127.0.0.1:0"  # many nodes on one machine: each dashboard on a free port
    env.update(extra)
    return env


def dainode_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dainode", *args]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a one-shot CLI command (not the daemon) and capture its output."""
    return subprocess.run(dainode_cmd(*args), env=env or daemon_env(), capture_output=True, text=True, timeout=timeout)


def init_nodes(base_dir: Path, names: list[str], timeout: float = 120.0) -> dict[str, str]:
    """`dainode init --light-kdf` for every name in parallel (data dir `base_dir/name`); returns name -> peer id.

    Knowing the peer ids before any node starts lets a caller wire bootstrap addresses up front.
    """
    return {n: ident["peer_id"] for n, ident in init_identities(base_dir, names, timeout).items()}


def init_identities(base_dir: Path, names: list[str], timeout: float = 120.0) -> dict[str, dict[str, str]]:
    """Like `init_nodes`, returning name -> {"peer_id", "address"} (an existing identity is kept and reported)."""
    procs = {
        n: subprocess.Popen(dainode_cmd("init", "--data-dir", str(Path(base_dir) / n), "--light-kdf"), env=daemon_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for n in names
    }
    ids = {}
    for n, p in procs.items():
        out, _ = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"dainode init failed for {n} (exit {p.returncode}):\n{out}")
        last = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.startswith(("peer id", "address"))}
        ids[n] = {"peer_id": last["peer"], "address": last["address"]}
    return ids


class DaemonProcess:
    """One `dainode start` child process with its own data dir and log file; `stop()` always reaps it."""

    def __init__(
        self,
        base_dir: Path,
        name: str,
        *,
        roles: list[str] | None = None,
        chain: str | None = "none",
        bootstrap: list[str] | None = None,
        listen: str | None = "/ip4/127.0.0.1/tcp/0",
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        config: Path | None = None,
        argv0: list[str] | None = None,
        detach: bool = False,
    ):
        """``config``: a TOML file for `--config` (``chain``/``listen`` None: no flag, the file decides); ``argv0``: what
        runs instead of ``python -m dainode`` (a test's patched node); ``detach``: own session, so the daemon outlives
        the launching script (scripts/testnet)."""
        self.name = name
        self.data_dir = Path(base_dir) / name
        self.roles = roles  # None: no --roles flag (config file/environment decide)
        self.chain = chain
        self.bootstrap = bootstrap or []
        self.listen = listen
        self.extra_args = extra_args or []
        self.config = config
        self.argv0 = argv0
        self.detach = detach
        self.env = daemon_env(**(env or {}))
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(base_dir) / f"{name}.log"
        self.info: dict[str, Any] = {}

    def args(self) -> list[str]:
        args = ["start", "--data-dir", str(self.data_dir)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        if self.listen is not None:
            args += ["--listen", self.listen]
        if self.chain is not None:
            args += ["--chain", self.chain]
        args += ["--light-kdf", "--log-level", "debug" if os.environ.get("DAINODE_TEST_DEBUG") else "info"]
        if self.roles is not None:
            args += ["--roles", ",".join(self.roles)]
        for addr in self.bootstrap:
            args += ["--bootstrap", addr]
        return args + self.extra_args

    def command(self) -> list[str]:
        """The argv of the daemon (a subclass may wrap it, e.g. in a profiler)."""
        if self.argv0 is not None:
            return [*self.argv0, *self.args()]
        return dainode_cmd(*self.args())

    def start(self, timeout: float = 60.0) -> "DaemonProcess":
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> int:
        """Spawn the daemon without waiting for it (`wait_ready` does); returns its PID."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=self.detach)
        finally:
            log.close()
        return self.proc.pid

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon {self.name} exited with {self.proc.returncode} during start:\n{self.log_tail()}")
            try:
                self.info = self.rpc("node_info")
                return
            except (NodeNotRunningError, OSError, ValueError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"daemon {self.name} not ready after {timeout} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def multiaddr(self) -> str:
        return self.info["listen_addrs"][0]

    @property
    def socket(self) -> Path:
        return socket_path(self.data_dir)

    def rpc(self, method: str, *args: Any, timeout: float = 60.0, **params: Any) -> Any:
        with AdminClient(self.socket, timeout=timeout) as client:
            return client.call(method, list(args) if args else (params or None))

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; always reaps the child. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (a crash): no clean-up runs in the daemon."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_request(sock_path: Path, line: bytes, timeout: float = 10.0) -> dict | list:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
        s.sendall(line + b"\n")
        return json.loads(s.makefile("rb").readline())
    finally:
        s.close()
