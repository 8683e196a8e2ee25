#!/usr/bin/env python3
"""`make demo`: bring up a local dainode and show what it is (grows into the full multi-node demo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dainode-demo-") as tmp:
        data_dir = Path(tmp) / "node1"
        env = dict(os.environ, DAINODE_PASSWORD=os.environ.get("DAINODE_PASSWORD", "demo-password"))
        cmd = [sys.executable, "-m", "dainode", "start", "--data-dir", str(data_dir), "--roles", "data,model,compute",
               "--listen", "/ip4/127.0.0.1/tcp/0", "--chain", "none", "--light-kdf"]
        print("$ dainode", " ".join(cmd[3:]), flush=True)
        proc = subprocess.Popen(cmd, env=env, cwd=REPO)
        try:
            deadline = time.monotonic() + 60
            while not (data_dir / "admin.sock").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("demo: the node did not come up", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            time.sleep(0.2)
            print("$ dainode status", flush=True)
            subprocess.run([sys.executable, "-m", "dainode", "status", "--data-dir", str(data_dir)], env=env, check=True)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
