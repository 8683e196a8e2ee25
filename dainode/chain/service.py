"""ChainService: the node's chain subsystem (endpoint or dev chain, signing, nonces, events, proofs, admin RPC)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from eth_utils import is_address, to_checksum_address

from dainode.chain.contracts import ContractSet, load_contracts
from dainode.chain.devchain import (
    DEV_CHAIN_ID,
    DevChain,
    deploy_contracts,
    deployment_is_live,
    fund,
    load_deploy_spec,
    read_deployment,
    stale_artifacts,
    write_deployment,
)
from dainode.chain.nonce import NonceManager
from dainode.chain.proof import StateVerifier
from dainode.chain.rpc import RpcClient, block_tag, to_int
from dainode.chain.signer import Signer
from dainode.chain.subscribe import EventSubscription
from dainode.chain.tx import TxManager
from dainode.chain.watcher import EventWatcher, ws_url_for
from dainode.config import Config
from dainode.errors import ChainError, RpcError
from dainode.fsutil import ensure_private_dir
from dainode.service import Service


def http_url_for(endpoint: str) -> str:
    """JSON-RPC calls go over HTTP; a ws(s) endpoint is assumed to serve HTTP on the same address."""
    if endpoint.startswith("ws://"):
        return "http://" + endpoint[len("ws://"):]
    if endpoint.startswith("wss://"):
        return "https://" + endpoint[len("wss://"):]
    return endpoint


class ChainService(Service):
    """Owns the RPC client, nonce manager, transaction manager, event watcher and (for `dev`) anvil.

    The API roles use: `transact`, `call`, `deploy`, `events`, `balance`, `verifier`.
    """

    name = "chain"

    def __init__(self, config: Config, account, *, build_dir: Path | None = None, state=None):
        self.config = config
        self.state = state  # the node's State: event cursors live there (None: a JSON file, as before)
        self.cfg = config.chain
        self.signer = Signer(account)
        self.build_dir = build_dir
        self.dir = config.data_path / "chain"
        self.dev: DevChain | None = None
        self.endpoint = ""
        self.rpc: RpcClient | None = None
        self.chain_id: int | None = None
        self.contracts: ContractSet | None = None
        self.deployment: dict = {}
        self.nonces: NonceManager | None = None
        self.tx: TxManager | None = None
        self.watcher: EventWatcher | None = None
        self.verifier: StateVerifier | None = None

    @property
    def address(self) -> str:
        return self.signer.address

    async def dev_travel_to(self, timestamp: int) -> bool:
        """With chain.dev_time_travel on a dev chain (id 31337): mine a block at `timestamp` or later (anvil's
        evm_increaseTime + evm_mine) and return True; otherwise do nothing and return False."""
        if not self.cfg.dev_time_travel or int(self.chain_id) != DEV_CHAIN_ID:
            return False
        head = await self.rpc.call("eth_getBlockByNumber", "latest", False)
        ahead = int(timestamp) - int(head["timestamp"], 16)
        if ahead > 0:
            await self.rpc.call("evm_increaseTime", ahead)
        await self.rpc.call("evm_mine")
        self.log.info("dev chain: clock moved %d s ahead (chain.dev_time_travel)", max(ahead, 0))
        return True

    def deployment_path(self) -> Path:
        if self.cfg.deployment_file:
            return Path(self.cfg.deployment_file).expanduser()
        return self.config.data_path / "deployment.json"

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        ensure_private_dir(self.dir)
        try:
            if self.cfg.endpoint == "dev":
                self.dev = DevChain(self.dir)
                self.endpoint = await self.dev.start()
            else:
                self.endpoint = http_url_for(self.cfg.endpoint)
            self.rpc = RpcClient(self.endpoint)
            await self._connect()
            async with trio.open_nursery() as nursery:
                if self.dev is not None:
                    nursery.start_soon(self._supervise_dev)
                await nursery.start(self.watcher.run)
                self.log.info(
                    "chain ready: chain id %d at %s, account %s, contracts %s",
                    self.chain_id, self.endpoint, self.address,
                    ", ".join(f"{k}={v}" for k, v in sorted(self.deployment["contracts"].items())),
                )
                task_status.started()
                await trio.sleep_forever()
        finally:
            if self.rpc is not None:
                await self.rpc.aclose()
            if self.dev is not None:
                await self.dev.stop()

    async def _is_anvil(self) -> bool:
        """anvil answers eth_sendRawTransactionSync with the mined receipt (one round trip per transaction);
        other endpoints get the plain send and receipt polls."""
        try:
            client = await self.rpc.call("web3_clientVersion")
        except ChainError:
            return False
        return isinstance(client, str) and client.lower().startswith("anvil")

    async def _supervise_dev(self) -> None:
        """anvil dying under a running node would make every chain call fail: stop loudly instead."""
        status = await self.dev.wait()
        raise ChainError(f"the dev chain (anvil pid {self.dev.pid}) exited unexpectedly with status {status}; see {self.dev.log_path}")

    async def _connect(self) -> None:
        self.chain_id = to_int(await self.rpc.call("eth_chainId"))
        contracts = load_contracts(self.build_dir)
        self.nonces = NonceManager(self.rpc, self.address)
        self.tx = TxManager(
            self.rpc, self.signer, self.nonces, contracts, chain_id=self.chain_id,
            fee_multiplier=self.cfg.fee_multiplier, max_fee_gwei=self.cfg.max_fee_gwei, receipt_timeout_s=self.cfg.receipt_timeout_s,
            sync_send=await self._is_anvil(),
        )
        path = self.deployment_path()
        if self.dev is not None:
            await fund(self.rpc, self.address)
            deployment = read_deployment(path) if path.exists() else None
            stale = stale_artifacts(deployment, contracts) if deployment else []
            if stale:
                # Recompiled contracts: on a dev chain, deploy them afresh rather than talk to old code.
                self.log.info("contracts %s changed since they were deployed; deploying again", ", ".join(stale))
            if deployment is not None and not stale and not self.dev.state_loaded:
                self.log.warning(
                    "dev chain state file %s is missing: anvil started a new, empty chain; deploying the contracts again "
                    "(%s no longer matches a chain; offers and tasks of the old chain are gone)", self.dev.state_path, path,
                )
                deployment = None
            if deployment is not None and not stale and not await deployment_is_live(self.rpc, deployment, self.chain_id):
                self.log.warning("deployment %s has no code on the dev chain (chain id %d); deploying the contracts again", path, self.chain_id)
                deployment = None
            if deployment is None or stale:
                deployment = await deploy_contracts(self.tx, contracts, load_deploy_spec(self.build_dir))
                write_deployment(path, deployment)
        else:
            deployment = read_deployment(path)
            stale = stale_artifacts(deployment, contracts)
            if stale:
                self.log.warning("deployment file %s records other bytecode for %s than contracts/build/ holds", path, ", ".join(stale))
            if deployment["chain_id"] != self.chain_id:
                raise ChainError(
                    f"deployment file {path} is for chain id {deployment['chain_id']} but {self.endpoint} is chain {self.chain_id}; "
                    "point chain.deployment_file at this chain's deployment"
                )
        self.deployment = deployment
        self.contracts = contracts.with_addresses(deployment["contracts"])
        self.tx.contracts = self.contracts
        self.verifier = StateVerifier(self.rpc)
        tag = f"{self.chain_id}-{deployment['contracts'].get('Registry', '0x')[2:10].lower()}"
        self.watcher = EventWatcher(
            self.rpc, self.contracts,
            cursor_path=None if self.state is not None else self.dir / f"events-{tag}.json",
            state=self.state,
            cursor_key=f"chain.watcher:{tag}",
            start_block=int(deployment.get("block", 0)),
            confirmations=self.cfg.confirmations,
            poll_interval_s=self.cfg.poll_interval_s,
            ws_url=ws_url_for(self.cfg.endpoint if self.dev is None else self.endpoint),
        )

    # --- Python API for roles ------------------------------------------------------------------

    def _contract(self, name: str):
        c = self.contracts[name]
        if not c.address:
            raise ChainError(f"{name} has no deployed address in {self.deployment_path()}")
        return c

    async def transact(
        self, contract_name: str, fn_name: str, *args: Any, value: int = 0, gas: int | None = None, confirmations: int | None = None
    ) -> dict:
        """Sign and send `contract.fn(*args)` from the node's account; returns the receipt (status 1) once it is
        `confirmations` deep (default chain.confirmations), or raises TransactionReverted naming the contract error."""
        c = self._contract(contract_name)
        receipt = await self.tx.send(
            c.address, c.encode_call(fn_name, *args), value=value, gas=gas, what=f"{contract_name}.{fn_name}", prefer=contract_name
        )
        depth = self.cfg.confirmations if confirmations is None else confirmations
        receipt = await self.tx.wait_confirmations(receipt, depth, poll_s=min(self.cfg.poll_interval_s, 1.0))
        receipt["events"] = [e for e in (self.contracts.decode_log(lg) for lg in receipt.get("logs", [])) if e is not None]
        self.watcher.poke()
        return receipt

    async def call(self, contract_name: str, fn_name: str, *args: Any, block: int | str = "latest", address: str | None = None) -> Any:
        """Read-only call; decoded result (one value, a tuple, or None)."""
        c = self._contract(contract_name) if address is None else self.contracts[contract_name].at(address)
        data = await self.tx.call_raw(c.address, c.encode_call(fn_name, *args), block=block_tag(block), what=f"{contract_name}.{fn_name}", prefer=contract_name)
        return c.decode_result(fn_name, len(args), data)

    async def deploy(self, contract_name: str, *args: Any, value: int = 0) -> str:
        """Deploy another instance of a compiled contract (e.g. one DataTransfer per trade); returns its address."""
        c = self.contracts[contract_name]
        receipt = await self.tx.send(None, c.encode_deploy(*args), value=value, what=f"deploy {contract_name}", prefer=contract_name)
        return to_checksum_address(receipt["contractAddress"])

    def subscribe(
        self, consumer: str, contract_name: str, events: list[str] | None = None, *, args: dict | None = None, from_block: int | None = None
    ) -> EventSubscription:
        """Events of `contract_name` (optionally only `events`, with indexed `args` equal to the given values) for
        `consumer`, from its durable cursor in State (backfilled with eth_getLogs, then live), at least once across
        restarts. Use `async with chain.subscribe(...) as sub: async for ev in sub: ...`."""
        self.require_running(f"chain event subscription {consumer!r}")
        start = int(self.deployment.get("block", 0)) if from_block is None else from_block
        tag = f"{self.chain_id}-{self.deployment['contracts'].get('Registry', '0x')[2:10].lower()}"
        return EventSubscription(
            self.rpc, self.contracts, self.watcher, self.state, f"{consumer}:{tag}", contract_name,
            events=events, args=args, start_block=start, confirmations=self.cfg.confirmations,
        )

    def events(self, contract_name: str | None = None) -> trio.MemoryReceiveChannel:
        """A subscription to decoded events of the deployed contracts (removed=True on reorgs)."""
        return self.watcher.subscribe(contract_name)

    async def balance(self, address: str | None = None, block: int | str = "latest") -> int:
        return to_int(await self.rpc.call("eth_getBalance", self._address(address), block_tag(block)))

    async def verified_balance(self, address: str | None = None, block: int | str = "latest") -> int:
        """The balance proven against the block header (eth_getProof), for money decisions."""
        return (await self.verifier.verify_account(self._address(address), block)).balance

    def _address(self, address: str | None) -> str:
        if address is None:
            return self.address
        if not isinstance(address, str) or not is_address(address):
            raise ChainError(f"{address!r} is not an Ethereum address (0x followed by 40 hex digits)")
        return to_checksum_address(address)

    # --- admin RPC -----------------------------------------------------------------------------

    def rpc_methods(self) -> dict[str, Any]:
        return {
            "chain_info": self.rpc_info, "chain_balance": self.rpc_balance, "chain_verify_state": self.rpc_verify_state,
            "chain_fund": self.rpc_fund,
        }

    async def fund_dev(self, address: str, wei: int) -> None:
        """Set `address`'s balance on a dev chain (anvil_setBalance); refused on any other chain."""
        if self.dev is None:
            raise ChainError(
                f"chain fund works only on this node's dev chain (--chain dev); {self.endpoint} is another chain: use its faucet"
            )
        await self.rpc.call("anvil_setBalance", self._address(address), hex(int(wei)))

    async def rpc_fund(self, address: str, eth: float | int | str = 100) -> dict:
        try:
            wei = int(float(eth) * 10**18) if not (isinstance(eth, str) and eth.isdigit()) else int(eth) * 10**18
        except ValueError:
            raise ChainError(f"--eth {eth!r} is not a number of ether") from None
        if wei <= 0:
            raise ChainError(f"--eth must be positive, got {eth}")
        addr = self._address(address)
        await self.fund_dev(addr, wei)
        return {"address": addr, "wei": str(wei), "eth": f"{wei / 10**18:.6f}"}

    async def rpc_info(self) -> dict:
        head = to_int(await self.rpc.call("eth_blockNumber"))
        return {
            "chain_id": self.chain_id,
            "head": head,
            "endpoint": self.endpoint,
            "dev": self.dev is not None,
            "anvil_pid": self.dev.pid if self.dev is not None else None,
            "contracts": dict(self.deployment["contracts"]),
            "deployment_block": self.deployment.get("block", 0),
            "account": self.address,
            "events": {
                "cursor": self.watcher.cursor.block,
                "delivered": self.watcher.delivered,
                "reorgs": self.watcher.reorgs,
                "websocket": self.watcher.ws_connected,
            },
        }

    async def rpc_balance(self, address: str | None = None, verified: bool = False) -> dict:
        addr = self._address(address)
        wei = await (self.verified_balance(addr) if verified else self.balance(addr))
        return {"address": addr, "wei": str(wei), "eth": f"{wei / 10**18:.6f}", "verified": verified}

    async def rpc_verify_state(self, address: str, slots: list | None = None, block: str | int = "latest") -> dict:
        return await self.verifier.verify_state(self._address(address), rpc_slots(slots), block)


def rpc_slots(slots: Any) -> list[int]:
    """Storage slots from admin RPC params as ints; a malformed one is invalid params (-32602), not an internal error."""
    if slots is None:
        return []
    if not isinstance(slots, list):
        raise RpcError(RpcError.INVALID_PARAMS, "invalid params: slots must be a list of slot numbers (integers or 0x-hex strings)")
    out = []
    for slot in slots:
        try:
            if isinstance(slot, str):
                value = int(slot, 16) if slot[:2].lower() == "0x" else int(slot, 10)
            elif isinstance(slot, int) and not isinstance(slot, bool):
                value = slot
            else:
                raise ValueError
        except ValueError:
            raise RpcError(
                RpcError.INVALID_PARAMS,
                f"invalid params: slot {str(slot)[:80]!r} is not a storage slot (an integer, a decimal string or 0x-hex)",
            ) from None
        if not 0 <= value < 2**256:
            raise RpcError(RpcError.INVALID_PARAMS, f"invalid params: slot {str(value)[:80]} is outside 0..2**256-1")
        out.append(value)
    return out
