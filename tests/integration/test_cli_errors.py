"""One-line errors of the CLI against real daemons: unusable data dirs, unreachable chains, crashes, stop."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from dainode.fsutil import pid_alive
from tests.integration.daemon import dainode_cmd, daemon_env, run_cli


def one_line(err: str) -> bool:
    return "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["file", "under-file", "read-only"])
@pytest.mark.parametrize("command", ["init", "start"])
def test_unusable_data_dir_is_one_line_exit_2(tmp_path, where, command):
    (tmp_path / "afile").write_text("not a directory")
    data_dir = {"file": tmp_path / "afile", "under-file": tmp_path / "afile" / "sub", "read-only": Path("/sys/dainode-test")}[where]
    if where == "read-only" and not Path("/sys").is_dir():
        pytest.skip("needs a read-only /sys to refuse the directory even to root")
    out = run_cli(command, "--data-dir", str(data_dir), "--light-kdf", "--chain", "none", timeout=60) if command == "start" \
        else run_cli(command, "--data-dir", str(data_dir), "--light-kdf", timeout=60)
    assert out.returncode == 2, out
    assert one_line(out.stderr) and "data dir" in out.stderr and "--data-dir" in out.stderr, out.stderr


def test_unreachable_chain_at_start_is_one_line(tmp_path):
    out = run_cli("start", "--data-dir", str(tmp_path / "n"), "--light-kdf", "--listen", "/ip4/127.0.0.1/tcp/0",
                  "--chain", "http://127.0.0.1:1", timeout=120)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "unreachable" in errors[0] and "chain.endpoint" in errors[0], out.stderr
    assert not (tmp_path / "n" / "admin.sock").exists()


def test_stop_returns_only_after_the_process_exited(daemon_factory):
    node = daemon_factory("a").start()
    out = run_cli("stop", "--data-dir", str(node.data_dir))
    exited = not pid_alive(node.pid)  # checked at once: "stopped" must mean the process is gone
    assert out.returncode == 0, out.stderr
    assert exited and f"pid {node.pid}" in out.stdout
    assert node.wait(timeout=10) == 0


def test_daemon_killed_during_get_and_rpc_say_what_happened(daemon_factory, tmp_path):
    node = daemon_factory("a").start()
    cid = node.rpc("store_add", path=str(_small_file(tmp_path)), only_hash=True)["cid"]  # a CID the node does not hold
    env = daemon_env()
    get = subprocess.Popen(dainode_cmd("get", cid, "-o", str(tmp_path / "out.bin"), "--data-dir", str(node.data_dir)),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rpc = subprocess.Popen(dainode_cmd("rpc", "store_get", "--data-dir", str(node.data_dir),
                                       f'{{"cid": "{cid}", "path": "{tmp_path / "out2.bin"}"}}'),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_jobs(node, 2)
        node.kill()  # SIGKILL: a crash, the socket stays behind
        _, get_err = get.communicate(timeout=60)
        _, rpc_err = rpc.communicate(timeout=60)
    finally:
        for p in (get, rpc):
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert get.returncode == 1 and one_line(get_err), get_err
    assert f"pid {node.pid}" in get_err and "crashed or was killed" in get_err and "was not written" in get_err, get_err
    assert "no dainode is running" not in get_err
    assert rpc.returncode == 1 and one_line(rpc_err), rpc_err
    assert "closed the connection during store_get" in rpc_err and f"pid {node.pid}" in rpc_err, rpc_err
    status = run_cli("status", "--data-dir", str(node.data_dir))
    assert status.returncode == 1 and one_line(status.stderr) and "crashed or was killed" in status.stderr, status.stderr


def _small_file(tmp_path: Path) -> Path:
    p = tmp_path / "absent.bin"
    p.write_bytes(os.urandom(1000))
    return p


def _wait_for_jobs(node, n: int) -> None:
    """Until the daemon is fetching for both clients (a background job and a blocking call)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(node.rpc("bitswap_stat")["wantlist"]) >= 1:
            time.sleep(1.0)  # the blocking store_get is in flight too
            return
        time.sleep(0.1)
    raise AssertionError("the daemon never started fetching")
