"""The local network's chain: one anvil process, the contracts deployed with anvil's first dev key, funding by setBalance."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from dainode.errors import LocalnetError

# anvil's first default dev key (public knowledge, funded on every fresh anvil): deploys the contracts, so it is
# their authority and every task's default arbiter; no node of the testnet holds it
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
CHAIN_ID = 31337


def anvil_argv(port: int) -> list[str]:
    from dainode.chain.devchain import find_anvil

    # no --prune-history: with it anvil answers eth_getProof / eth_call at a block just behind the head with
    # BlockOutOfRangeError, which made a data provider refuse a match (its escrow check) in an 8-node run; a testnet's
    # task is a few hundred blocks, far from where plain anvil slows down
    return [str(find_anvil()), "--host", "127.0.0.1", "--port", str(port), "--silent", "--chain-id", str(CHAIN_ID)]


def start_anvil(workdir: Path, port: int, *, detach: bool = False) -> subprocess.Popen:
    """Spawn anvil on 127.0.0.1:``port`` (log ``workdir/anvil.log``); the caller records the PID and `wait_anvil`s."""
    log = open(Path(workdir) / "anvil.log", "ab")
    try:
        return subprocess.Popen(anvil_argv(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=detach)
    finally:
        log.close()


def eth(url: str, method: str, *params, timeout: float = 30.0):
    """One JSON-RPC call to the chain; an error reply raises LocalnetError."""
    reply = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=timeout).json()
    if "error" in reply:
        raise LocalnetError(f"{method} on {url}: {reply['error']}")
    return reply["result"]


def wait_anvil(proc: subprocess.Popen, url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise LocalnetError(f"anvil exited with {proc.returncode} at start; see {log} (is the port in use?)")
        try:
            eth(url, "eth_chainId", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise LocalnetError(f"anvil did not answer on {url} within {timeout:g} s; see {log}") from None
            time.sleep(0.05)


def deploy(url: str, deployment_file: Path, key: str = DEV_KEY, authority: str | None = None) -> dict:
    """Deploy the compiled contracts (contracts/build) with ``key`` (default DEV_KEY, for anvil) to the chain at ``url``
    and write the deployment file nodes read (`chain.deployment_file`). ``authority``: the contracts' authority and
    default arbiter (None: the deployer). Used by scripts/testnet and scripts/deploy-contracts (any chain)."""
    import trio
    from eth_account import Account

    from dainode.chain.contracts import load_contracts
    from dainode.chain.devchain import deploy_contracts, load_deploy_spec, write_deployment
    from dainode.chain.nonce import NonceManager
    from dainode.chain.rpc import RpcClient
    from dainode.chain.signer import Signer
    from dainode.chain.tx import TxManager

    async def go() -> dict:
        rpc = RpcClient(url)
        try:
            signer = Signer(Account.from_key(key))
            contracts = load_contracts()
            chain_id = int(await rpc.call("eth_chainId"), 16)
            tx = TxManager(rpc, signer, NonceManager(rpc, signer.address), contracts, chain_id=chain_id)
            overrides = {n: {"authority": authority} for n in ("DataTransfer", "TrainingTask")} if authority else None
            return await deploy_contracts(tx, contracts, load_deploy_spec(), overrides)
        finally:
            await rpc.aclose()

    deployment = trio.run(go)
    write_deployment(Path(deployment_file), deployment)
    return deployment


def fund(url: str, address: str, wei: int) -> None:
    eth(url, "anvil_setBalance", address, hex(wei))


def balance(url: str, address: str) -> int:
    return int(eth(url, "eth_getBalance", address, "latest"), 16)
