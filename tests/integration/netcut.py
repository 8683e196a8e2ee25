"""Test-only: cut one daemon off the network and heal it, in its own network namespace (root) or by SIGSTOP/SIGCONT.

With namespaces, the daemon runs under `ip netns exec` behind a veth pair (host 10.231.K.1, namespace 10.231.K.2);
the other daemons listen on the host end, the chain endpoint is reached through a TCP forwarder on the host end, and
a cut sets the namespace's end of the link down (every connection, libp2p and chain, loses its path; the process
keeps running). Without them (`ip netns` missing or not root) the cut stops the process (SIGSTOP) and the heal
continues it (SIGCONT): it answers nothing meanwhile, which is what its peers see of a partition.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading


def netns_available() -> tuple[bool, str]:
    """(usable, why not): root and a working `ip netns add`/`del`."""
    if os.geteuid() != 0:
        return False, "not root: network namespaces need CAP_NET_ADMIN"
    name = f"dai-probe-{os.getpid()}"
    try:
        out = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`ip netns` cannot run here: {exc}"
    if out.returncode != 0:
        return False, f"`ip netns add` failed: {out.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return True, ""


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")


class Forwarder:
    """A TCP forwarder listen_host:port -> 127.0.0.1:target (threads; stopped by close())."""

    def __init__(self, listen_host: str, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.create_server((listen_host, 0))
        self.port = self.sock.getsockname()[1]
        self._closed = False
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target, timeout=10)
                b.settimeout(None)  # idle connections (the chain's websocket) stay open
            except OSError:
                a.close()
                continue
            self._conns += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for c in self._conns:
            c.close()
        self._thread.join(timeout=5)


class Netns:
    """One namespace with a veth pair to the host; `cut()` / `heal()` set its end down / up; `close()` removes both."""

    def __init__(self):
        k = random.randint(1, 250)
        self.name = f"dai-cut-{os.getpid()}"
        self.host_if, self.ns_if = f"dvh{os.getpid() % 100000}", f"dvn{os.getpid() % 100000}"
        self.host_ip, self.ns_ip = f"10.231.{k}.1", f"10.231.{k}.2"
        self.forwarders: list[Forwarder] = []
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=self.name)
            _ip("link", "set", self.ns_if, "up", ns=self.name)
            _ip("link", "set", "lo", "up", ns=self.name)
        except Exception:
            self.close()
            raise

    def wrap(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def forward(self, url: str) -> str:
        """`url` (http://127.0.0.1:PORT) as reachable from inside the namespace."""
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        f = Forwarder(self.host_ip, port)
        self.forwarders.append(f)
        return f"http://{self.host_ip}:{f.port}"

    def cut(self) -> None:
        _ip("link", "set", self.ns_if, "down", ns=self.name)

    def heal(self) -> None:
        _ip("link", "set", self.ns_if, "up", ns=self.name)

    def close(self) -> None:
        for f in self.forwarders:
            f.close()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


class StopCut:
    """The fallback: the cut node is stopped (SIGSTOP) and continued (SIGCONT)."""

    def __init__(self, node):
        self.node = node
        self.stopped = False

    def cut(self) -> None:
        self.node.signal(signal.SIGSTOP)
        self.stopped = True

    def heal(self) -> None:
        self.node.signal(signal.SIGCONT)
        self.stopped = False
