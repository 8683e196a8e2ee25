"""The local testnet: one anvil, the contracts, a funded account, a config and a daemon per node, all bootstrapped to
each other; every PID is recorded in ``<root>/testnet.json`` so `down` stops everything, also after the launcher died."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from dainode.errors import LocalnetError
from dainode.fsutil import atomic_write
from dainode.localnet import DaemonProcess, free_port, init_identities, run_cli
from dainode.localnet import anvil as chain
from dainode.localnet.workload import COMPUTE_PRICE_WEI, DATA_PRICE_WEI, ETH, shard_files

STATE_FILE = "testnet.json"
LAYOUTS = ("default", "split", "large")
DEFAULT_NODES = {"default": 5, "split": 5, "large": 8}


@dataclass(frozen=True)
class NodeSpec:
    """One node of a layout: its name, roles (empty: a relay that takes no part) and, for tests, another argv0."""

    name: str
    roles: tuple[str, ...]
    argv0: tuple[str, ...] | None = None


def layout(name: str = "default", nodes: int | None = None, *, relay: bool = True) -> list[NodeSpec]:
    """The nodes of a layout (``nodes`` counts the task's nodes; the relay comes on top).

    default: 1 model provider + N-1 data+compute nodes (N = 5); large: the same mix, N = 8;
    split: 1 model provider, (N-1)//2 data-only and the rest compute-only nodes (N = 5: 2 + 2)."""
    if name not in LAYOUTS:
        raise LocalnetError(f"unknown layout {name!r}; use one of: {', '.join(LAYOUTS)}")
    n = DEFAULT_NODES[name] if nodes is None else int(nodes)
    least = 3 if name == "split" else 2
    if not least <= n <= 64:
        raise LocalnetError(f"layout {name} needs {least} to 64 nodes, not {n}")
    specs = [NodeSpec("model", ("model",))]
    if name == "split":
        n_data = (n - 1) // 2
        specs += [NodeSpec(f"data{i + 1}", ("data",)) for i in range(n_data)]
        specs += [NodeSpec(f"compute{i + 1}", ("compute",)) for i in range(n - 1 - n_data)]
    else:
        specs += [NodeSpec(f"node{i + 1}", ("data", "compute")) for i in range(n - 1)]
    if relay:
        specs.append(NodeSpec("relay", ()))
    return specs


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def node_config(roles, listen: str, bootstrap: list[str], endpoint: str, deployment_file: Path) -> str:
    """One node's config file (keys of config/default.toml)."""
    return "\n".join([
        "# written by dainode.localnet (scripts/testnet up)",
        f"roles = {_toml(list(roles))}",
        "[p2p]",
        f"listen = {_toml([listen])}",
        f"bootstrap = {_toml(bootstrap)}",
        "mdns = false",
        "[chain]",
        f"endpoint = {_toml(endpoint)}",
        f"deployment_file = {_toml(str(deployment_file))}",
        "",
    ])


def _same_process(rec: dict) -> psutil.Process | None:
    """The live process of a record, or None (gone, a zombie, or the PID now belongs to another process)."""
    try:
        p = psutil.Process(int(rec["pid"]))
        if abs(p.create_time() - float(rec["create_time"])) > 1.0 or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return None


@dataclass
class Testnet:
    """A testnet under ``root``: `up` starts it, `attach` finds a running one, `down` stops it by recorded PID."""

    __test__ = False  # not a pytest class

    root: Path
    detach: bool = False  # daemons and anvil in their own sessions: they outlive the launching script
    fund_wei: int = 100 * ETH
    url: str = ""
    specs: list[NodeSpec] = field(default_factory=list)
    nodes: dict[str, DaemonProcess] = field(default_factory=dict)
    anvil: subprocess.Popen | None = None
    record: dict = field(default_factory=dict)
    shards: dict[str, Path] = field(default_factory=dict)  # data node -> the file it offered (offer_all)

    def __post_init__(self):
        self.root = Path(self.root).resolve()

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def deployment_file(self) -> Path:
        return self.root / "deployment.json"

    # --- records ---------------------------------------------------------------------

    def _save(self) -> None:
        atomic_write(self.state_path, json.dumps(self.record, indent=2).encode(), mode=0o644)

    def _remember(self, name: str, pid: int) -> None:
        try:
            created = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            created = 0.0
        self.record["processes"].append({"name": name, "pid": pid, "create_time": created})
        self._save()

    @staticmethod
    def load_record(root: Path) -> dict:
        path = Path(root) / STATE_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise LocalnetError(f"no testnet at {root} ({path} does not exist); start one with `scripts/testnet up`") from None
        except (OSError, ValueError) as exc:
            raise LocalnetError(f"{path} is unreadable ({exc}); stop what runs by hand and delete {root}") from None

    def running(self) -> list[dict]:
        """The recorded processes that are still alive."""
        return [r for r in self.record.get("processes", []) if _same_process(r) is not None]

    # --- up --------------------------------------------------------------------------

    def up(self, specs: list[NodeSpec], *, timeout: float = 240.0, progress: Callable[[str], None] = lambda _: None) -> "Testnet":
        """Start anvil, deploy, init + fund + configure + launch every node, wait until all see each other.

        Any failure stops what was started (by PID) before it is raised."""
        if self.state_path.exists():
            old = Testnet.attach(self.root)
            if old.running():
                raise LocalnetError(f"a testnet is already running in {self.root}; run `scripts/testnet down` first")
            shutil.rmtree(self.root)  # a stopped testnet: its keys, state and chain are of no use to a new one
        elif self.root.exists() and any(self.root.iterdir()):
            raise LocalnetError(f"{self.root} is not empty and holds no {STATE_FILE}: not a testnet folder; "
                                "choose another with --dir (or empty it)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.specs = list(specs)
        self.record = {"version": 1, "root": str(self.root), "launcher_pid": os.getpid(), "processes": [], "nodes": []}
        self._save()
        try:
            self._up(timeout, progress)
        except BaseException:
            self.down()
            raise
        return self

    def _up(self, timeout: float, progress) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.record["chain"] = {"url": self.url, "deployment_file": str(self.deployment_file)}
        progress(f"anvil on {self.url}")
        self.anvil = chain.start_anvil(self.root, port, detach=self.detach)
        self._remember("anvil", self.anvil.pid)
        chain.wait_anvil(self.anvil, self.url, self.root / "anvil.log")
        deployment = chain.deploy(self.url, self.deployment_file)
        self.record["chain"]["contracts"] = deployment["contracts"]
        progress("contracts deployed: " + ", ".join(f"{k} {v}" for k, v in sorted(deployment["contracts"].items())))
        ids = init_identities(self.root, [s.name for s in self.specs])
        ports = {s.name: free_port() for s in self.specs}
        addrs = {s.name: f"/ip4/127.0.0.1/tcp/{ports[s.name]}/p2p/{ids[s.name]['peer_id']}" for s in self.specs}
        for s in self.specs:
            chain.fund(self.url, ids[s.name]["address"], self.fund_wei)
            cfg = self.root / f"{s.name}.toml"
            cfg.write_text(node_config(s.roles, f"/ip4/127.0.0.1/tcp/{ports[s.name]}",
                                       [a for n, a in addrs.items() if n != s.name], self.url, self.deployment_file))
            node = DaemonProcess(self.root, s.name, roles=None, chain=None, listen=None, config=cfg,
                                 argv0=list(s.argv0) if s.argv0 else None, detach=self.detach)
            self.nodes[s.name] = node
            self.record["nodes"].append({"name": s.name, "roles": list(s.roles), "peer_id": ids[s.name]["peer_id"],
                                         "address": ids[s.name]["address"], "multiaddr": addrs[s.name], "config": str(cfg),
                                         "data_dir": str(node.data_dir), "socket": str(node.socket), "log": str(node.log_path)})
        progress(f"launching {len(self.nodes)} daemons")
        for name, node in self.nodes.items():
            self._remember(name, node.launch())
        for node in self.nodes.values():
            node.wait_ready(timeout)
        progress("every daemon answers; waiting until every node sees every other")
        self.wait_mesh(timeout)

    def wait_mesh(self, timeout: float) -> None:
        want = {r["name"]: r["peer_id"] for r in self.record["nodes"]}
        deadline = time.monotonic() + timeout
        missing: dict[str, set] = {}
        while time.monotonic() < deadline:
            missing = {}
            for name, node in self.nodes.items():
                seen = {p["peer_id"] for p in node.rpc("p2p_peers")}
                lack = {n for n, pid in want.items() if n != name and pid not in seen}
                if lack:
                    missing[name] = lack
            if not missing:
                return
            time.sleep(0.5)
        raise LocalnetError(f"not every node sees every other after {timeout:g} s: "
                            + "; ".join(f"{n} lacks {', '.join(sorted(m))}" for n, m in missing.items()))

    # --- attach / down ---------------------------------------------------------------

    @classmethod
    def attach(cls, root: Path) -> "Testnet":
        """The testnet recorded under ``root`` (its daemons reached through their admin sockets)."""
        rec = cls.load_record(root)
        net = cls(Path(root), record=rec, url=rec.get("chain", {}).get("url", ""))
        for n in rec.get("nodes", []):
            node = DaemonProcess(net.root, n["name"], roles=list(n["roles"]))
            node.info = {"peer_id": n["peer_id"], "address": n["address"], "listen_addrs": [n["multiaddr"]]}
            net.nodes[n["name"]] = node
            net.specs.append(NodeSpec(n["name"], tuple(n["roles"])))
        return net

    def down(self, timeout: float = 15.0) -> list[dict]:
        """SIGTERM every recorded process still alive (daemons first, anvil last), SIGKILL what remains after
        ``timeout``; children of this process are reaped. Returns the records it stopped."""
        live = [(r, p) for r in self.record.get("processes", []) if (p := _same_process(r)) is not None]
        live.sort(key=lambda rp: rp[0]["name"] == "anvil")
        for stage in ([rp for rp in live if rp[0]["name"] != "anvil"], [rp for rp in live if rp[0]["name"] == "anvil"]):
            for _, p in stage:
                try:
                    p.send_signal(signal.SIGTERM)
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs([p for _, p in stage], timeout=timeout)
            for p in alive:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=10)
        for node in self.nodes.values():  # our own children: reaped (no zombies), and a node a test restarted stopped
            if node.proc is not None:
                node.stop()
        if self.anvil is not None:
            self.anvil.poll()
            if self.anvil.returncode is None:
                self.anvil.kill()
                self.anvil.wait(10)
        return [r for r, _ in live]

    # --- using it ----------------------------------------------------------------------

    @property
    def specs_by_name(self) -> dict[str, NodeSpec]:
        return {s.name: s for s in self.specs}

    def by_role(self, role: str) -> list[DaemonProcess]:
        return [self.nodes[s.name] for s in self.specs if role in s.roles]

    @property
    def relay(self) -> DaemonProcess | None:
        return next((self.nodes[s.name] for s in self.specs if not s.roles), None)

    @property
    def model(self) -> DaemonProcess:
        return self.by_role("model")[0]

    def balance(self, name: str) -> int:
        return chain.balance(self.url, self.nodes[name].info["address"])

    def offer_all(self, *, data_price: int = DATA_PRICE_WEI, compute_price: int = COMPUTE_PRICE_WEI,
                  files: list[Path] | None = None, timeout: float = 300.0) -> dict[str, list[dict]]:
        """Every data node offers one digits shard, every compute node offers compute (the CLI, as a user would);
        waits until the model provider has indexed and verified every data offer and every data-only node every
        compute offer (it picks its computation provider from them). Returns name -> offers."""
        data, compute = self.by_role("data"), self.by_role("compute")
        files = files or shard_files(self.root / "shards", len(data))
        self.shards = {node.name: Path(f) for node, f in zip(data, files)}
        out: dict[str, list[dict]] = {}
        for node, f in zip(data, files):
            out.setdefault(node.name, []).append(
                self.cli_json(node, "offer", "data", "--dataset", str(f), "--price", str(data_price), timeout=timeout))
        for node in compute:
            out.setdefault(node.name, []).append(self.cli_json(node, "offer", "compute", "--price", str(compute_price), timeout=timeout))
        waits = [(self.model, "data", len(data))]
        waits += [(n, "compute", len(compute)) for n in data if "compute" not in self.specs_by_name[n.name].roles]
        deadline = time.monotonic() + timeout
        for node, kind, want in waits:
            while len([o for o in node.rpc("offer_list", kind=kind) if o["verified"]]) < want:
                if time.monotonic() > deadline:
                    raise LocalnetError(f"{node.name} indexed fewer than {want} {kind} offers in {timeout:g} s; see {node.log_path}")
                time.sleep(0.5)
        return out

    @staticmethod
    def cli_json(node: DaemonProcess, *args: str, timeout: float = 300.0) -> Any:
        out = run_cli(*args, "--json", "--data-dir", str(node.data_dir), timeout=timeout)
        if out.returncode != 0:
            raise LocalnetError(f"`dainode {' '.join(args)}` on {node.name} exited {out.returncode}: "
                                f"{out.stderr.strip() or out.stdout.strip()}")
        return json.loads(out.stdout)
