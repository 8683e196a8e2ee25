"""The model provider's CKKS key: sealed on disk with the node's password, reloaded whole (the relinearisation key too)."""

from __future__ import annotations

from types import SimpleNamespace

from dainode.crypto import he_linear as hel
from dainode.crypto.ckks import CkksContext
from dainode.roles.he_model import _load_or_create, _path


def test_reloaded_key_publishes_the_same_evaluation_context(tmp_path):
    vault = SimpleNamespace(data_dir=tmp_path, _password="pw", light_kdf=True)
    first = _load_or_create(vault, "pending-x")
    again = _load_or_create(vault, "pending-x")  # a resumed task_create
    assert again.has_secret_key and again.fingerprint == first.fingerprint
    pub = CkksContext.from_bytes(hel.eval_context_bytes(again))  # before the fix: no relinearisation key after reload
    assert pub.tenseal.has_relin_keys() and not pub.has_secret_key
    assert b"pw" not in _path(vault, "pending-x").read_bytes()[:64] and _path(vault, "pending-x").stat().st_mode & 0o077 == 0
