"""The he side of the data and computation providers: encrypt the rows under the task's CKKS key; train on ciphertexts only."""

from __future__ import annotations

import logging

import numpy as np
import trio

from dainode.errors import CryptoError, TaskError
from dainode.roles.taskdocs import fetch, fetch_json

log = logging.getLogger("dainode.tasks")

CONTEXT_TIMEOUT_S = 60.0
MODEL_TIMEOUT_S = 60.0


async def he_context(ctx, task):
    """The task's evaluation context (public + relinearisation keys) named by its key document, checked."""
    from dainode.crypto import he_linear as hel
    from dainode.crypto.ckks import CkksContext
    from dainode.tasks.he_task import he_doc_of

    doc = he_doc_of(await fetch_json(ctx, task.key_cid))
    raw = await fetch(ctx, doc.context_cid, timeout=CONTEXT_TIMEOUT_S)

    def parse():
        c = hel.check_he_context(CkksContext.from_bytes(raw))
        if c.has_secret_key:
            raise TaskError("the task's published CKKS context holds a secret key; refusing it")
        if c.fingerprint.hex() != doc.fingerprint:
            raise TaskError("the task's CKKS context does not match the fingerprint its key document names")
        return c

    try:
        return doc, await trio.to_thread.run_sync(parse)
    except CryptoError as exc:
        raise TaskError(f"task {task.task_id}: unusable CKKS context {doc.context_cid}: {exc}") from None


# --- data provider -----------------------------------------------------------------------------


async def seal_data(ctx, task, binding, x, y, recipients) -> bytes:
    """The rows CKKS-encrypted under the task's public context, then sealed for the computation provider."""
    from dainode.crypto import he_linear as hel
    from dainode.tasks.he_task import he_kind, seal_he_data

    _, pub = await he_context(ctx, task)
    kind = he_kind(task.manifest)
    y = np.asarray(y).reshape(-1)
    if not np.all(np.isin(y, (0, 1))):
        raise TaskError(f"task {task.task_id}: he tasks train a binary model; the labels must be 0 or 1")
    yb = y.astype(np.float64)  # label 1 is class 1 of the softmax form (W[:, 1])

    def enc() -> bytes:
        data = hel.encrypt_data(pub, np.asarray(x, np.float64).reshape(len(x), -1), yb, kind)
        return seal_he_data(binding, data, recipients)

    try:
        return await trio.to_thread.run_sync(enc)
    except CryptoError as exc:
        raise TaskError(f"task {task.task_id}: the data cannot be encrypted for the he mode: {exc}") from None


# --- computation provider ----------------------------------------------------------------------


class HeJob:
    """One he compute job's state: the evaluation context and the encrypted rows (never any plaintext)."""

    def __init__(self, job, doc, ctx_eval, data):
        self.job, self.doc, self.ctx_eval, self.data = job, doc, ctx_eval, data

    @property
    def n_examples(self) -> int:
        return self.data.n_samples


async def load_data(job, blob: bytes, binding) -> HeJob:
    from dainode.tasks.he_task import open_he_data

    doc, ctx_eval = await he_context(job.ctx, job.task)
    spec = job.task.manifest.model_spec
    data = await trio.to_thread.run_sync(lambda: open_he_data(blob, job.key.private, binding, ctx_eval, spec))
    log.info("task %d match %d: %d encrypted rows received (%d bytes); CKKS context %d bytes", job.task_id, job.match_id,
             data.n_samples, len(blob), doc.context_bytes)
    return HeJob(job, doc, ctx_eval, data)


HE_REFRESH = "he_refresh"  # /dai/negotiate/1.0.0: CP -> MP, the masked gradients so far (by CID) -> the next model
REFRESH_TIMEOUT_S = 120.0


async def round_update(he: HeJob, t: int, binding) -> tuple[bytes, dict]:
    """Train round ``t`` on ciphertexts: the encrypted global model, one masked gradient per local epoch (a refresh
    round trip to the key holder between epochs), the sealed update."""
    from dainode.crypto import he_linear as hel
    from dainode.roles import negotiate as neg
    from dainode.tasks.he_task import HE_REFRESH_SCHEMA, he_kind, seal_he_update, unpack_he_model

    job = he.job
    m = job.task.manifest
    if t == 0:
        cid = he.doc.model0_cid
    else:
        res = await fetch_json(job.ctx, job.published[t - 1])
        cid = res.get("he_model_cid")
        if not cid:
            raise TaskError(f"task {job.task_id} round {t - 1}: the round result names no encrypted model (he_model_cid)")
    n_params = int(np.prod(m.model_spec.feature_shape)) + 1
    recipients = [job.task.public_key.key]
    grads: list[bytes] = []
    stats = {"he_model_bytes": 0, "he_refreshes": 0, "he_refresh_bytes": 0, "fetch_he_model_ms": 0.0, "he_train_ms": 0.0,
             "he_refresh_ms": 0.0}
    for epoch in range(m.task.local_epochs):
        t0 = trio.current_time()
        blob = await fetch(job.ctx, cid, timeout=MODEL_TIMEOUT_S)
        t1 = trio.current_time()
        stats["he_model_bytes"] += len(blob)

        def train() -> bytes:
            model = unpack_he_model(blob, t, he.ctx_eval, n_params, epoch=epoch)
            return hel.grads_to_bytes(hel.masked_gradient(model, he.data, he_kind(m)))

        try:
            grads.append(await trio.to_thread.run_sync(train))
        except CryptoError as exc:
            raise TaskError(f"task {job.task_id} round {t} epoch {epoch}: encrypted training failed: {exc}") from None
        t2 = trio.current_time()
        stats["fetch_he_model_ms"] += round((t1 - t0) * 1000, 1)
        stats["he_train_ms"] += round((t2 - t1) * 1000, 1)
        if epoch == m.task.local_epochs - 1:
            break
        # out of depth: the key holder re-encrypts the model after this epoch (ciphertexts only, both ways)
        req = seal_he_update(binding, grads, he.n_examples, recipients, schema=HE_REFRESH_SCHEMA)
        req_cid = await job.ctx.content.put_bytes(req)
        msg = {"v": neg.VERSION, "type": HE_REFRESH, "task_id": job.task_id, "match_id": job.match_id, "round": t,
               "epoch": epoch, "request_cid": str(req_cid)}
        rep = await job.owner.negotiator.request(he.doc.peer_id, msg, REFRESH_TIMEOUT_S)
        if not rep.get("ok") or not isinstance(rep.get("model_cid"), str):
            raise TaskError(f"task {job.task_id} round {t} epoch {epoch}: the model provider refused the refresh: "
                            f"{rep.get('reason')} ({rep.get('detail')})")
        cid = rep["model_cid"]
        stats["he_refreshes"] += 1
        stats["he_refresh_bytes"] += len(req)
        stats["he_refresh_ms"] += round((trio.current_time() - t2) * 1000, 1)
    sealed = seal_he_update(binding, grads, he.n_examples, recipients)
    return sealed, {**stats, "he_update_bytes": len(sealed)}
