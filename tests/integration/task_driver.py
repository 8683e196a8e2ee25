"""Test-only: drive a small training task on a real chain with the TrainingTask binding, documents on a real daemon's IPFS.

It plays the model provider and the compute providers (script accounts) and sends the data
providers' transactions with their nodes' accounts (unlocked from the test nodes' keystores:
the test owns those nodes), following docs/roles.md document by document, so that `task verify`
on any other node sees exactly what a real task leaves behind. ``tamper_split`` makes the model
provider post a self-consistent but false split (weights swapped in the report, bonuses to match).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio
from eth_account import Account

from dainode.chain.consent import MatchConsent, sign_consent
from dainode.chain.contracts import load_contracts
from dainode.chain.nonce import NonceManager
from dainode.chain.rpc import RpcClient
from dainode.chain.signer import Signer
from dainode.chain.training_task import TaskParams, TrainingTaskBinding, cid_to_chain
from dainode.chain.tx import TxManager
from dainode.ml.datasets import load_builtin
from dainode.ml.preprocess import canonical_json, shard_iid
from dainode.store.cid import CID
from dainode.tasks.documents import ModelBinding, UpdateBinding, open_update, seal_global_model, seal_update
from dainode.tasks.keys import TaskKey
from dainode.tasks.manifest import parse_manifest
from dainode.tasks.rounds import aggregate_round, compute_update, initial_params
from dainode.tasks.sealed import TaskRef
from dainode.tasks.split import SplitReport, integer_split, make_split
from dainode.tasks.testset import encode_test_set, load_test_set, new_salt, test_set_commitment

E = 10**18
DATA_PRICE = E // 10
COMPUTE_PRICE = E // 20
POOL = 2 * E


def manifest_doc(rounds: int = 2) -> dict:
    return {
        "task": {"name": "digits-verify", "rounds": rounds, "providers": 2, "local_epochs": 1, "round_window_s": 30,
                 "quorum": 2, "aggregation": "fedavg", "privacy": "fl", "reward_pool_wei": str(POOL),
                 "max_data_price_wei": str(DATA_PRICE), "max_compute_price_wei": str(COMPUTE_PRICE), "seed": 0, "aggregation_params": {}},
        "model": {"kind": "mlp", "layers": [64, 16, 10], "lr": 0.5, "batch": 32},
        "data": {"features": 64, "label_classes": list(range(10)), "min_rows": 50, "min_quality": 0.5},
        "test": {"dataset": "digits", "feature_scale": 0.0625, "split": {"fraction": 0.2, "seed": 0}},
    }


@dataclass
class Party:
    account: object
    tx: TxManager = None
    tt: TrainingTaskBinding = None

    @property
    def address(self) -> str:
        return self.account.address


@dataclass
class DriveResult:
    task_id: int
    bonuses: list[int]
    honest_bonuses: list[int]
    shards: dict = field(default_factory=dict)


class TaskDriver:
    def __init__(self, url: str, deployment: dict, put, dp_accounts: list):
        """``put(bytes) -> CID string`` adds a document to a daemon's IPFS; ``dp_accounts`` the data providers' accounts."""
        self.url = url
        self.deployment = deployment
        self.put_sync = put
        self.contracts = load_contracts().with_addresses(deployment["contracts"])
        self.dps = [Party(a) for a in dp_accounts]
        self.mp = Party(Account.create())
        self.cps = [Party(Account.create()) for _ in dp_accounts]

    async def put(self, data: bytes) -> CID:
        return CID.parse(await trio.to_thread.run_sync(self.put_sync, bytes(data)))

    async def _setup(self, rpc: RpcClient, chain_id: int) -> None:
        for p in [self.mp, *self.cps, *self.dps]:
            if p.tx is None:
                await rpc.call("anvil_setBalance", p.address, hex(100 * E))
                p.tx = TxManager(rpc, Signer(p.account), NonceManager(rpc, p.address), self.contracts, chain_id=chain_id)
                p.tt = TrainingTaskBinding(p.tx, self.contracts)

    async def _register(self, p: Party, kind: int, doc: dict, price: int) -> int:
        cid = await self.put(canonical_json(doc))
        reg = self.contracts["Registry"]
        receipt = await p.tx.send(reg.address, reg.encode_call("registerOffer", kind, *cid_to_chain(cid), price), what="registerOffer")
        for lg in receipt["logs"]:
            ev = self.contracts.decode_log(lg)
            if ev is not None and ev.name == "OfferRegistered":
                return int(ev.args["offerId"])
        raise AssertionError("no OfferRegistered")

    def run(self, *, tamper_split: bool = False, rounds: int = 2, finalize: bool = False) -> DriveResult:
        return trio.run(self._run, tamper_split, rounds, finalize)

    async def _run(self, tamper_split: bool, rounds: int, finalize: bool) -> DriveResult:
        rpc = RpcClient(self.url)
        try:
            chain_id = int(await rpc.call("eth_chainId"), 16)
            await self._setup(rpc, chain_id)
            return await self._task(rpc, chain_id, tamper_split, rounds, finalize)
        finally:
            await rpc.aclose()

    async def _task(self, rpc, chain_id, tamper_split, rounds, finalize) -> DriveResult:
        manifest = parse_manifest(manifest_doc(rounds))
        n = len(self.dps)
        ds = load_builtin("digits")
        x = (ds.x / 16.0).astype("float32")
        parts = shard_iid(len(ds), n, seed=5)
        shards = {m: (x[s[:150]], ds.y[s[:150]]) for m, s in enumerate(parts)}
        data_offers = [await self._register(dp, 0, {"schema": "dainode.data-offer/1", "dataset": {"rows": 150}}, DATA_PRICE)
                       for dp in self.dps]
        compute_offers = [await self._register(cp, 1, {"schema": "dainode.compute-offer/1", "capacity": 1}, COMPUTE_PRICE)
                          for cp in self.cps]
        # --- create (MP) ---
        key = TaskKey.generate()
        test = load_test_set(manifest)
        test_bytes = encode_test_set(test.x, test.y)
        test_cid = await self.put(test_bytes)
        salt = new_salt()
        manifest_cid = await self.put(manifest.to_bytes())
        key_cid = await self.put(canonical_json(key.public.to_document()))
        tt_addr = self.mp.tt.address
        head = await rpc.call("eth_getBlockByNumber", "latest", False)
        now = int(head["timestamp"], 16)
        # the task id is only known after openTask; model 0 is bound to it, so predict it (tests run one driver at a time)
        task_id = int(await self.mp.tt._call("nextTaskId"))
        ref = TaskRef(chain_id, tt_addr, task_id)
        w = initial_params(manifest)
        model0 = await self.put(seal_global_model(ModelBinding(ref, 0, self.mp.address), w, [key.public.key]))
        params = TaskParams(manifest_cid, model0, key_cid, test_set_commitment(test_cid, salt), rounds, 60, 60, 60,
                            now + TaskParams.span(rounds, 60, 60) + 86400, quorum=n)
        got = await self.mp.tt.open_task(params, POOL)
        assert got == task_id, (got, task_id)
        # --- matching ---
        for m in range(n):
            consent = MatchConsent(task_id, data_offers[m], compute_offers[m], DATA_PRICE, COMPUTE_PRICE, now + 3600)
            await self.mp.tt.record_match(consent, sign_consent(self.dps[m].account, consent, chain_id, tt_addr),
                                          sign_consent(self.cps[m].account, consent, chain_id, tt_addr))
        await self.mp.tt.start_training(task_id)
        for m in range(n):
            blob = await self.put(b"sealed-for-its-compute-provider-only:" + str(m).encode())
            await self.dps[m].tt.provide_data(task_id, m, blob, key_cid)
        # --- rounds ---
        outcomes = []
        for t in range(rounds):
            opened, cids = [], {}
            for m in range(n):
                res = compute_update(manifest, w, *shards[m], round=t, match_id=m)
                b = UpdateBinding(ref, m, t, self.cps[m].address)
                blob = seal_update(b, res.update, res.n_examples, [key.public.key], train_loss=res.mean_loss)
                cid = await self.put(blob)
                await self.cps[m].tt.submit_update(task_id, m, t, cid)
                opened.append(open_update(blob, key.private, b, manifest.model_spec, max_examples=150))
                cids[m] = str(cid)
            out = aggregate_round(manifest, t, w, opened, (test.x, test.y))
            outcomes.append(out)
            w = out.params
            model_cid = await self.put(seal_global_model(ModelBinding(ref, t + 1, self.mp.address), w, [key.public.key]))
            result = out.result(cids, model_cid=str(model_cid))
            await self.mp.tt.publish_global_model(task_id, t, await self.put(result.to_bytes()))
        # --- split, reveal ---
        state = await self.mp.tt.task(task_id)
        report = make_split(manifest, ref, state.bonus, outcomes, list(range(n)), (test.x, test.y))
        honest = [report.bonuses[m] for m in range(n)]
        if tamper_split:
            report = _swap_weights(report)
        bonuses = [report.bonuses[m] for m in range(n)]
        report_cid = await self.put(report.to_bytes())
        await self.mp.tt.post_split(task_id, bonuses, report_cid)
        reveal_cid = await self.put(canonical_json(key.reveal_document()))
        await self.mp.tt.reveal_key(task_id, reveal_cid)
        await self.mp.tt.reveal_test_set(task_id, test_cid, salt)
        if finalize:
            await rpc.call("evm_increaseTime", 61)
            await rpc.call("evm_mine")
            await self.mp.tt.finalize(task_id, bonuses)
        return DriveResult(task_id, bonuses, honest, shards)


def _swap_weights(report: SplitReport) -> SplitReport:
    """The first and the last match swap shares and weights; the bonuses follow, so the report is self-consistent."""
    matches = [dict(d) for d in report.matches]
    a, b = matches[0], matches[-1]
    for k in ("share", "weight"):
        a[k], b[k] = b[k], a[k]
    bonuses = integer_split(report.bonus_wei, {int(d["match_id"]): int(d["weight"]) for d in matches})
    for d in matches:
        d["bonus_wei"] = bonuses[int(d["match_id"])]
    return replace(report, matches=tuple(matches))


def daemon_put(node):
    """``put`` for TaskDriver: write the bytes to a temp file and `store_add` it on ``node``."""
    def put(data: bytes) -> str:
        with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir(), delete=False) as f:
            f.write(data)
            path = f.name
        try:
            return node.rpc("store_add", path=path)["cid"]
        finally:
            Path(path).unlink()
    return put
