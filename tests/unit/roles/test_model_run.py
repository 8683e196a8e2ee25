"""TaskRun.run: a task that fails ends that task (failure recorded), never the model role or the node."""

from __future__ import annotations

import trio

from dainode.errors import ChainRpcError
from dainode.roles.model_run import TaskRun


def _bare_run() -> TaskRun:
    run = TaskRun.__new__(TaskRun)  # only what run() touches; the real constructor needs a chain
    run.task_id, run.failures, run.phase, run.done, run.saved = 7, [], "matching", trio.Event(), 0

    def save(**_):
        run.saved += 1

    async def intake(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await trio.sleep_forever()

    async def match():
        raise ChainRpcError("eth_call", -32602, "BlockOutOfRangeError: block height is 13 but requested was 12")

    run.save, run._intake, run.match = save, intake, match
    return run


async def test_a_chain_error_inside_the_run_fails_the_task_not_the_role():
    run = _bare_run()
    await run.run()  # before the fix the error escaped inside an ExceptionGroup and crashed the role
    assert run.done.is_set() and run.saved == 1
    assert len(run.failures) == 1 and run.failures[0].startswith("ChainRpcError")
    assert run.stopped == run.failures[0]  # task_status shows it: a driver stops waiting for a run that ended


async def test_matching_asks_an_unreachable_data_provider_again(monkeypatch):
    """Right after a restart the model provider knows no addresses of its peers yet: an ask that fails to reach the
    node is retried (before the fix the offer stayed tried and the task was abandoned with one match)."""
    from types import SimpleNamespace

    from dainode.roles import model_run

    run = TaskRun.__new__(TaskRun)
    run.task_id, run.failures, run.phase, run.matches, run.quorum = 7, [], "matching", {}, 1
    run.matching_wait_s = 30.0
    run.manifest = SimpleNamespace(task=SimpleNamespace(providers=1, quorum=1))
    offer = SimpleNamespace(offer_id=3)
    run.candidates = lambda tried: [offer] if offer.offer_id not in tried else []
    asks = []

    async def ask(o, lock, tried=None):
        asks.append(o.offer_id)
        if len(asks) == 1:
            run.unreachable.add(o.offer_id)  # what ask() does on a P2PError (no known addresses)
        else:
            run.matches[0] = {"cp_key_cid": "k"}

    async def step_tx(what, fn, *args, **kw):
        return {"events": []}

    async def fetch_json(ctx, cid, **kw):
        return {}

    run.ask, run.step_tx, run.save, run.ctx = ask, step_tx, lambda **_: None, None
    monkeypatch.setattr(model_run, "fetch_json", fetch_json)
    monkeypatch.setattr(model_run.TaskPublicKey, "from_document", staticmethod(lambda doc: "key"))
    with trio.fail_after(10):
        await run.match()
    assert asks == [3, 3] and run.phase == "training"


async def test_an_offer_refused_for_a_transient_reason_is_asked_again_a_refusal_on_terms_is_not(autojump_clock):
    from types import SimpleNamespace

    replies = {1: {"ok": False, "reason": "internal", "detail": "eth_getProof failed: BlockOutOfRangeError"},
               2: {"ok": False, "reason": "price", "detail": "too cheap"}}

    class Neg:
        async def request(self, peer, msg, timeout):
            return replies[msg["data_offer_id"]]

    run = TaskRun.__new__(TaskRun)
    run.task_id = 7
    run.ref = SimpleNamespace(chain_id=31337, task_address="0x" + "5f" * 20)
    run.manifest = SimpleNamespace(task=SimpleNamespace(max_compute_price_wei=1))
    run.role = SimpleNamespace(negotiator=Neg(), manifest_cid=lambda tid: "bafy")
    tried = {1, 2}
    for oid in (1, 2):
        await run.ask(SimpleNamespace(offer_id=oid, peer_id="p", price_wei=1), trio.Lock(), tried)
    assert tried == {2}


async def test_an_update_that_cannot_be_fetched_yet_is_asked_for_again_not_rejected_as_malformed(monkeypatch):
    """Regression: an update whose provider was unreachable for a fetch's 10 s was marked malformed and rejected on
    chain (the provider lost that round's pay), and `task verify` then found the posted status wrong."""
    from dainode.errors import FetchTimeout
    from dainode.roles import model_run

    run = TaskRun.__new__(TaskRun)
    run.task_id, run.results, calls = 7, [], []

    async def fetch(ctx, cid, **kw):
        calls.append(cid)
        if len(calls) < 3:
            raise FetchTimeout(f"{cid} could not be fetched within 10 s")
        return b"sealed update"

    run.ctx = None
    monkeypatch.setattr(model_run, "fetch", fetch)
    assert await run._fetch_update("bafy-u", 2, 1) == b"sealed update" and len(calls) == 3

    async def never(ctx, cid, **kw):
        run.results = [None, None, None]  # meanwhile round 2 closed without it
        raise FetchTimeout(f"{cid} could not be fetched within 10 s")

    monkeypatch.setattr(model_run, "fetch", never)
    assert await run._fetch_update("bafy-v", 2, 1) is None  # left out as late, not rejected


async def test_an_update_opened_from_a_push_is_stored_for_verifiers():
    """Regression: a pushed update was only held in memory; once its compute provider died nobody could serve it,
    and `task verify` on any node failed every round that node had submitted."""
    from types import SimpleNamespace

    from dainode.roles.taskchain import chain_cid
    from dainode.store.cid import cid_of

    blob = b"sealed update of match 1"
    cid = cid_of(blob)
    digest, codec = chain_cid(cid)
    stored = []

    async def put_bytes(data):
        stored.append(data)
        return cid

    run = TaskRun.__new__(TaskRun)
    run.task_id, run.results, run.updates, run._changed = 7, [], {}, trio.Event()
    run.matches = {1: {"compute_provider": "0xcp"}}
    done = trio.Event()
    done.set()
    run._preopened = {(0, 1): {"cid": str(cid), "cp": "0xCP", "done": done, "opened": "opened", "blob": blob}}
    run.ctx = SimpleNamespace(content=SimpleNamespace(put_bytes=put_bytes))
    ev = SimpleNamespace(args={"round": 0, "matchId": 1, "cid": digest, "codec": codec, "computeProvider": "0xcp"},
                         block_number=5)
    async with trio.open_nursery() as nursery:
        run._bg = nursery
        await run._take_update(ev)
    assert run.updates[0][1]["status"] == "ok" and run.updates[0][1]["ahead"]
    assert stored == [blob]


async def test_a_round_whose_every_update_was_rejected_waits_for_the_chain_window_before_closing(autojump_clock):
    """Regression: when every update of a round was in and rejected (below quorum) the round closed at once, the
    publish reverted with QuorumNotReached (the contract wants the window over) and the whole task stopped."""
    run = TaskRun.__new__(TaskRun)
    run.matches, run.quorum, run.grace_s, run.lost_rounds, run._changed = {0: {}, 1: {}}, 2, 0.2, 0, trio.Event()
    run.updates = {3: {0: {"status": "non_finite"}, 1: {"status": "ok"}}}
    start = trio.current_time()
    await run.wait_updates(3, start + 10.0, start + 12.0, 0)
    assert trio.current_time() - start >= 12.0  # the chain's window end, not at once

    run.updates = {3: {0: {"status": "ok"}, 1: {"status": "ok"}}}  # a full quorum still closes at once
    start = trio.current_time()
    await run.wait_updates(3, start + 10.0, start + 12.0, 0)
    assert trio.current_time() == start


async def test_the_reason_of_an_abandon_is_saved_before_the_abandon_tx(monkeypatch):
    """task_status takes the phase from the chain and the failures from the saved record: the reason must be saved
    before the abandon tx is mined (CI saw phase "abandoned" with failures [] in the gap)."""
    from types import SimpleNamespace

    from dainode.roles import model_run

    run = TaskRun.__new__(TaskRun)
    run.task_id, run.failures, run.phase, run.matches, run.quorum, run.lost_rounds = 7, [], "matching", {}, 3, 2
    run.matching_wait_s = 0.5
    run.manifest = SimpleNamespace(task=SimpleNamespace(providers=4, quorum=3, quorum_lost_rounds=2))
    run.candidates = lambda tried: []
    saved: list[list[str]] = []
    on_chain: list[list[str]] = []  # what was saved when each abandon tx went out

    async def step_tx(what, fn, *args, **kw):
        on_chain.append(list(saved[-1]) if saved else [])
        return {"events": []}

    async def auto_withdraw(*a, **kw):
        return None

    run.step_tx, run.save, run.ctx, run.tc = step_tx, lambda **_: saved.append(list(run.failures)), None, None
    monkeypatch.setattr(model_run, "auto_withdraw", auto_withdraw)
    with trio.fail_after(10):
        await run.match()
    assert run.phase == "abandoned" and on_chain[0] and on_chain[0][0].startswith("matched 0 of 4 providers")
    run.phase = "training"
    await run.abandon_below_quorum(5, 1)
    assert on_chain[1][-1].startswith("round 5: 1 accepted update(s)")
