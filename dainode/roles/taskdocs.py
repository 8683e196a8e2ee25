"""Shared pieces of the task roles: the task as the chain opened it, documents by CID with limits, key vault, gossip types."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import trio

from dainode import metrics
from dainode.chain.training_task import event_cids
from dainode.errors import DainodeError, FetchTimeout, TaskError
from dainode.ml.preprocess import canonical_json
from dainode.store.cid import CID
from dainode.tasks.keys import TaskKey, TaskPublicKey, task_key_path
from dainode.tasks.manifest import Manifest
from dainode.tasks.sealed import TaskRef

log = logging.getLogger("dainode.tasks")

TASKS_TOPIC = "/dai/1/tasks"
GOSSIP_TASK, GOSSIP_ROUND, GOSSIP_DONE = "task", "round", "task_done"
REJECTION_SCHEMA = "dainode.rejection/1"
FETCH_TIMEOUT_S = 10.0
MAX_DOC = 1 << 20
MAX_BLOB = 64 << 20


async def fetch(ctx, cid: CID | str, *, limit: int = MAX_BLOB, timeout: float = FETCH_TIMEOUT_S) -> bytes:
    """Bytes of `cid` (hash-checked by the store) within `timeout` s, else FetchTimeout."""
    with trio.move_on_after(timeout):
        return await ctx.content.get_bytes(CID.parse(str(cid)), limit=limit)
    raise FetchTimeout(f"{cid} could not be fetched within {timeout:g} s; is a node that holds it connected?")


async def fetch_json(ctx, cid: CID | str, *, timeout: float = FETCH_TIMEOUT_S) -> dict:
    raw = await fetch(ctx, cid, limit=MAX_DOC, timeout=timeout)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TaskError(f"{cid} is not a JSON document: {exc}") from None
    if not isinstance(doc, dict):
        raise TaskError(f"{cid} is not a JSON object")
    return doc


async def put_json(ctx, doc: dict) -> CID:
    return await ctx.content.put_bytes(canonical_json(doc))


@dataclass
class OpenedTask:
    """A task as `TaskOpened` describes it, with its manifest and public key fetched and checked."""

    ref: TaskRef
    model_provider: str
    pool_wei: int
    manifest: Manifest
    manifest_cid: str
    key_cid: str
    model0_cid: str
    public_key: TaskPublicKey
    params: tuple
    block: int

    @property
    def task_id(self) -> int:
        return self.ref.task_id


async def opened_task(ctx, tc, task_id: int) -> OpenedTask:
    """Read TaskOpened of `task_id` from the chain and fetch the manifest and the task public key it names."""
    evs = await tc.logs(task_id, ["TaskOpened"])
    if not evs:
        raise TaskError(f"task {task_id} does not exist on TrainingTask {tc.address}; see `dainode task list`")
    ev = evs[0]
    cids = event_cids(ev)
    raw = await fetch(ctx, cids["manifest"], limit=MAX_DOC)
    manifest = Manifest.from_bytes(raw, source=f"manifest {cids['manifest']}")
    pub = TaskPublicKey.from_document(await fetch_json(ctx, cids["encPublicKey"]))
    return OpenedTask(
        ref=TaskRef(tc.chain_id, tc.address, int(task_id)), model_provider=ev.args["modelProvider"],
        pool_wei=int(ev.args["pool"]), manifest=manifest, manifest_cid=str(cids["manifest"]),
        key_cid=str(cids["encPublicKey"]), model0_cid=str(cids.get("hePublicKey", "")), public_key=pub,
        params=tuple(ev.args["params"]),
        block=ev.block_number,
    )


def rejection_document(ref: TaskRef, round_: int, match_id: int, update_cid: str, reason: str, detail: str) -> dict:
    return {"schema": REJECTION_SCHEMA, "task": ref.fields(), "round": int(round_), "match_id": int(match_id),
            "update_cid": str(update_cid), "reason": reason, "detail": str(detail)[:2000]}


class KeyVault:
    """Per-task X25519 keys sealed with the node's password under <data-dir>/keys/tasks/ (never the identity keys)."""

    def __init__(self, data_dir: Path, password: str, light_kdf: bool):
        self.data_dir, self._password, self.light_kdf = Path(data_dir), password, light_kdf
        self._cache: dict[str, TaskKey] = {}

    def __repr__(self) -> str:
        return f"KeyVault({self.data_dir})"

    def save(self, ref: str, key: TaskKey) -> Path:
        path = task_key_path(self.data_dir, ref)
        if path.exists():  # a resumed step saves the same key again; another key under that name is a bug
            if self.load(ref).reveal_bytes() != key.reveal_bytes():
                raise TaskError(f"task key {ref!r} already exists with another key; refusing to replace it")
            return path
        key.save(self.data_dir, ref, self._password, light_kdf=self.light_kdf)
        self._cache[ref] = key
        return path

    def load(self, ref: str) -> TaskKey:
        if ref not in self._cache:
            try:
                self._cache[ref] = TaskKey.load(self.data_dir, ref, self._password)
            except (OSError, DainodeError) as exc:
                raise TaskError(f"cannot load task key {ref!r} from {self.data_dir}/keys/tasks: {exc}") from None
        return self._cache[ref]


def vault_of(ctx) -> KeyVault:
    v = getattr(ctx, "vault", None)
    if v is None:
        raise TaskError("this node has no key vault for task keys (started without an identity?)")
    return v


def shared(ctx, name: str, factory):
    """One object per node shared by its roles (e.g. the withdraw lock of a data+compute node)."""
    store = getattr(ctx, "_shared", None)
    if store is None:
        store = {}
        object.__setattr__(ctx, "_shared", store)
    if name not in store:
        store[name] = factory()
    return store[name]


async def retrying(what: str, fn, *args) -> None:
    """Run an event follower forever: a chain endpoint outage is logged and retried with backoff, never fatal."""
    from dainode.errors import ChainError

    backoff = 1.0
    while True:
        try:
            await fn(*args)
            return
        except ChainError as exc:
            log.warning("%s: chain events unavailable (%s); retrying in %.0f s", what, exc, backoff)
        await trio.sleep(backoff)
        backoff = min(backoff * 2, 30.0)


def node_roles(ctx) -> set:
    """Names of the task roles this node runs (each registers itself when built)."""
    return shared(ctx, "roles", set)


async def auto_withdraw(ctx, tc, why: str) -> dict | None:
    """withdraw() this node's credited balance on TrainingTask if there is any (one at a time per node)."""
    lock = shared(ctx, "withdraw_lock", trio.Lock)
    async with lock:
        bal = await tc.balance_of(tc.account)
        if bal <= 0:
            return None
        receipt = await tc.send("withdraw")
        metrics.payout(bal)
        log.info("withdrew %d wei from TrainingTask (%s), tx %s", bal, why, receipt["transactionHash"])
        return {"amount_wei": bal, "tx": receipt["transactionHash"]}
