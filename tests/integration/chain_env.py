"""Real anvil processes (started/stopped by PID) and a chain-client harness for the chain integration tests."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from eth_account import Account

from dainode.chain.contracts import ContractSet, load_contracts
from dainode.chain.devchain import PRUNE_KEEP_STATES, deploy_contracts, find_anvil, free_port, load_deploy_spec
from dainode.chain.nonce import NonceManager
from dainode.chain.rpc import RpcClient
from dainode.chain.signer import Signer
from dainode.chain.tx import TxManager

# anvil's first default dev key (public knowledge, funded on every fresh anvil)
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_KEY_2 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


class AnvilProcess:
    """An anvil child on 127.0.0.1 with a fixed port (so a restart keeps the URL)."""

    def __init__(self, workdir: Path, *, prune_history: bool = True, state: bool = False, extra_args: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.prune_history = prune_history
        self.state_file = self.workdir / "anvil-state.json" if state else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "AnvilProcess":
        args = [str(find_anvil()), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if self.prune_history:
            args += ["--prune-history", str(PRUNE_KEEP_STATES)]  # as the dev chain: a bare flag races reads at latest
        if self.state_file is not None:
            args += ["--state", str(self.state_file)]
        args += self.extra_args
        log = open(self.workdir / "anvil.log", "ab")
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"anvil exited with {self.proc.returncode}; see {self.workdir / 'anvil.log'}")
            try:
                httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"anvil did not answer on {self.url}")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (anvil writes --state), SIGKILL after 10 s; reaps the child."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def rpc(self, method: str, *params):
        reply = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]


@dataclass
class Client:
    """The chain client stack for one account against one endpoint."""

    rpc: RpcClient
    signer: Signer
    nonces: NonceManager
    tx: TxManager
    contracts: ContractSet


def make_client(url: str, key: str = DEV_KEY, contracts: ContractSet | None = None, **tx_kwargs) -> Client:
    rpc = RpcClient(url)
    signer = Signer(Account.from_key(key))
    nonces = NonceManager(rpc, signer.address)
    contracts = contracts or load_contracts()
    tx = TxManager(rpc, signer, nonces, contracts, chain_id=31337, **tx_kwargs)
    return Client(rpc, signer, nonces, tx, contracts)


async def deploy_all(client: Client) -> ContractSet:
    deployment = await deploy_contracts(client.tx, client.contracts, load_deploy_spec())
    deployed = client.contracts.with_addresses(deployment["contracts"])
    client.contracts = deployed
    client.tx.contracts = deployed
    return deployed


def cid(n: int) -> bytes:
    """A distinct non-zero bytes32 standing in for a CID digest."""
    return n.to_bytes(32, "big")


# --- fixtures shared by the chain-client test modules (import them into a module to use) --------


@pytest.fixture(scope="module")
def anvil(tmp_path_factory):
    node = AnvilProcess(tmp_path_factory.mktemp("anvil")).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def deployed(anvil):
    async def go():
        client = make_client(anvil.url)
        try:
            return await deploy_all(client)
        finally:
            await client.rpc.aclose()

    return trio.run(go)


@pytest.fixture
async def client(anvil, deployed):
    c = make_client(anvil.url, contracts=deployed)
    try:
        yield c
    finally:
        await c.rpc.aclose()
