"""Gather a task's evidence on any node: its TrainingTask events by eth_getLogs, every document by CID over bitswap.

The mapping from events to documents is docs/roles.md "What `task verify` reads"; the result is a
``TaskLog`` (dainode/tasks/evidence.py) and, once the key and the test set are revealed, the
``TaskEvidence`` that ``dainode.tasks.verify.verify_task`` recomputes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import trio

from dainode.chain.rpc import to_int
from dainode.chain.training_task import event_cids
from dainode.errors import DainodeError, TaskError
from dainode.store.cid import CID
from dainode.tasks.evidence import TaskEvent, TaskLog, build_log
from dainode.tasks.verify import Difference, PostedRound, PostedUpdate, TaskEvidence

log = logging.getLogger("dainode.audit")

LOG_CHUNK = 5000
DOC_LIMIT = 64 * 1024 * 1024
FETCH_TIMEOUT_S = 60.0
TASK_CONTRACT = "TrainingTask"


@dataclass
class Gathered:
    log: TaskLog
    evidence: TaskEvidence | None
    problems: list[Difference] = field(default_factory=list)  # documents that could not be fetched or read


class Gatherer:
    """Reads through the node's chain service (``node.chain``) and content port (``ContentPort``)."""

    def __init__(self, chain, content, *, fetch_timeout_s: float = FETCH_TIMEOUT_S):
        self.chain = chain
        self.content = content
        self.fetch_timeout_s = fetch_timeout_s

    @property
    def task_address(self) -> str:
        return self.chain.contracts[TASK_CONTRACT].address

    async def events(self, task_id: int, *, from_block: int | None = None) -> list[TaskEvent]:
        """Every TrainingTask event of ``task_id`` (topic 1 = the task id) from the deployment block to the head."""
        c = self.chain.contracts[TASK_CONTRACT]
        if not c.address:
            raise TaskError("TrainingTask has no deployed address on this node's chain; check chain.deployment_file")
        first = int(self.chain.deployment.get("block", 0)) if from_block is None else from_block
        head = to_int(await self.chain.rpc.call("eth_blockNumber"))
        topic = "0x" + int(task_id).to_bytes(32, "big").hex()
        out: list[TaskEvent] = []
        while first <= head:
            upto = min(head, first + LOG_CHUNK - 1)
            raw = await self.chain.rpc.call("eth_getLogs", {"fromBlock": hex(first), "toBlock": hex(upto),
                                                            "address": c.address, "topics": [None, topic]}) or []
            for entry in raw:
                ev = c.decode_log(entry)
                if ev is None or ev.removed or int(ev.args.get("taskId", -1)) != int(task_id):
                    continue
                out.append(TaskEvent(ev.name, dict(ev.args), ev.block_number, ev.log_index,
                                     {k: str(v) for k, v in event_cids(ev).items()}, ev.tx_hash))
            first = upto + 1
        return out

    async def task_log(self, task_id: int) -> TaskLog:
        tl = build_log(task_id, await self.events(task_id))
        if not tl.model_provider:
            raise TaskError(f"no task {task_id} on this chain's TrainingTask {self.task_address}: no TaskOpened event; "
                            "check the id (`dainode task list` on the model provider's node)")
        return tl

    async def fetch(self, cid: str, what: str) -> bytes:
        with trio.move_on_after(self.fetch_timeout_s) as scope:
            return await self.content.get_bytes(CID.parse(cid), limit=DOC_LIMIT)
        if scope.cancelled_caught:
            raise TaskError(f"{what} {cid} could not be fetched within {self.fetch_timeout_s:g} s: no peer serves it; "
                            "connect this node to the task's model provider (dainode connect) and retry")
        raise AssertionError("unreachable")

    async def gather(self, task_id: int) -> Gathered:
        """The log, and the evidence when the task has revealed its key and test set."""
        tl = await self.task_log(task_id)
        problems: list[Difference] = []
        if not tl.revealed:
            return Gathered(tl, None, problems)
        docs: dict[str, bytes | None] = {}

        async def get(cid: str, what: str) -> bytes | None:
            if not cid:
                problems.append(Difference(what, "no CID on chain", "a CID", "the event names no document"))
                return None
            if cid not in docs:
                try:
                    docs[cid] = await self.fetch(cid, what)
                except DainodeError as exc:
                    docs[cid] = None
                    problems.append(Difference(what, cid, "not fetchable", str(exc)))
            return docs[cid]

        # Everything the task names, fetched concurrently (a few dozen documents).
        wanted: list[tuple[str, str]] = [(tl.cids.get("manifest", ""), "manifest"), (tl.cids.get("encPublicKey", ""), "task public key"),
                                         (tl.cids.get("hePublicKey", ""), "initial model"), (tl.key.cids.get("cid", ""), "revealed key"),
                                         (tl.test_set.cids.get("cid", ""), "revealed test set")]
        if tl.split is not None:
            wanted.append((tl.split.cids.get("report", ""), "split report"))
        wanted += [(ev.cids.get("cid", ""), f"round {r} result") for r, ev in sorted(tl.models.items())]
        wanted += [(u.cid, f"round {u.round} update of match {u.match_id}") for u in tl.updates]
        await _all(get, wanted)
        results = {}
        for r, ev in sorted(tl.models.items()):
            raw = docs.get(ev.cids.get("cid", ""))
            results[r] = raw
            model_cid = _model_cid(raw)
            if model_cid:
                await get(model_cid, f"global model {r + 1}")
            elif raw is not None:
                problems.append(Difference(f"round {r} result", ev.cids.get("cid"), "no model_cid",
                                           "the round result names no global model"))
        he_cid = _he_secret_cid(docs.get(tl.key.cids.get("cid", "")))
        if he_cid:
            await get(he_cid, "revealed CKKS key")
        rows = await self._offer_rows(tl)
        ev = self._evidence(tl, docs, results, rows, problems)
        return Gathered(tl, ev, problems)

    def _evidence(self, tl: TaskLog, docs, results, rows, problems) -> TaskEvidence | None:
        from dainode.tasks.keys import TaskKey, TaskPublicKey
        from dainode.tasks.manifest import Manifest
        from dainode.tasks.sealed import TaskRef

        def need(cid: str, what: str) -> bytes:
            raw = docs.get(cid)
            if raw is None:
                raise _Missing(what)
            return raw

        try:
            manifest = Manifest.from_bytes(need(tl.cids.get("manifest", ""), "manifest"))
            pub = TaskPublicKey.from_document(json.loads(need(tl.cids.get("encPublicKey", ""), "task public key")))
            reveal = need(tl.key.cids.get("cid", ""), "revealed key")
            try:
                raw_key = TaskKey.from_reveal_document(json.loads(reveal)).reveal_bytes()
            except (ValueError, UnicodeDecodeError, DainodeError):
                raw_key = reveal  # raw 32 bytes, or a wrong reveal: verify_task names it
            test_bytes = need(tl.test_set.cids.get("cid", ""), "revealed test set")
        except _Missing as exc:
            problems.append(Difference(str(exc), "not available", "needed", "verify cannot run without it"))
            return None
        except (DainodeError, ValueError, UnicodeDecodeError) as exc:
            problems.append(Difference("task documents", "unreadable", "valid", str(exc)))
            return None
        task = TaskRef(int(self.chain.chain_id), self.task_address, tl.task_id)
        R = manifest.task.rounds
        models = {0: docs.get(tl.cids.get("hePublicKey", ""))}
        for r, raw in results.items():
            mc = _model_cid(raw)
            models[r + 1] = docs.get(mc) if mc else None
        rounds = []
        for t in range(R):
            if t not in tl.models:
                continue
            pub_block = tl.models[t].block
            ups = [PostedUpdate(u.match_id, u.round, u.sender, u.cid, docs.get(u.cid), after_close=u.block >= pub_block)
                   for u in tl.updates_of(t)]
            rounds.append(PostedRound(t, models.get(t) or b"", ups, results.get(t) or b""))
        split = docs.get(tl.split.cids.get("report", "")) if tl.split is not None else None
        from dainode.tasks.evidence import bonus_of

        return TaskEvidence(
            manifest=manifest, task=task, model_provider=tl.model_provider, task_public_key=pub, revealed_key=bytes(raw_key),
            test_set=test_bytes, test_set_cid=tl.test_set.cids["cid"], salt=bytes(tl.test_set.args["salt"]),
            commitment=tl.params["test_set_commitment"], match_ids=sorted(tl.matches), rounds=rounds,
            final_model=models.get(R) or b"", bonus_wei=bonus_of(tl),
            posted_bonuses={i: b for i, b in enumerate(tl.posted_bonuses)}, split_report=split or b"",
            match_rows=rows or None,
            he_secret=docs.get(_he_secret_cid(docs.get(tl.key.cids.get("cid", ""))) or ""),
            he_fingerprint=_he_fingerprint(docs.get(tl.cids.get("encPublicKey", ""))),
        )

    async def _offer_rows(self, tl: TaskLog) -> dict[int, int]:
        """Each match's data offer rows (``dataset.rows`` of its offer document), for the ``bad_examples`` check."""
        rows: dict[int, int] = {}
        for mid, m in sorted(tl.matches.items()):
            try:
                cid = await self._offer_cid(m.data_offer_id)
                if cid is None:
                    continue
                doc = json.loads(await self.fetch(str(cid), f"data offer {m.data_offer_id}"))
                rows[mid] = int(doc["dataset"]["rows"])
            except (DainodeError, ValueError, KeyError, TypeError) as exc:
                log.info("task %d: rows of data offer %d unknown (%s); n_examples unchecked", tl.task_id, m.data_offer_id, exc)
        return rows

    async def _offer_cid(self, offer_id: int) -> CID | None:
        reg = self.chain.contracts["Registry"]
        topics = {item["name"]: "0x" + t.hex() for t, item in reg.events.items()}
        flt = {"fromBlock": hex(int(self.chain.deployment.get("block", 0))), "toBlock": "latest", "address": reg.address,
               "topics": [[topics["OfferRegistered"], topics["OfferUpdated"]], "0x" + int(offer_id).to_bytes(32, "big").hex()]}
        latest = None
        for raw in await self.chain.rpc.call("eth_getLogs", flt) or []:
            ev = reg.decode_log(raw)
            if ev is not None and not ev.removed:
                latest = ev
        if latest is None:
            return None
        cids = event_cids(latest)
        return cids.get("cid")


class _Missing(Exception):
    pass


def _json_field(raw: bytes | None, *path: str):
    try:
        doc = json.loads(raw) if raw else None
        for p in path:
            doc = doc.get(p) if isinstance(doc, dict) else None
        return doc if isinstance(doc, str) and doc else None
    except (ValueError, UnicodeDecodeError):
        return None


def _he_secret_cid(reveal: bytes | None) -> str | None:
    """An he task's key reveal names the CKKS secret context it published."""
    return _json_field(reveal, "he_secret_context_cid")


def _he_fingerprint(key_doc: bytes | None) -> str | None:
    return _json_field(key_doc, "he", "fingerprint")


def _model_cid(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    mc = doc.get("model_cid") if isinstance(doc, dict) else None
    return mc if isinstance(mc, str) and mc else None


async def _all(get, wanted: list[tuple[str, str]], limit: int = 8) -> None:
    sem = trio.Semaphore(limit)

    async def one(cid: str, what: str) -> None:
        async with sem:
            await get(cid, what)

    async with trio.open_nursery() as n:
        for cid, what in wanted:
            n.start_soon(one, cid, what)
