"""TrainingTask binding helpers: CID <-> (digest, codec), the test-set commitment, state and event decoding."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from dainode.chain.contracts import Event, load_contracts
from dainode.chain.training_task import (
    MatchState, Phase, TaskParams, TaskState, cid_from_chain, cid_to_chain, commit_test_set, event_cids,
)
from dainode.errors import ChainError
from dainode.store.cid import CID, cid_of, multihash

TT = load_contracts()["TrainingTask"]


def test_cid_round_trips_through_the_chain_pair():
    c = cid_of(b"update", codec=0x70)
    digest, codec = cid_to_chain(c)
    assert (len(digest), codec) == (32, 0x70)
    assert cid_from_chain(digest, codec) == c
    v0 = c.to_v0()
    assert cid_from_chain(*cid_to_chain(v0)) == v0.to_v1()
    with pytest.raises(ChainError, match="sha2-256"):
        cid_to_chain(CID(1, 0x55, multihash(b"x", 0x13)))  # sha2-512
    with pytest.raises(ChainError, match="32 bytes"):
        cid_from_chain(b"\x00" * 31, 0x55)


def test_test_set_commitment_is_what_the_contract_checks():
    c, salt = cid_of(b"test set"), b"\x01" * 32
    digest, _ = cid_to_chain(c)
    assert commit_test_set(c, salt) == keccak(digest + salt)  # Solidity: keccak256(abi.encodePacked(cid, salt))
    assert commit_test_set(c, b"\x02" * 32) != commit_test_set(c, salt)
    with pytest.raises(ChainError, match="salt must be 32 bytes"):
        commit_test_set(c, b"short")


def test_task_params_encode_to_the_open_task_struct():
    p = TaskParams(cid_of(b"m"), cid_of(b"h"), cid_of(b"e"), b"\x07" * 32, 3, 600, 300, 900, 10**9, quorum=2)
    data = TT.encode_call("openTask", p.to_abi())
    assert len(data) == 4 + 14 * 32
    assert TaskParams.span(3, 600, 300) == 3 * 900 + 300
    with pytest.raises(ChainError, match="32 bytes"):
        TaskParams(cid_of(b"m"), cid_of(b"h"), cid_of(b"e"), b"\x07", 1, 60, 60, 60, 1).to_abi()


def test_state_tuples_decode_into_named_fields():
    raw = ("0x" + "11" * 20, 2, 10, 3, 4, 1, 4, 3, 5, 6, "0x" + "22" * 20, 600, 300, 900, 10**9, 7, 0, 0, 0,
           b"\x01" * 32, b"\x00" * 32)
    t = TaskState.from_abi(raw)
    assert (t.phase, t.rounds, t.round, t.key_revealed, t.test_set_revealed, t.escrow, t.bonus) == (
        Phase.TRAINING, 10, 3, True, True, 5, 6)
    m = MatchState.from_abi(("0x" + "33" * 20, 5, True, "0x" + "44" * 20, 6, 3 | 0x8000))
    assert (m.provided, m.last_round, m.last_rejected) == (True, 2, True)
    assert MatchState.from_abi(("0x" + "33" * 20, 5, False, "0x" + "44" * 20, 6, 0)).last_round is None


def test_event_cids_pairs_each_cid_with_its_codec():
    up, ev = cid_of(b"u"), cid_of(b"evidence", codec=0x70)
    e = Event("TrainingTask", "UpdateRejected", {"taskId": 1, "round": 0, "matchId": 2,
              "evidenceCid": cid_to_chain(ev)[0], "evidenceCodec": 0x70}, 1, "0x", "0x", 0, "0x" + "00" * 20)
    assert event_cids(e) == {"evidence": ev}
    e = Event("TrainingTask", "UpdateSubmitted", {"cid": cid_to_chain(up)[0], "codec": 0x55}, 1, "0x", "0x", 0, "0x")
    assert event_cids(e) == {"cid": up}
