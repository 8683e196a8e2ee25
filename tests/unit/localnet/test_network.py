"""dainode.localnet.network without daemons: layouts, node configs, and `down` by recorded PID (real child processes)."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from dainode.config import build_config
from dainode.errors import LocalnetError
from dainode.localnet.network import STATE_FILE, NodeSpec, Testnet, layout, node_config


def roles(specs):
    return [(s.name, s.roles) for s in specs]


def test_default_layout_is_one_model_four_data_compute_and_a_relay():
    assert roles(layout()) == [("model", ("model",))] + [(f"node{i}", ("data", "compute")) for i in range(1, 5)] + [("relay", ())]


def test_split_layout_separates_data_and_compute():
    assert roles(layout("split")) == [("model", ("model",)), ("data1", ("data",)), ("data2", ("data",)),
                                      ("compute1", ("compute",)), ("compute2", ("compute",)), ("relay", ())]
    assert [s.name for s in layout("split", 6)] == ["model", "data1", "data2", "compute1", "compute2", "compute3", "relay"]


def test_large_layout_defaults_to_eight_and_nodes_counts_without_the_relay():
    assert len(layout("large")) == 9
    assert [s.name for s in layout("default", 8, relay=False)][-1] == "node7"


@pytest.mark.parametrize("name,n,what", [("mesh", None, "unknown layout 'mesh'"), ("default", 1, "needs 2 to 64 nodes, not 1"),
                                         ("split", 2, "needs 3 to 64 nodes, not 2"), ("large", 65, "not 65")])
def test_bad_layouts_say_what_is_accepted(name, n, what):
    with pytest.raises(LocalnetError, match=what):
        layout(name, n)


def test_node_config_is_a_valid_dainode_config(tmp_path):
    path = tmp_path / "n.toml"
    boot = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWLe497BdkQreh4gEb5doPbGYU6ANCkPKC25maWgxGCzrg"]
    path.write_text(node_config(("data", "compute"), "/ip4/127.0.0.1/tcp/4002", boot, "http://127.0.0.1:8545", tmp_path / "d.json"))
    cfg = build_config(config_file=path, environ={})
    assert sorted(cfg.roles) == ["compute", "data"]
    assert list(cfg.p2p.listen) == ["/ip4/127.0.0.1/tcp/4002"] and list(cfg.p2p.bootstrap) == boot and cfg.p2p.mdns is False
    assert cfg.chain.endpoint == "http://127.0.0.1:8545" and cfg.chain.deployment_file == str(tmp_path / "d.json")


def _sleeper(detach: bool = True) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=detach)


def _record(root, procs: dict[str, subprocess.Popen], **bad_times) -> None:
    recs = [{"name": n, "pid": p.pid, "create_time": bad_times.get(n, psutil.Process(p.pid).create_time())} for n, p in procs.items()]
    (root / STATE_FILE).write_text(json.dumps({"version": 1, "processes": recs, "nodes": []}))


def test_down_from_another_process_stops_every_recorded_pid(tmp_path):
    procs = {"anvil": _sleeper(), "node1": _sleeper(), "relay": _sleeper()}
    try:
        _record(tmp_path, procs)
        net = Testnet.attach(tmp_path)  # as `scripts/testnet down` does: no Popen handles, only the record
        assert [r["name"] for r in net.running()] == ["anvil", "node1", "relay"]
        stopped = net.down(timeout=5)
        assert sorted(r["name"] for r in stopped) == ["anvil", "node1", "relay"]
        assert not any(psutil.pid_exists(p.pid) for p in procs.values())  # gone and reaped
        assert net.running() == [] and net.down() == []
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def test_down_does_not_signal_a_process_that_reused_a_recorded_pid(tmp_path):
    other = _sleeper()
    try:
        _record(tmp_path, {"node1": other}, node1=123.0)  # the record's process started at another time
        net = Testnet.attach(tmp_path)
        assert net.running() == [] and net.down(timeout=1) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_down_kills_what_ignores_sigterm(tmp_path):
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout.readline().strip() == "ready"
        _record(tmp_path, {"node1": stubborn})
        Testnet.attach(tmp_path).down(timeout=1)
        assert not psutil.pid_exists(stubborn.pid)  # it ignored SIGTERM: SIGKILL stopped it
    finally:
        stubborn.kill()
        stubborn.wait()


def test_attach_without_a_testnet_says_how_to_start_one(tmp_path):
    with pytest.raises(LocalnetError, match="scripts/testnet up"):
        Testnet.attach(tmp_path)


def test_up_refuses_a_folder_whose_testnet_still_runs(tmp_path):
    p = _sleeper()
    try:
        _record(tmp_path, {"anvil": p})
        with pytest.raises(LocalnetError, match="already running.*down"):
            Testnet(tmp_path).up([NodeSpec("model", ("model",))])
        assert p.poll() is None  # not stopped by the refused up
    finally:
        p.kill()
        p.wait()


def test_up_refuses_a_folder_that_is_not_a_testnet(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(LocalnetError, match="not a testnet folder"):
        Testnet(tmp_path).up([NodeSpec("model", ("model",))])
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_up_clears_a_stopped_testnet_before_starting_again(tmp_path, monkeypatch):
    """A second `make demo` in the same folder: the old node dirs (whose `dainode init` would refuse) are gone first."""
    _record(tmp_path, {})
    (tmp_path / "node1").mkdir()
    (tmp_path / "node1" / "state.db").write_text("old chain's state")
    started = []

    def fake_up(self, timeout, progress):
        started.append(sorted(p.name for p in self.root.iterdir()))

    monkeypatch.setattr(Testnet, "_up", fake_up)
    Testnet(tmp_path).up([NodeSpec("model", ("model",))])
    assert started == [[STATE_FILE]]  # only the new record
