"""RoleContext: the narrow view of the node's layers a role gets (gossip, reqresp, content, chain, state, keys)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable

from dainode.errors import ChainError, ConfigError
from dainode.chain.cids import cid_from_chain, cid_to_chain  # noqa: F401  (re-exported)
from dainode.store.cid import CID

REGISTRY_KINDS = {"data": 0, "compute": 1}
KIND_NAMES = {v: k for k, v in REGISTRY_KINDS.items()}
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True)
class ChainOffer:
    offer_id: int
    owner: str
    kind: str
    price_wei: int
    active: bool

    @property
    def exists(self) -> bool:
        return self.owner.lower() != ZERO_ADDRESS


class GossipPort:
    """publish(topic, type, body) / subscribe(topic); the node's signed gossip."""

    def __init__(self, p2p):
        self._p2p = p2p

    async def publish(self, topic: str, type_: str, body: dict):
        return await self._p2p.gossip.publish(topic, type_, body)

    def subscribe(self, topic: str):
        return self._p2p.gossip.subscribe(topic)

    def add_stats(self, name: str, fn: Callable[[], dict]) -> None:
        """Counters of a role's own checks, shown under `name` in gossip_stats."""
        self._p2p.gossip.stats_hooks[name] = fn


class ReqRespPort:
    def __init__(self, p2p):
        self._p2p = p2p

    async def request(self, peer_id: str, protocol: str, msg: Any, **kw):
        return await self._p2p.reqresp.request(peer_id, protocol, msg, **kw)

    def set_handler(self, protocol: str, handler) -> None:
        self._p2p.reqresp.set_handler(protocol, handler)

    def bad_frames(self, protocol: str) -> int:
        """Requests on `protocol` refused before any handler saw them (not msgpack, too deep, too large)."""
        return int(self._p2p.reqresp.bad_frames.get(protocol, 0))


class ContentPort:
    """put_bytes / get_bytes / add / get by CID (UnixFS, pinned and announced like `dainode add`)."""

    def __init__(self, store):
        self._store = store

    async def put_bytes(self, data: bytes) -> CID:
        result = await self._store.add(io.BytesIO(data))
        return CID.parse(result["cid"])

    async def hash_bytes(self, data: bytes) -> CID:
        """The CID `put_bytes(data)` will give, computed without storing or announcing anything."""
        return await self._store.hash_bytes(data)

    async def accept_push(self, cid: CID | str, data: bytes) -> bool:
        """Hold bytes a peer pushed ahead of the event naming `cid`, if they hash to it; get_bytes(cid) then
        returns them at once (and a fetch already waiting takes them). False if they do not match."""
        return await self._store.accept_push(str(cid), data)

    async def get_bytes(self, cid: CID, *, limit: int = 16 * 1024 * 1024, providers: list[str] | None = None) -> bytes:
        return await self._store.fetch_bytes(str(cid), limit=limit, providers=providers)

    async def add(self, path) -> CID:
        return CID.parse((await self._store.add(path))["cid"])

    async def get(self, cid: CID, path, *, providers: list[str] | None = None) -> dict:
        return await self._store.get(str(cid), path, providers=providers)


class ChainPort:
    """Typed helpers for the Registry (and, for the task roles, TrainingTask); CIDs in and out as CID objects."""

    def __init__(self, chain):
        self._chain = chain

    @property
    def address(self) -> str:
        return self._chain.address

    async def register_offer(self, kind: str, cid: CID, price_wei: int, *, on_signed=None) -> tuple[int, dict]:
        """Registry.registerOffer, offline-signed; returns (offer id, receipt)."""
        digest, codec = cid_to_chain(cid)
        receipt = await self.transact_journaled(
            "Registry", "registerOffer", REGISTRY_KINDS[kind], digest, codec, int(price_wei), on_signed=on_signed
        )
        return self.offer_id_from(receipt), receipt

    def offer_id_from(self, receipt: dict) -> int:
        for ev in receipt.get("events") or [self._chain.contracts.decode_log(lg) for lg in receipt.get("logs", [])]:
            if ev is not None and ev.name == "OfferRegistered":
                return int(ev.args["offerId"])
        raise ChainError(f"transaction {receipt.get('transactionHash')} registered no offer")

    async def transact_journaled(self, contract: str, fn: str, *args, on_signed=None) -> dict:
        c = self._chain._contract(contract)
        receipt = await self._chain.tx.send(c.address, c.encode_call(fn, *args), what=f"{contract}.{fn}", prefer=contract, on_signed=on_signed)
        return self._decoded(receipt)

    def _decoded(self, receipt: dict) -> dict:
        receipt["events"] = [e for e in (self._chain.contracts.decode_log(lg) for lg in receipt.get("logs", [])) if e is not None]
        self._chain.watcher.poke()
        return receipt

    async def receipt_of(self, tx_hash: str, raw: bytes | None = None) -> dict | None:
        """The receipt of a journaled transaction (re-sent from its signed bytes if the chain lost it);
        None when it can never land (its nonce was used by another transaction)."""
        tx = self._chain.tx
        receipt = await tx.lookup(tx_hash)
        if receipt is None:
            if raw is not None and not await tx.rebroadcast(raw, tx_hash):
                return None
            if raw is None and not await tx.nonces.known(tx_hash):
                return None
            receipt = await tx.wait_receipt(tx_hash, what="journaled transaction")
        return self._decoded(receipt)

    async def withdraw_offer(self, offer_id: int) -> dict:
        return await self._chain.transact("Registry", "withdrawOffer", int(offer_id))

    async def offer(self, offer_id: int) -> ChainOffer:
        owner, kind, price, active = await self._chain.call("Registry", "offer", int(offer_id))
        return ChainOffer(int(offer_id), owner, KIND_NAMES.get(int(kind), "?"), int(price), bool(active))

    async def offer_cid(self, offer_id: int) -> CID | None:
        """The CID the chain records for an offer: its newest OfferRegistered/OfferUpdated event."""
        reg = self._chain._contract("Registry")
        topics = {item["name"]: "0x" + t.hex() for t, item in reg.events.items()}
        flt = {
            "fromBlock": hex(int(self._chain.deployment.get("block", 0))), "toBlock": "latest", "address": reg.address,
            "topics": [[topics["OfferRegistered"], topics["OfferUpdated"]], "0x" + int(offer_id).to_bytes(32, "big").hex()],
        }
        logs = await self._chain.rpc.call("eth_getLogs", flt) or []
        latest = None
        for raw in logs:
            ev = reg.decode_log(raw)
            if ev is not None and not ev.removed:
                latest = ev
        return None if latest is None else cid_from_chain(latest.args["cid"], latest.args["codec"])

    def subscribe(self, consumer: str, contract: str, events: list[str] | None = None, **kw):
        return self._chain.subscribe(consumer, contract, events, **kw)

    async def fund(self, address: str, wei: int) -> None:
        await self._chain.fund_dev(address, wei)


@dataclass(frozen=True)
class Keys:
    """The node's identities as roles may use them: addresses, never raw private keys."""

    address: str
    peer_id: str


@dataclass
class RoleContext:
    gossip: GossipPort
    reqresp: ReqRespPort
    content: ContentPort
    chain: ChainPort | None
    state: Any
    keys: Keys
    data_dir: Any = None
    vault: Any = None  # per-task keys sealed with the node's password (dainode.roles.taskdocs.KeyVault)

    def require_chain(self, role: str) -> ChainPort:
        if self.chain is None:
            raise ConfigError(
                f"role {role!r} needs a chain but this node runs with --chain none; "
                "start it with --chain dev or --chain URL (with chain.deployment_file)", key="chain.endpoint",
            )
        return self.chain

    @classmethod
    def of_node(cls, node) -> "RoleContext":
        return cls(
            gossip=GossipPort(node.p2p),
            reqresp=ReqRespPort(node.p2p),
            content=ContentPort(node.store),
            chain=ChainPort(node.chain) if node.chain is not None else None,
            state=node.state,
            keys=Keys(node.identity.address, node.p2p.peer_id),
            data_dir=node.data_dir,
            vault=_vault(node),
        )


def _vault(node):
    from dainode.identity import ETH_KEYSTORE, KDF_N_LIGHT
    from dainode.roles.taskdocs import KeyVault

    light = False
    try:  # task keys cost what the node's own keystore costs to open (light in tests and the localnet)
        import json

        doc = json.loads((node.data_dir / ETH_KEYSTORE).read_text())
        light = int(doc["crypto"]["kdfparams"]["n"]) <= KDF_N_LIGHT
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return KeyVault(node.data_dir, node.identity.password, light)
