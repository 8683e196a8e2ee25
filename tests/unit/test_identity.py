"""Identity: keystore creation, unlocking, wrong passwords, damaged files, file modes."""

from __future__ import annotations

import json
import os
import stat

import pytest

from dainode.errors import IdentityError, WrongPasswordError
from dainode.identity import (
    ETH_KEYSTORE,
    LIBP2P_KEYSTORE,
    init_identity,
    load_identity,
    load_or_init_identity,
    resolve_password,
)


def test_init_then_load_gives_the_same_keys(tmp_path):
    d = tmp_path / "node"
    made = init_identity(d, "secret", light_kdf=True)
    loaded = load_identity(d, "secret")
    assert loaded.address == made.address
    assert loaded.peer_id == made.peer_id
    for rel in (ETH_KEYSTORE, LIBP2P_KEYSTORE):
        assert stat.S_IMODE(os.stat(d / rel).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    doc = json.loads((d / ETH_KEYSTORE).read_text())
    assert doc["version"] == 3 and doc["crypto"]["kdf"] == "scrypt"  # geth/eth-account format
    assert doc["address"] == made.address[2:].lower()
    assert "secret" not in repr(made)  # keys and password stay out of reprs/logs


def test_standard_kdf_by_default(tmp_path):
    init_identity(tmp_path / "n", "pw")
    doc = json.loads((tmp_path / "n" / ETH_KEYSTORE).read_text())
    assert doc["crypto"]["kdfparams"]["n"] == 2**18


def test_wrong_password_is_a_clear_error(tmp_path):
    init_identity(tmp_path / "n", "right", light_kdf=True)
    with pytest.raises(WrongPasswordError, match="wrong password"):
        load_identity(tmp_path / "n", "wrong")


def test_refuses_to_overwrite(tmp_path):
    init_identity(tmp_path / "n", "pw", light_kdf=True)
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        init_identity(tmp_path / "n", "pw", light_kdf=True)


def test_damaged_keystore(tmp_path):
    d = tmp_path / "n"
    init_identity(d, "pw", light_kdf=True)
    (d / ETH_KEYSTORE).write_text("{not json")
    with pytest.raises(IdentityError, match="not JSON"):
        load_identity(d, "pw")
    (d / ETH_KEYSTORE).write_text(json.dumps({"version": 3, "crypto": {"kdf": "scrypt"}}))
    with pytest.raises(IdentityError, match="damaged"):
        load_identity(d, "pw")


def test_interrupted_init_is_redone(tmp_path):
    d = tmp_path / "n"
    init_identity(d, "pw", light_kdf=True)
    (d / ETH_KEYSTORE).unlink()  # as if init died between the two writes
    identity, created = load_or_init_identity(d, "pw", light_kdf=True)
    assert created and (d / ETH_KEYSTORE).exists()
    again, created = load_or_init_identity(d, "pw")
    assert not created and again.address == identity.address


def test_password_sources(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    monkeypatch.setenv("DAINODE_PASSWORD", "from-env")
    assert resolve_password(str(f)) == "from-file"
    assert resolve_password(None) == "from-env"
    monkeypatch.delenv("DAINODE_PASSWORD")
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    with pytest.raises(IdentityError, match="DAINODE_PASSWORD"):
        resolve_password(None)
    with pytest.raises(IdentityError, match="cannot read password file"):
        resolve_password(str(tmp_path / "missing"))
