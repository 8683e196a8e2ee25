"""Drive tests/js/helia_peer.mjs (a real Helia node) from Python: started and stopped by PID."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "helia_peer.mjs"


class HeliaPeer:
    def __init__(self, log_path: Path | None = None):
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node (Node.js 20) is not on PATH; `make install` needs it for the Helia tests")
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [node, str(SCRIPT)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        try:
            ready = self._read_line(timeout=60)
        except BaseException:
            self.close()
            raise
        if ready.get("event") != "ready":
            self.close()
            raise RuntimeError(f"helia_peer did not start: {ready}")
        self.peer_id: str = ready["peerId"]
        self.addrs: list[str] = ready["addrs"]

    @property
    def multiaddr(self) -> str:
        return self.addrs[0]

    def _read_line(self, timeout: float) -> dict:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            raise TimeoutError(f"helia_peer gave no answer within {timeout} s")
        if not result or not result[0]:
            raise RuntimeError(f"helia_peer exited (status {self.proc.poll()})")
        return json.loads(result[0])

    def call(self, cmd: str, timeout: float = 120.0, **params) -> dict:
        with self._lock:
            msg_id = next(self._ids)
            self.proc.stdin.write(json.dumps({"id": msg_id, "cmd": cmd, **params}) + "\n")
            self.proc.stdin.flush()
            reply = self._read_line(timeout)
        if reply.get("event") == "error" or reply.get("id") != msg_id:
            raise RuntimeError(f"helia_peer {cmd} failed: {reply}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                f.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> "HeliaPeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
