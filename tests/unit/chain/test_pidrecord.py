"""The dev chain's PID record: a left-behind process is stopped only when PID, start time and argv all match."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dainode.chain.devchain import check_state_file
from dainode.chain.pidrecord import read_pid_record, stop_left_behind, write_pid_record
from dainode.errors import ChainError

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"]


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(argv, **kw):
        p = subprocess.Popen(argv, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:  # by PID, also on failure
        if p.poll() is None:
            p.kill()
        p.wait(10)


def test_a_recorded_process_left_running_is_stopped_and_the_record_removed(tmp_path, spawn):
    p = spawn(SLEEPER)
    write_pid_record(tmp_path / "anvil.pid", p.pid, p.args)
    assert stop_left_behind(tmp_path / "anvil.pid", timeout=10) == p.pid
    assert p.wait(5) == -signal.SIGTERM
    assert not (tmp_path / "anvil.pid").exists()


def test_a_stopped_process_is_woken_so_it_can_act_on_sigterm(tmp_path, spawn):
    p = spawn(SLEEPER)
    write_pid_record(tmp_path / "anvil.pid", p.pid, p.args)
    os.kill(p.pid, signal.SIGSTOP)
    assert stop_left_behind(tmp_path / "anvil.pid", timeout=10) == p.pid
    assert p.wait(5) == -signal.SIGTERM


def test_a_process_that_ignores_sigterm_is_killed(tmp_path, spawn):
    p = spawn(STUBBORN, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    write_pid_record(tmp_path / "anvil.pid", p.pid, p.args)
    assert stop_left_behind(tmp_path / "anvil.pid", timeout=0.5) == p.pid
    assert p.wait(5) == -signal.SIGKILL


def test_a_reused_pid_running_another_program_is_left_alone(tmp_path, spawn):
    p = spawn(SLEEPER)
    write_pid_record(tmp_path / "anvil.pid", p.pid, ["/x/anvil", "--port", "1"])
    assert stop_left_behind(tmp_path / "anvil.pid") is None
    time.sleep(0.2)
    assert p.poll() is None
    assert not (tmp_path / "anvil.pid").exists()  # the record names nothing of ours any more


def test_same_argv_but_another_start_time_is_left_alone(tmp_path, spawn):
    p = spawn(SLEEPER)
    rec = write_pid_record(tmp_path / "anvil.pid", p.pid, p.args)
    (tmp_path / "anvil.pid").write_text(json.dumps({**rec, "create_time": rec["create_time"] - 30}))
    assert stop_left_behind(tmp_path / "anvil.pid") is None
    time.sleep(0.2)
    assert p.poll() is None


def test_a_dead_pid_or_an_unreadable_record_is_nothing_to_stop(tmp_path, spawn):
    p = spawn(SLEEPER)
    write_pid_record(tmp_path / "anvil.pid", p.pid, p.args)
    p.kill()
    p.wait(5)
    assert stop_left_behind(tmp_path / "anvil.pid") is None
    (tmp_path / "anvil.pid").write_text("{not json")
    assert read_pid_record(tmp_path / "anvil.pid") is None
    assert stop_left_behind(tmp_path / "anvil.pid") is None
    assert stop_left_behind(tmp_path / "absent.pid") is None


def test_state_file_missing_valid_and_corrupt(tmp_path):
    path = tmp_path / "anvil-state.json"
    assert check_state_file(path) is False
    path.write_text(json.dumps({"block": {}, "accounts": {}, "blocks": []}))
    assert check_state_file(path) is True
    path.write_text('{"block": {"number": ')  # what a SIGKILL in the middle of anvil's in-place dump leaves
    with pytest.raises(ChainError, match=r"anvil-state.json is corrupt .*mv .*anvil-state.json.corrupt"):
        check_state_file(path)
    path.write_text("[]")
    with pytest.raises(ChainError, match="not an anvil state dump"):
        check_state_file(path)
