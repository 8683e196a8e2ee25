"""Anyone's check of a finished task: recompute every round and the split from what was posted, list the differences.

Tolerances (recomputation on another machine may differ in the last float bits; the same
build reproduces bit for bit): parameters within ``PARAM_ATOL`` per coordinate; the posted
metrics are recomputed on the *posted* model, loss within ``LOSS_ATOL``, accuracy within one
test row; shares within ``SHARE_ATOL``. Everything else is exact: the initial model, which
updates were accepted and why the others were rejected, the params digest of each posted
model, the integer bonuses from the posted weights, and their sum (the contribution bonus).
Each round aggregates on top of the *posted* global model, so one bad round does not cascade.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from dainode.errors import DainodeError, DocumentRejected
from dainode.tasks.documents import ModelBinding, RoundResult, UpdateBinding, open_global_model, open_update, params_digest
from dainode.tasks.keys import TaskKey, TaskPublicKey
from dainode.tasks.manifest import Manifest
from dainode.tasks.rounds import RoundOutcome, aggregate_round, evaluate_params, initial_params
from dainode.tasks.sealed import TaskRef
from dainode.tasks.split import SHARE_SCALE, SplitReport, contributions, integer_split
from dainode.tasks.testset import check_test_set, decode_test_set, test_set_commitment  # noqa: F401 (re-export)

PARAM_ATOL = 1e-5
LOSS_ATOL = 1e-4
SHARE_ATOL = 1e-5


@dataclass
class PostedUpdate:
    """One ``submitUpdate`` event and the envelope fetched by its CID (``blob`` None: not fetchable)."""

    match_id: int
    round: int
    sender: str
    cid: str
    blob: bytes | None
    # True when the event landed at or after the model provider's aggregation cut-off (e.g. in the
    # block of the publish): only such an update may be excluded as "late"
    after_close: bool = False


@dataclass
class PostedRound:
    round: int
    global_model: bytes  # the sealed input model of this round (binding round = ``round``)
    updates: list[PostedUpdate]
    result: RoundResult | bytes  # the posted round-result document (bytes: parsed here, a bad one is a difference)


@dataclass
class TaskEvidence:
    """Everything ``dainode task verify`` fetched from the chain's events and IPFS."""

    manifest: Manifest
    task: TaskRef
    model_provider: str
    task_public_key: TaskPublicKey
    revealed_key: bytes  # raw 32 bytes (``TaskKey.reveal_bytes``)
    test_set: bytes
    test_set_cid: str
    salt: bytes
    commitment: bytes
    match_ids: list[int]
    rounds: list[PostedRound]
    final_model: bytes  # sealed global model of round ``manifest.task.rounds``
    bonus_wei: int  # pool minus the guaranteed prices: what the split must distribute
    posted_bonuses: dict[int, int]  # postSplit's bonuses[] by match id
    split_report: SplitReport | bytes
    match_rows: dict[int, int] | None = None  # the data offers' row counts: n_examples may not exceed them
    he_secret: bytes | None = None  # he tasks: the revealed CKKS secret context (he_linear.secret_context_bytes)
    he_fingerprint: str | None = None  # he tasks: the CKKS key pair the task key document published (hex)


@dataclass
class Difference:
    where: str
    posted: Any
    recomputed: Any
    detail: str = ""


@dataclass
class VerifyResult:
    ok: bool
    differences: list[Difference] = field(default_factory=list)
    caveats: list[Difference] = field(default_factory=list)  # not differences: claims no one can check afterwards
    history: list[dict] = field(default_factory=list)  # recomputed {round, accuracy, loss}
    shares: dict[int, float] = field(default_factory=dict)  # recomputed

    def to_document(self) -> dict:
        return {"ok": self.ok, "differences": [asdict(d) for d in self.differences],
                "caveats": [asdict(d) for d in self.caveats], "history": self.history,
                "shares": {str(k): v for k, v in self.shares.items()}}


def _jsonable(v: Any) -> Any:
    return v.tolist() if isinstance(v, np.ndarray) else v


class _Checker:
    def __init__(self):
        self.diffs: list[Difference] = []
        self.caveats: list[Difference] = []  # what cannot be proven either way: reported, not a FAIL

    def caveat(self, where: str, posted: Any, recomputed: Any, detail: str = "") -> None:
        self.caveats.append(Difference(where, _jsonable(posted), _jsonable(recomputed), detail))

    def diff(self, where: str, posted: Any, recomputed: Any, detail: str = "") -> None:
        self.diffs.append(Difference(where, _jsonable(posted), _jsonable(recomputed), detail))

    def equal(self, where: str, posted: Any, recomputed: Any, detail: str = "") -> None:
        if posted != recomputed:
            self.diff(where, posted, recomputed, detail)

    def close(self, where: str, posted: float, recomputed: float, atol: float) -> None:
        if not abs(float(posted) - float(recomputed)) <= atol:
            self.diff(where, posted, recomputed, f"differs by more than {atol:g}")


def verify_task(ev: TaskEvidence) -> VerifyResult:
    """Recompute the task from ``ev``; ``ok`` is True only when nothing differs."""
    c = _Checker()
    m, spec = ev.manifest, ev.manifest.model_spec
    try:
        key = TaskKey.from_reveal(ev.revealed_key, expected=ev.task_public_key)
    except DainodeError as exc:
        c.diff("task key", ev.revealed_key.hex(), ev.task_public_key.raw.hex(), str(exc))
        return VerifyResult(False, c.diffs)
    try:
        check_test_set(ev.test_set, ev.test_set_cid, ev.salt, ev.commitment)
        test = decode_test_set(ev.test_set)
    except DainodeError as exc:
        c.diff("test set", ev.test_set_cid, ev.commitment.hex(), str(exc))
        return VerifyResult(False, c.diffs)
    c.equal("rounds posted", len(ev.rounds), m.task.rounds)
    models = _open_models(c, ev, key.private, spec)
    opener = _opener(c, ev, key.private, models)
    if opener is None:
        return VerifyResult(False, c.diffs)
    if models.get(0) is not None:
        w0 = initial_params(m)
        if not np.array_equal(models[0], w0):
            c.diff("round 0 global model", params_digest(models[0]), params_digest(w0),
                   "the initial model is not the seeded init of the manifest's model")
    outcomes, history = [], []
    for pr in sorted(ev.rounds, key=lambda r: r.round):
        t = pr.round
        if models.get(t) is None:
            continue
        res = _parse(c, f"round {t} result", RoundResult.from_bytes, pr.result)
        accepted = _check_updates(c, ev, pr, res, opener)
        out = aggregate_round(m, t, models[t], accepted)
        outcomes.append(out)
        nxt = models.get(t + 1)
        if nxt is None:
            continue
        gap = float(np.max(np.abs(nxt.astype(np.float64) - out.params))) if nxt.size else 0.0
        if not gap <= PARAM_ATOL:
            c.diff(f"round {t} aggregate", params_digest(nxt), params_digest(out.params),
                   f"published model differs from the recomputed aggregate by up to {gap:.3g} (> {PARAM_ATOL:g})")
        ev_m = evaluate_params(m, nxt, test)  # the posted model's metrics, whatever our aggregate says
        history.append({"round": t, "accuracy": ev_m["accuracy"], "loss": ev_m["loss"]})
        if res is None:
            continue
        c.equal(f"round {t} rule", res.rule, out.rule)
        c.equal(f"round {t} params digest", res.params_digest, params_digest(nxt),
                "the round result names another model than the one published for the next round")
        c.equal(f"round {t} n_test", res.n_test, ev_m["n"])
        c.close(f"round {t} accuracy", res.accuracy, ev_m["accuracy"], 1.5 / max(ev_m["n"], 1))
        c.close(f"round {t} loss", res.loss, ev_m["loss"], LOSS_ATOL)
    shares = _check_split(c, ev, outcomes, test)
    return VerifyResult(not c.diffs, c.diffs, c.caveats, history, shares)


def _open_models(c: _Checker, ev: TaskEvidence, key, spec) -> dict[int, np.ndarray | None]:
    blobs = {r.round: r.global_model for r in ev.rounds}
    blobs[ev.manifest.task.rounds] = ev.final_model
    out: dict[int, np.ndarray | None] = {}
    for t, blob in sorted(blobs.items()):
        try:
            out[t] = open_global_model(blob, key, ModelBinding(ev.task, t, ev.model_provider), spec)
        except DocumentRejected as exc:
            out[t] = None
            c.diff(f"round {t} global model", "published", exc.reason, exc.detail)
    return out


def _parse(c: _Checker, where: str, parse, doc):
    if not isinstance(doc, (bytes, bytearray, memoryview)):
        return doc
    try:
        return parse(bytes(doc))
    except DainodeError as exc:
        c.diff(where, "published", "unreadable", str(exc))
        return None


def _opener(c: _Checker, ev: TaskEvidence, key, models: dict):
    """How an update opens: fl, unsealed; he, unsealed and decrypted with the revealed CKKS key on the posted model."""
    m = ev.manifest
    if m.task.privacy != "he":
        return lambda blob, binding, limit, t: open_update(blob, key, binding, m.model_spec, max_examples=limit)
    from dainode.crypto.ckks import CkksContext
    from dainode.tasks.he_task import open_he_update

    try:
        he_ctx = CkksContext.from_bytes(ev.he_secret or b"")
        assert he_ctx.has_secret_key and he_ctx.fingerprint.hex() == ev.he_fingerprint
    except (DainodeError, AssertionError) as exc:
        c.diff("revealed CKKS key", "revealed" if ev.he_secret else "missing", ev.he_fingerprint,
               f"not the secret of the task's published CKKS key pair {exc}")
        return None

    def open_he(blob, binding, limit, t):
        if models.get(t) is None:
            raise DocumentRejected("malformed", f"no posted global model of round {t} to apply the update to")
        return open_he_update(blob, key, binding, m, he_ctx, models[t], max_examples=limit)

    return open_he


def _check_updates(c: _Checker, ev: TaskEvidence, pr: PostedRound, res: RoundResult | None, opener) -> list:
    """Open every update of the round; compare accepted/rejected with the posted result; return the valid ones."""
    t, spec = pr.round, ev.manifest.model_spec
    valid, status, after_close, unavailable = [], {}, set(), set()
    for pu in pr.updates:
        binding = UpdateBinding(ev.task, pu.match_id, pu.round, pu.sender)
        if pu.after_close:
            after_close.add((pu.match_id, pu.cid))
        limit = (ev.match_rows or {}).get(pu.match_id)
        if pu.round != t:
            status[(pu.match_id, pu.cid)] = "wrong_round"
            continue
        if pu.blob is None:
            status[(pu.match_id, pu.cid)] = "malformed"
            unavailable.add((pu.match_id, pu.cid))  # nobody serves it now: like the model provider at its cut-off?
            continue
        try:
            up = opener(pu.blob, binding, limit, t)
        except DocumentRejected as exc:
            status[(pu.match_id, pu.cid)] = exc.reason
            continue
        if any(v.match_id == pu.match_id for v in valid):
            status[(pu.match_id, pu.cid)] = "malformed"  # a second valid update of one match: the first counts
            continue
        valid.append(up)
        status[(pu.match_id, pu.cid)] = "ok"
    if res is None:
        return valid
    posted = {(d["match_id"], d["cid"]): "ok" for d in res.included}
    posted.update({(d["match_id"], d["cid"]): d["reason"] for d in res.excluded})
    for k in sorted(set(status) | set(posted)):
        got, want = posted.get(k, "not listed"), status.get(k, "not submitted on chain")
        late_claim = got == "late" and (want == "ok" or k in unavailable)
        if late_claim and k not in after_close:
            # on chain before the publish, yet the model provider says it could not fetch it by its cut-off (its
            # provider was unreachable): whether the bytes were there then cannot be checked now (nor, when no node
            # serves them any more, what they held); the round is recomputed without it, and the claim is listed
            # for whoever wants to challenge it
            c.caveat(f"round {t} update match {k[0]} ({k[1]})", got, "unavailable" if k in unavailable else want,
                     "left out as not fetched by the model provider's cut-off although it was on chain before the "
                     "publish; the round is recomputed without it"
                     + ("; no node serves it now either" if k in unavailable else ""))
        elif got != want and not late_claim:
            c.diff(f"round {t} update match {k[0]} ({k[1]})", got, want,
                   "accepted/rejected status posted by the model provider vs recomputed")
    late = {k[0] for k, v in posted.items() if v == "late" and status.get(k) == "ok"}
    return [u for u in valid if u.match_id not in late]


def _check_split(c: _Checker, ev: TaskEvidence, outcomes: Sequence[RoundOutcome], test) -> dict[int, float]:
    rep = _parse(c, "split report", SplitReport.from_bytes, ev.split_report)
    if rep is None:
        return {}
    c.equal("split task", rep.task, ev.task)
    c.equal("split bonus total", rep.bonus_wei, ev.bonus_wei)
    c.equal("split posted bonuses sum", sum(ev.posted_bonuses.values()), ev.bonus_wei,
            "the bonuses posted on chain must distribute the whole contribution bonus")
    c.equal("split posted bonuses vs report", ev.posted_bonuses, rep.bonuses)
    weights = {int(d["match_id"]): int(d["weight"]) for d in rep.matches}
    c.equal("split match ids", sorted(weights), sorted(ev.match_ids))
    try:
        c.equal("split integer bonuses", rep.bonuses, integer_split(ev.bonus_wei, weights),
                "bonuses are not the largest-remainder split of the bonus by the report's weights")
    except DainodeError as exc:
        c.diff("split integer bonuses", rep.bonuses, None, str(exc))
    if not outcomes or sorted(weights) != sorted(ev.match_ids):
        return {}
    rec = contributions(ev.manifest, outcomes, ev.match_ids, test)
    c.equal("split method", rep.method, rec["method"])
    c.equal("split params", rep.params, rec["params"])
    c.equal("split rounds", rep.rounds, len(outcomes))
    for d in rep.matches:
        mid = d["match_id"]
        if mid in rec["shares"]:
            c.close(f"split match {mid} share", d["share"], rec["shares"][mid], SHARE_ATOL)
            c.close(f"split match {mid} weight", d["weight"], round(rec["shares"][mid] * SHARE_SCALE),
                    SHARE_ATOL * SHARE_SCALE)
    return rec["shares"]
