"""Gossiped task announcements are checked field by field against the task's TaskOpened event."""

from types import SimpleNamespace

import pytest
import trio

from dainode.chain.contracts import Event
from dainode.chain.training_task import cid_to_chain
from dainode.roles import taskannounce as ta
from dainode.store.cid import CID

MP = "0x" + "a1" * 20
TT = "0x" + "5f" * 20


class FakeTC:
    chain_id, address = 31337, TT

    def __init__(self, manifest_cid):
        d, c = cid_to_chain(manifest_cid)
        params = (d, c, d, c, d, c)
        self.ev = Event("TrainingTask", "TaskOpened", {"taskId": 3, "modelProvider": MP, "pool": 4000, "params": params},
                        1, "0x", "0x", 0, TT)

    async def logs(self, task_id, names=None):
        return [self.ev] if task_id == 3 else []

    async def task(self, task_id):
        return SimpleNamespace(rounds=5)


@pytest.fixture
def announcer(monkeypatch):
    monkeypatch.setattr(ta, "UNKNOWN_RETRIES", ())
    from dainode.store.cid import RAW, multihash

    cid = CID(1, RAW, multihash(b"manifest"))
    ctx = SimpleNamespace()
    return ta.TaskAnnouncements(ctx, FakeTC(cid)), str(cid)


def test_matching_notice_is_accepted_and_each_lie_has_its_reason(announcer):
    a, cid = announcer
    good = {"task_id": 3, "task_address": TT, "chain_id": 31337, "manifest_cid": cid, "pool_wei": "4000", "rounds": 5}
    cases = [({}, MP, None), ({"task_id": "3"}, MP, "malformed"), ({"chain_id": 1}, MP, "wrong_chain"),
             ({"task_id": 9}, MP, "unknown_task"), ({}, "0x" + "b2" * 20, "wrong_sender"),
             ({"manifest_cid": "bafy-other"}, MP, "wrong_manifest"), ({"pool_wei": "1"}, MP, "wrong_pool"),
             ({"rounds": 6}, MP, "wrong_params")]

    async def main():
        for change, sender, reason in cases:
            msg = SimpleNamespace(body={**good, **change}, sender=sender, peer_id="peer", type="task")
            await a.check_and_count(msg)
    trio.run(main)
    assert a.accepted == {3: good}
    assert a.stats()["rejected_by_reason"] == {r: 1 for _, _, r in cases if r}
