"""The daemon as a real subprocess: start, status, admin socket errors, signals, bad input."""

from __future__ import annotations

import json
import os
import signal
import stat
import time

import psutil
import pytest

from tests.integration.daemon import daemon_env, raw_request, run_cli


def test_start_status_and_admin_errors(daemon_factory):
    node = daemon_factory("a", roles=["compute", "data"], chain="dev").start(timeout=120)  # these roles need a chain
    out = run_cli("status", "--json", "--data-dir", str(node.data_dir))
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert sorted(info["roles"]) == ["compute", "data"]
    assert info["peer_id"].startswith("12D3Koo")
    assert info["address"].startswith("0x") and len(info["address"]) == 42
    assert info["listen_addrs"][0].startswith("/ip4/127.0.0.1/tcp/")
    assert info["listen_addrs"][0].endswith("/p2p/" + info["peer_id"])
    assert not info["listen_addrs"][0].startswith("/ip4/127.0.0.1/tcp/0/")
    for key in ("version", "data_dir", "uptime_s"):
        assert key in info
    assert stat.S_IMODE(os.stat(node.socket).st_mode) == 0o600

    human = run_cli("status", "--data-dir", str(node.data_dir))
    assert human.returncode == 0 and info["peer_id"] in human.stdout and "compute, data" in human.stdout

    bad = raw_request(node.socket, b"{bad json")
    assert bad["error"]["code"] == -32700
    assert raw_request(node.socket, b'{"jsonrpc":"2.0","id":1,"method":"node_info"}')["result"]["peer_id"] == info["peer_id"]
    assert raw_request(node.socket, b'{"jsonrpc":"2.0","id":2,"method":"node_nope"}')["error"]["code"] == -32601
    assert raw_request(node.socket, b'{"jsonrpc":"2.0","id":3,"method":"node_info","params":{"x":1}}')["error"]["code"] == -32602

    rpc = run_cli("rpc", "rpc_modules", "--data-dir", str(node.data_dir))
    assert rpc.returncode == 0 and "node" in json.loads(rpc.stdout)


def test_sigterm_stops_cleanly_within_5s(daemon_factory):
    node = daemon_factory("a").start()
    proc = psutil.Process(node.pid)
    t0 = time.monotonic()
    node.signal(signal.SIGTERM)
    assert node.wait(timeout=5) == 0, node.log_tail()
    assert time.monotonic() - t0 < 5
    assert not node.socket.exists()
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    # the same data dir starts again (lock released, keys reused)
    again = daemon_factory("a").start()
    assert again.info["peer_id"] == node.info["peer_id"] and again.info["address"] == node.info["address"]


def test_stop_command_and_no_daemon_messages(daemon_factory):
    node = daemon_factory("a").start()
    out = run_cli("stop", "--data-dir", str(node.data_dir))
    assert out.returncode == 0, out.stderr
    assert node.wait(timeout=10) == 0
    after = run_cli("status", "--data-dir", str(node.data_dir))
    assert after.returncode == 1
    assert "no dainode is running" in after.stderr and len(after.stderr.strip().splitlines()) == 1


def test_sigkill_leaves_a_restartable_dir(daemon_factory):
    node = daemon_factory("a").start()
    node.kill()
    assert node.socket.exists()  # a crash cannot clean up...
    again = daemon_factory("a").start()  # ...and the next start copes with the stale socket
    assert again.info["peer_id"] == node.info["peer_id"]


def test_second_daemon_on_same_dir_is_refused(daemon_factory):
    first = daemon_factory("a").start()
    out = run_cli("start", "--data-dir", str(first.data_dir), "--listen", "/ip4/127.0.0.1/tcp/0", "--chain", "none", timeout=30)
    assert out.returncode == 1 and "another dainode" in out.stderr, out.stderr
    assert first.rpc("node_info")["peer_id"] == first.info["peer_id"]
    assert first.socket.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--roles", "banker"], "data, model, compute"),
        (["--listen", "/ip4/999.1.1.1/tcp/1"], "p2p.listen"),
        (["--bootstrap", "/ip4/127.0.0.1/tcp/1"], "/p2p/"),
        (["--chain", "carrier-pigeon"], "chain.endpoint"),
        (["--log-level", "loud"], "debug, info, warning, error"),
    ],
)
def test_invalid_flags_exit_2_naming_the_key(tmp_path, args, needle):
    out = run_cli("start", "--data-dir", str(tmp_path / "n"), "--light-kdf", *args, timeout=30)
    assert out.returncode == 2, out
    assert needle in out.stderr
    assert "Traceback" not in out.stderr


def test_invalid_config_file_exits_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[p2p]\nlisten_on = ["/ip4/127.0.0.1/tcp/0"]\n')
    out = run_cli("start", "--config", str(cfg), "--data-dir", str(tmp_path / "n"), timeout=30)
    assert out.returncode == 2 and "p2p.listen_on" in out.stderr
    out = run_cli("start", "--config", str(tmp_path / "missing.toml"), "--data-dir", str(tmp_path / "n"), timeout=30)
    assert out.returncode == 2 and "cannot read config file" in out.stderr


def test_env_config_and_wrong_password(tmp_path):
    env = daemon_env(DAINODE_ROLES="model,data")
    out = run_cli("init", "--data-dir", str(tmp_path / "n"), "--light-kdf", env=env)
    assert out.returncode == 0 and "address" in out.stdout
    wrong = daemon_env(DAINODE_PASSWORD="not-the-password")
    out = run_cli("start", "--data-dir", str(tmp_path / "n"), "--listen", "/ip4/127.0.0.1/tcp/0", "--chain", "none", env=wrong, timeout=30)
    assert out.returncode == 1
    assert "wrong password" in out.stderr and "Traceback" not in out.stderr
    env_bad = daemon_env(DAINODE_ROLES="model,cook")
    out = run_cli("start", "--data-dir", str(tmp_path / "n"), env=env_bad, timeout=30)
    assert out.returncode == 2 and "DAINODE_ROLES" in out.stderr


def test_roles_from_environment_and_json_logs(daemon_factory):
    node = daemon_factory("a", env={"DAINODE_ROLES": "model"}, chain="dev", extra_args=["--log-format", "json"])
    node.start()  # no --roles flag: the environment decides
    assert node.info["roles"] == ["model"]
    first = node.log_path.read_text().splitlines()[0]
    entry = json.loads(first)
    assert {"ts", "level", "service", "msg"} <= set(entry)


def test_listen_port_in_use_is_one_line_and_exit_2(tmp_path):
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        out = run_cli(
            "start", "--data-dir", str(tmp_path / "n"), "--light-kdf", "--chain", "none",
            "--listen", f"/ip4/127.0.0.1/tcp/{port}", timeout=30,
        )
    finally:
        blocker.close()
    assert out.returncode == 2, out  # an address this node cannot use is a configuration error
    assert "Traceback" not in out.stderr
    node_lines = [line for line in out.stderr.splitlines() if " node: " in line and "ERROR" in line]
    assert len(node_lines) == 1 and "service 'p2p'" in node_lines[0] and str(port) in node_lines[0], out.stderr
    assert "--listen" in node_lines[0]
    assert not (tmp_path / "n" / "admin.sock").exists()
