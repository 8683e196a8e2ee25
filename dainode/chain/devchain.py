"""The dev chain: a private anvil child process, funding, contract deployment and the deployment file."""

from __future__ import annotations

import ctypes
import json
import logging
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import trio
from eth_utils import is_address, keccak, to_checksum_address

from dainode.chain.contracts import CONTRACT_NAMES, ContractSet, default_build_dir
from dainode.chain.pidrecord import remove_pid_record, stop_left_behind, write_pid_record
from dainode.chain.rpc import RpcClient, to_int
from dainode.chain.tx import TxManager
from dainode.errors import ChainError, ChainUnavailable, ConfigError
from dainode.fsutil import atomic_write, ensure_private_dir

log = logging.getLogger("dainode.chain")

ANVIL_REL = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
DEV_FUNDING_WEI = 10_000 * 10**18
DEPLOYMENT_VERSION = 1
DEV_CHAIN_ID = 31337  # anvil's default chain id: the only chain dev-only helpers (chain.dev_time_travel) act on
# anvil rewrites its --state file this often (whole seconds; anvil takes no fractions), so a
# SIGKILL of anvil itself loses at most this much; it also writes the file when it stops.
STATE_INTERVAL_S = 1
STATE_FILE = "anvil-state.json"
# `--prune-history N` keeps the newest N block states in memory. A bare `--prune-history` keeps
# only the head's: a block mined between anvil resolving `latest` and reading its state then
# fails the read with BlockOutOfRangeError (measured: ~10% of eth_call at latest while mining
# continuously). A few dozen states cost little memory and close that window.
PRUNE_KEEP_STATES = 64
PID_FILE = "anvil.pid"


def find_anvil() -> Path:
    root = Path(__file__).resolve().parents[2]
    path = root / ANVIL_REL
    if not path.exists():
        raise ConfigError(f"anvil not found at {path}; run `make install` (npm ci) to install node_modules", key="chain.endpoint")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the node is SIGKILLed its finally blocks never run; the kernel then stops anvil for us.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class DevChain:
    """One anvil on 127.0.0.1, owned by this object: started by `start`, stopped by PID in `stop`.

    `--prune-history 64` keeps anvil fast on long runs (plain anvil slows from ~250 to ~90
    tx/s after 2,400 blocks) at the price of `anvil_reorg` (64 recent states, not 1: see
    PRUNE_KEEP_STATES); `--state FILE` keeps the chain
    across restarts of the node (anvil writes it when it stops and every `state_interval_s`).
    The spawned anvil's PID, start time and argv are recorded in `anvil.pid`, so a start
    after a crash stops an anvil its dead node left behind before it touches the state file.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        prune_history: bool = True,
        state_file: bool = True,
        block_time: float | None = None,
        state_interval_s: int = STATE_INTERVAL_S,
        extra_args: list[str] | None = None,
    ):
        self.dir = ensure_private_dir(Path(data_dir))
        self.port = port
        self.prune_history = prune_history
        self.state_file = state_file
        self.block_time = block_time
        self.state_interval_s = state_interval_s
        self.state_path = self.dir / STATE_FILE
        self.pid_path = self.dir / PID_FILE
        self.state_loaded = False  # True when this start continued a chain from the state file
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "anvil.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def args(self) -> list[str]:
        args = [str(find_anvil()), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if self.prune_history:
            args += ["--prune-history", str(PRUNE_KEEP_STATES)]
        if self.state_file:
            args += ["--state", str(self.state_path)]
            if self.state_interval_s:
                args += ["--state-interval", str(int(self.state_interval_s))]
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        return args + self.extra_args

    async def start(self, timeout: float = 30.0) -> str:
        if self.proc is not None:
            raise ChainError("this dev chain is already running")
        if self.state_file:
            await trio.to_thread.run_sync(stop_left_behind, self.pid_path)
            self.state_loaded = await trio.to_thread.run_sync(check_state_file, self.state_path)
        if self.port is None:
            self.port = free_port()
        # Popen in *this* thread, not trio.lowlevel.open_process: that forks from a worker
        # thread, and PR_SET_PDEATHSIG fires when the forking thread exits — trio retires idle
        # worker threads after 10 s, which would SIGTERM anvil 10 s after start.
        with open(self.log_path, "ab") as out:
            try:
                self.proc = subprocess.Popen(
                    self.args(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
                )
            except OSError as exc:
                raise ChainError(f"cannot start anvil: {exc}") from None
        try:
            write_pid_record(self.pid_path, self.proc.pid, self.proc.args)
            await self._wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise
        log.info("dev chain: anvil pid %d on %s", self.proc.pid, self.url)
        return self.url

    async def wait(self) -> int:
        """Wait until anvil exits (for supervision); returns its status."""
        proc = self.proc
        if proc is None:
            raise ChainError("the dev chain is not running")
        while proc.poll() is None:
            await trio.sleep(0.2)
        return proc.returncode

    async def _wait_ready(self, timeout: float) -> None:
        probe = RpcClient(self.url, timeout=2.0, retries=0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise ChainError(f"anvil exited with status {self.proc.returncode} during start; see {self.log_path}:\n{self._log_tail()}")
                try:
                    await probe.call("eth_chainId")
                    return
                except ChainUnavailable:
                    if time.monotonic() > deadline:
                        raise ChainUnavailable(f"anvil on {self.url} did not answer within {timeout} s; see {self.log_path}") from None
                    await trio.sleep(0.05)
        finally:
            await probe.aclose()

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (anvil dumps --state), SIGKILL after `timeout`; always reaps. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        with trio.CancelScope(shield=True):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while proc.poll() is None and time.monotonic() < deadline:
                    await trio.sleep(0.02)
                if proc.poll() is None:
                    log.warning("anvil pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, timeout)
                    proc.kill()
                    await trio.to_thread.run_sync(proc.wait)
            remove_pid_record(self.pid_path)
        log.info("dev chain: anvil pid %d stopped (status %s)", proc.pid, proc.returncode)
        return proc.returncode

    async def __aenter__(self) -> "DevChain":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def check_state_file(path: Path) -> bool:
    """True when `path` holds a chain to continue, False when there is none; a corrupt one is refused.

    anvil rewrites the file in place, so a SIGKILL of anvil in the middle of a dump can leave
    it truncated; anvil would then refuse to start with a parse error. Refusing here says
    what to do instead of silently starting a new, empty chain under the old records."""
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise ChainError(
            f"the dev chain's state file {path} is corrupt ({exc}); the node will not start a new chain over it. "
            f"Move it aside (mv {path} {path}.corrupt) to start a fresh dev chain (contracts are deployed again; "
            "offers and tasks on the old chain are gone), or restore it from a backup"
        ) from None
    if not isinstance(doc, dict) or "accounts" not in doc:
        raise ChainError(
            f"the dev chain's state file {path} is not an anvil state dump (no \"accounts\"); "
            f"move it aside (mv {path} {path}.corrupt) to start a fresh dev chain"
        )
    return True


# --- deployment ------------------------------------------------------------------------------


def load_deploy_spec(build_dir: Path | None = None) -> dict[str, dict]:
    path = Path(build_dir or default_build_dir()) / "deploy.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing; run scripts/compile-contracts", key="contracts") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}); run scripts/compile-contracts", key="contracts") from None


def _default_for(typ: str, deployer: str) -> Any:
    if typ == "address":
        return deployer
    if typ.startswith(("uint", "int")):
        return 0
    if typ == "bool":
        return False
    if typ.startswith("bytes") and typ != "bytes":
        return bytes(int(typ[5:]))
    return b"" if typ == "bytes" else ""


def constructor_args(
    name: str, spec: dict, deployer: str, overrides: dict | None = None, deployed: dict[str, str] | None = None
) -> list[Any]:
    """deploy.json entry -> constructor arguments (spec defaults, then overrides by arg name).

    An address default "@Other" names the contract Other deployed before this one (in `deployed`)."""
    names = spec.get("args", [])
    types = spec.get("types", [])
    if len(names) != len(types):
        raise ConfigError(f"deploy.json entry for {name} has {len(names)} args but {len(types)} types", key="contracts")
    defaults = {**spec.get("defaults", {}), **(overrides or {})}
    out = []
    for arg, typ in zip(names, types):
        value = defaults.get(arg, _default_for(typ, deployer))
        if typ == "address" and isinstance(value, str) and value.startswith("@"):
            ref = value[1:]
            if ref not in (deployed or {}):
                raise ConfigError(
                    f"deploy.json: {name}.{arg} names {ref}, which is not deployed before {name}; "
                    f"give {ref} a lower order or pass an address", key="contracts")
            value = (deployed or {})[ref]
        if typ == "address" and isinstance(value, str):
            value = to_checksum_address(value)
        elif typ.startswith("bytes") and isinstance(value, str):
            value = bytes.fromhex(value.removeprefix("0x"))
        out.append(value)
    return out


async def deploy_contracts(tx: TxManager, contracts: ContractSet, spec: dict[str, dict], overrides: dict[str, dict] | None = None) -> dict:
    """Deploy every contract of `spec` in its `order` with offline-signed transactions."""
    deployed: dict[str, str] = {}
    tx_hashes: dict[str, str] = {}
    first_block: int | None = None
    for name in sorted(spec, key=lambda n: spec[n].get("order", 0)):
        args = constructor_args(name, spec[name], tx.signer.address, (overrides or {}).get(name), deployed)
        receipt = await tx.send(None, contracts[name].encode_deploy(*args), what=f"deploy {name}", prefer=name)
        address = receipt.get("contractAddress")
        if not address:
            raise ChainError(f"deploying {name} produced no contract address (tx {receipt.get('transactionHash')})")
        deployed[name] = to_checksum_address(address)
        tx_hashes[name] = receipt["transactionHash"]
        block = to_int(receipt["blockNumber"])
        first_block = block if first_block is None else min(first_block, block)
        log.info("deployed %s at %s (block %d)", name, deployed[name], block)
    return {
        "version": DEPLOYMENT_VERSION,
        "artifacts": artifact_digests(contracts, deployed),
        "chain_id": tx.chain_id,
        "block": first_block or 0,
        "deployer": tx.signer.address,
        "contracts": deployed,
        "tx_hashes": tx_hashes,
    }


def artifact_digests(contracts: ContractSet, names) -> dict[str, str]:
    """keccak of each compiled creation bytecode: tells whether a deployment matches today's artifacts."""
    return {n: "0x" + keccak(contracts[n].bytecode).hex() for n in names}


def stale_artifacts(deployment: dict, contracts: ContractSet) -> list[str]:
    """Contracts whose recorded artifact digest differs from the compiled one (none recorded: not stale)."""
    recorded = deployment.get("artifacts") or {}
    current = artifact_digests(contracts, [n for n in recorded if n in contracts])
    return sorted(n for n, d in current.items() if recorded.get(n) != d)


def write_deployment(path: Path, deployment: dict) -> None:
    atomic_write(Path(path), json.dumps(deployment, indent=2, sort_keys=True).encode("utf-8"), mode=0o644)


def read_deployment(path: Path, names: tuple[str, ...] = CONTRACT_NAMES) -> dict:
    """Read and check a deployment file: chain_id, block, contracts{name: address} for every name."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"deployment file {path} does not exist; deploy the contracts to this chain and write their addresses there "
            "(or set chain.deployment_file)",
            key="chain.deployment_file",
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"deployment file {path} is unreadable ({exc})", key="chain.deployment_file") from None
    contracts = doc.get("contracts") if isinstance(doc, dict) else None
    if not isinstance(contracts, dict):
        raise ConfigError(f"deployment file {path} has no \"contracts\" object", key="chain.deployment_file")
    for name in names:
        addr = contracts.get(name)
        if not isinstance(addr, str) or not is_address(addr):
            raise ConfigError(f"deployment file {path} lacks a valid address for {name}", key="chain.deployment_file")
        contracts[name] = to_checksum_address(addr)
    if not isinstance(doc.get("chain_id"), int):
        raise ConfigError(f"deployment file {path} lacks an integer chain_id", key="chain.deployment_file")
    doc.setdefault("block", 0)
    return doc


async def deployment_is_live(rpc: RpcClient, deployment: dict, chain_id: int) -> bool:
    """True when the deployment belongs to this chain and code exists at every address."""
    if deployment.get("chain_id") != chain_id:
        return False
    codes = await rpc.batch([("eth_getCode", [a, "latest"]) for a in deployment["contracts"].values()])
    return all(isinstance(c, str) and len(c) > 2 for c in codes)


async def fund(rpc: RpcClient, address: str, wei: int = DEV_FUNDING_WEI) -> None:
    balance = to_int(await rpc.call("eth_getBalance", address, "latest"))
    if balance < wei // 2:
        await rpc.call("anvil_setBalance", address, hex(wei))
