"""Per-task keys: public document, sealed file, reveal form that anyone can load, never the node's envelope keys."""

from __future__ import annotations

import stat

import pytest

from dainode.crypto import envelope as env
from dainode.crypto import keys as node_keys
from dainode.errors import IdentityError, TaskError, WrongPasswordError
from dainode.tasks.keys import TaskKey, TaskPublicKey, task_key_path

PW = "task password"


@pytest.fixture(scope="module")
def key():
    return TaskKey.generate()


def test_public_document_round_trip(key):
    doc = key.public.to_document()
    assert doc["alg"] == "X25519" and len(bytes.fromhex(doc["public_key"])) == 32
    assert "private" not in str(doc).lower()
    pub = TaskPublicKey.from_document(doc)
    assert pub.raw == key.public.raw and pub.key_id == key.key_id
    doc["key_id"] = "00" * 32
    with pytest.raises(TaskError, match="key_id does not match"):
        TaskPublicKey.from_document(doc)
    with pytest.raises(TaskError, match="64 hex digits"):
        TaskPublicKey.from_document({**key.public.to_document(), "public_key": "abc"})


def test_reveal_lets_anyone_decrypt_what_was_sealed_for_the_task(key):
    ad = env.associated_data("update", task=1)
    blob = env.encrypt(b"model update", [key.public.key], ad)
    raw = key.reveal_bytes()
    assert len(raw) == 32
    anyone = TaskKey.from_reveal(raw, expected=key.public)
    assert env.decrypt(blob, anyone.private, ad) == b"model update"
    doc = key.reveal_document()
    assert TaskKey.from_reveal_document(doc, expected=key.key_id).key_id == key.key_id


def test_a_wrong_reveal_is_refused(key):
    other = TaskKey.generate()
    with pytest.raises(TaskError, match="is not the task's published key"):
        TaskKey.from_reveal(other.reveal_bytes(), expected=key.public)
    with pytest.raises(TaskError, match="32 bytes, got 31"):
        TaskKey.from_reveal(b"x" * 31)
    doc = key.reveal_document()
    doc["public_key"] = other.public.raw.hex()
    with pytest.raises(TaskError, match="public_key does not belong to private_key"):
        TaskKey.from_reveal_document(doc)


def test_sealed_on_disk_with_password(tmp_path, key):
    path = key.save(tmp_path, "task-7", PW, light_kdf=True)
    assert path == task_key_path(tmp_path, "task-7")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.reveal_bytes() not in path.read_bytes()
    assert TaskKey.load(tmp_path, "task-7", PW).key_id == key.key_id
    with pytest.raises(WrongPasswordError):
        TaskKey.load(tmp_path, "task-7", "nope")
    with pytest.raises(IdentityError, match="already exists"):
        key.save(tmp_path, "task-7", PW, light_kdf=True)
    blob = key.seal(PW, light_kdf=True)
    assert TaskKey.unseal(blob, PW).key_id == key.key_id


def test_node_envelope_key_files_are_not_task_keys(tmp_path):
    """A node key sealed as 'x25519' is refused as a task key: a reveal can never publish the node's key."""
    blob = node_keys.seal(b"k" * 32, PW, "x25519", light_kdf=True)
    with pytest.raises(IdentityError, match="holds a 'x25519' key, expected 'task-x25519'"):
        TaskKey.unseal(blob, PW)


def test_task_key_names_are_checked(tmp_path):
    with pytest.raises(Exception, match="invalid task key name"):
        task_key_path(tmp_path, "../escape")
