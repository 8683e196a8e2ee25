"""Task role helpers: the per-task key vault, rejection evidence documents."""

import stat

import pytest

from dainode.errors import TaskError
from dainode.roles.taskdocs import REJECTION_SCHEMA, KeyVault, rejection_document
from dainode.tasks.keys import TaskKey
from dainode.tasks.sealed import TaskRef


def test_vault_seals_task_keys_with_the_password_and_loads_them_back(tmp_path):
    key = TaskKey.generate()
    path = KeyVault(tmp_path, "pw", light_kdf=True).save("task-1", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.reveal_bytes() not in path.read_bytes()
    assert KeyVault(tmp_path, "pw", light_kdf=True).load("task-1").reveal_bytes() == key.reveal_bytes()
    with pytest.raises(TaskError, match="cannot load task key"):
        KeyVault(tmp_path, "wrong", light_kdf=True).load("task-1")
    with pytest.raises(TaskError, match="cannot load task key"):
        KeyVault(tmp_path, "pw", light_kdf=True).load("task-2")


def test_vault_never_overwrites_a_saved_key(tmp_path):
    first, second = TaskKey.generate(), TaskKey.generate()
    vault = KeyVault(tmp_path, "pw", light_kdf=True)
    vault.save("k", first)
    vault.save("k", first)  # a resumed step saves the same key again
    with pytest.raises(TaskError, match="already exists"):
        vault.save("k", second)
    assert vault.load("k").reveal_bytes() == first.reveal_bytes()
    assert KeyVault(tmp_path, "pw", light_kdf=True).load("k").reveal_bytes() == first.reveal_bytes()


def test_rejection_document_names_the_update_and_reason():
    ref = TaskRef(31337, "0x" + "ab" * 20, 7)
    doc = rejection_document(ref, 3, 1, "bafy", "wrong_shape", "x" * 5000)
    assert doc["schema"] == REJECTION_SCHEMA and doc["task"] == ref.fields()
    assert (doc["round"], doc["match_id"], doc["update_cid"], doc["reason"]) == (3, 1, "bafy", "wrong_shape")
    assert len(doc["detail"]) == 2000
