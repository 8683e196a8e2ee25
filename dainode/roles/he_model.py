"""The model provider's he side: the task's CKKS key pair (sealed on disk), its public documents, opening updates, publishing models."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import trio

from dainode.crypto.keys import read_sealed, write_sealed
from dainode.errors import DainodeError, TaskError
from dainode.roles.taskdocs import put_json, vault_of
from dainode.tasks.keys import task_key_path

log = logging.getLogger("dainode.tasks")

SEAL_KIND = "task-ckks"  # authenticated in the sealed file


def _path(vault, ref: str) -> Path:
    return task_key_path(vault.data_dir, ref).with_suffix(".ckks")


def _load_or_create(vault, ref: str):
    """The CKKS secret context saved under ``ref`` (made and sealed with the node's password the first time)."""
    from dainode.crypto import he_linear as hel
    from dainode.crypto.ckks import CkksContext

    path = _path(vault, ref)
    if path.exists():
        return CkksContext.from_bytes(read_sealed(path, vault._password, SEAL_KIND))
    ctx = hel.create_he_context()
    # the whole context (secret + relinearisation key): a resumed task_create republishes the same evaluation context
    write_sealed(path, ctx.to_bytes(), vault._password, SEAL_KIND, light_kdf=vault.light_kdf)
    return ctx


async def he_setup(role, ref: str, manifest) -> dict:
    """At task_create: make (or reload after a restart) the CKKS key pair, publish the evaluation context and the
    encrypted initial model; returns the ``he`` section of the task key document."""
    from dainode.crypto import he_linear as hel
    from dainode.tasks.he_task import HeTaskDoc, encrypted_model_blob
    from dainode.tasks.rounds import initial_params

    ctx = role.ctx
    key_ctx = await trio.to_thread.run_sync(_load_or_create, vault_of(ctx), ref)
    eval_bytes = await trio.to_thread.run_sync(hel.eval_context_bytes, key_ctx)
    ctx_cid = await ctx.content.put_bytes(eval_bytes)
    blob = await trio.to_thread.run_sync(lambda: encrypted_model_blob(manifest, 0, key_ctx, initial_params(manifest)))
    m0 = await ctx.content.put_bytes(blob)
    log.info("he task: CKKS evaluation context %s (%d bytes, no Galois keys), encrypted model 0 %s (%d bytes)",
             ctx_cid, len(eval_bytes), m0, len(blob))
    return HeTaskDoc(str(ctx_cid), str(m0), key_ctx.fingerprint.hex(), len(eval_bytes), ctx.keys.peer_id).to_document()


class HeKeyHolder:
    """One he task's key holder inside its TaskRun: opens updates, encrypts global models, reveals the CKKS key."""

    def __init__(self, run, ref: str):
        self.run, self.ctx, self.ref = run, run.ctx, ref
        self.key_ctx = _load_or_create(vault_of(self.ctx), ref)
        self.params: dict[int, np.ndarray] = {}  # round -> the global model it trains from (plaintext, key holder only)
        self._have = trio.Event()
        self.sizes: dict[str, int] = {}
        self.refreshes: dict[tuple[int, int], set] = {}  # (round, match) -> epochs refreshed

    def set_params(self, t: int, params) -> None:
        self.params[int(t)] = np.asarray(params, np.float32)
        self._have.set()
        self._have = trio.Event()

    async def open(self, blob: bytes, binding, rnd: int, max_examples):
        from dainode.tasks.he_task import open_he_update

        with trio.move_on_after(120):
            while rnd not in self.params:
                await self._have.wait()
        if rnd not in self.params:
            raise TaskError(f"no global model of round {rnd} to apply an he update to")
        w, m = self.params[rnd], self.run.manifest
        self.sizes[f"update_{rnd}_{binding.match_id}"] = len(blob)
        return await trio.to_thread.run_sync(
            lambda: open_he_update(blob, self.run.key.private, binding, m, self.key_ctx, w, max_examples=max_examples))

    async def publish(self, t: int, params) -> str:
        """The encrypted global model of round ``t`` (the next round's input, fresh: full depth again) on IPFS."""
        from dainode.tasks.he_task import encrypted_model_blob

        self.set_params(t, params)
        blob = await trio.to_thread.run_sync(lambda: encrypted_model_blob(self.run.manifest, t, self.key_ctx, params))
        self.sizes[f"model_{t}"] = len(blob)
        return str(await self.ctx.content.put_bytes(blob))

    async def refresh(self, msg: dict, peer: str) -> dict:
        """A computation provider is out of depth after a local epoch: decrypt its masked gradients so far, take the
        steps, answer with the next epoch's freshly encrypted model (CIDs both ways; only ciphertexts move)."""
        from dainode.roles import negotiate as neg
        from dainode.roles.taskdocs import fetch
        from dainode.tasks.documents import UpdateBinding
        from dainode.tasks.he_task import encrypted_wb_blob, refreshed_wb

        run = self.run
        mid, rnd, epoch = (neg.need(msg, k, int) for k in ("match_id", "round", "epoch"))
        m = run.matches.get(mid)
        if m is None or (m.get("compute_peer_id") and m["compute_peer_id"] != peer):
            raise neg.Refused("wrong_task", f"peer {peer} computes no match {mid} of task {run.task_id}")
        if rnd not in self.params or epoch >= run.manifest.task.local_epochs - 1:
            raise neg.Refused("malformed", f"no refresh for round {rnd} epoch {epoch} now")
        done = self.refreshes.setdefault((rnd, mid), set())
        if epoch in done:
            raise neg.Refused("busy", f"match {mid} already refreshed round {rnd} epoch {epoch}")
        blob = await fetch(self.ctx, neg.need(msg, "request_cid", str), timeout=60)
        binding = UpdateBinding(run.ref, mid, rnd, m["compute_provider"])
        w = self.params[rnd]
        try:
            out = await trio.to_thread.run_sync(lambda: encrypted_wb_blob(
                rnd, self.key_ctx, refreshed_wb(blob, run.key.private, binding, run.manifest, self.key_ctx, w, epoch),
                epoch=epoch + 1))
        except DainodeError as exc:
            raise neg.Refused("malformed", f"refresh request of match {mid} round {rnd}: {exc}") from None
        done.add(epoch)
        cid = await self.ctx.content.put_bytes(out)
        self.sizes[f"refresh_{rnd}_{mid}_{epoch}"] = len(blob) + len(out)
        log.info("task %d round %d: refreshed match %d after epoch %d (%d + %d bytes)", run.task_id, rnd, mid, epoch,
                 len(blob), len(out))
        return neg.reply("he_refresh", model_cid=str(cid))

    def round_sizes(self, t: int) -> dict:
        """Bytes of round ``t``: the encrypted updates received and the encrypted model published for round t + 1."""
        ups = [v for k, v in self.sizes.items() if k.startswith(f"update_{t}_")]
        refs = [v for k, v in self.sizes.items() if k.startswith(f"refresh_{t}_")]
        return {"he_updates_bytes": sum(ups), "he_updates": len(ups), "he_model_bytes": self.sizes.get(f"model_{t + 1}", 0),
                "he_refreshes": len(refs), "he_refresh_bytes": sum(refs)}

    async def reveal(self) -> str:
        """The CKKS secret context on IPFS, for the key reveal document: anyone can then decrypt and recompute."""
        from dainode.crypto import he_linear as hel

        return str(await self.ctx.content.put_bytes(hel.secret_context_bytes(self.key_ctx)))


def key_holder(run) -> HeKeyHolder | None:
    """The run's key holder if its task is an he task (the CKKS key is named in the task record's ``he_ref``)."""
    if run.manifest.task.privacy != "he":
        return None
    rec = run.ctx.state.get_task(str(run.task_id))
    ref = (rec.doc if rec else {}).get("he_ref")
    if not ref:
        raise TaskError(f"task {run.task_id} is an he task but its record names no CKKS key (he_ref)")
    try:
        return HeKeyHolder(run, ref)
    except (OSError, DainodeError) as exc:
        raise TaskError(f"cannot load the CKKS key of task {run.task_id}: {exc}") from None


async def put_key_doc(role, key, ref: str, manifest):
    """The task public key document; an he task's carries the ``he`` section (context, encrypted model 0)."""
    doc = key.public.to_document()
    if manifest.task.privacy == "he":
        doc["he"] = await he_setup(role, ref, manifest)
    return await put_json(role.ctx, doc)


async def on_he_refresh(role, msg: dict, peer: str) -> dict:
    """The model role's ``he_refresh`` handler: route to the task's key holder."""
    from dainode.roles import negotiate as neg

    task_id = neg.need(msg, "task_id", int)
    run = role.runs.get(task_id)
    if run is None or getattr(run, "he", None) is None:
        raise neg.Refused("wrong_task", f"this node runs no he task {task_id}")
    return await run.he.refresh(msg, peer)
