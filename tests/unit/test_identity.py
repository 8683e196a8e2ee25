"""Identity: keystore creation, unlocking, wrong passwords, damaged files, file modes."""

from __future__ import annotations

import json
import os
import stat

import pytest

from dainode.errors import IdentityError, WrongPasswordError
from dainode.identity import (
    ETH_KEYSTORE,
    INIT_MARKER,
    LIBP2P_KEYSTORE,
    backup_keys,
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


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("lost, kept", [(ETH_KEYSTORE, LIBP2P_KEYSTORE), (LIBP2P_KEYSTORE, ETH_KEYSTORE)])
def test_a_missing_half_is_an_error_and_nothing_is_deleted(tmp_path, lost, kept):
    d = tmp_path / "n"
    init_identity(d, "pw", light_kdf=True)
    before = (d / kept).read_bytes()
    (d / lost).unlink()
    with pytest.raises(IdentityError, match=rf"{lost} is missing.*Restore {lost} from your backup.*init --force"):
        load_or_init_identity(d, "pw", light_kdf=True)
    assert (d / kept).read_bytes() == before  # the remaining half is untouched
    assert not (d / lost).exists()  # and no new key was made in its place


def test_interrupted_init_is_backed_up_not_deleted_and_redone(tmp_path):
    d = tmp_path / "n"
    init_identity(d, "pw", light_kdf=True)
    half = (d / LIBP2P_KEYSTORE).read_bytes()
    (d / ETH_KEYSTORE).unlink()  # as if init died between the two writes: its marker stays
    (d / INIT_MARKER).write_text(f"{_dead_pid()}\n")
    identity, created = load_or_init_identity(d, "pw", light_kdf=True)
    assert created and (d / ETH_KEYSTORE).exists() and not (d / INIT_MARKER).exists()
    backups = list((d / "keys").glob("backup-*-interrupted-init"))
    assert len(backups) == 1 and (backups[0] / "libp2p.keystore.json").read_bytes() == half
    again, created = load_or_init_identity(d, "pw")
    assert not created and again.address == identity.address and again.peer_id == identity.peer_id


def test_init_of_a_live_process_is_not_taken_over(tmp_path):
    d = tmp_path / "n"
    (d / "keys").mkdir(parents=True)
    (d / INIT_MARKER).write_text(f"{os.getppid()}\n")  # a live process that is not us
    with pytest.raises(IdentityError, match="is initialising"):
        load_or_init_identity(d, "pw", light_kdf=True)
    with pytest.raises(IdentityError, match="another process is initialising"):
        init_identity(d, "pw", light_kdf=True)
    assert not (d / ETH_KEYSTORE).exists() and not (d / LIBP2P_KEYSTORE).exists()


def test_key_files_are_created_exclusively(tmp_path, monkeypatch):
    """A key file that appears between the check and the write (another creator) is never replaced."""
    import dainode.identity as identity_mod

    d = tmp_path / "n"
    real = identity_mod.create_exclusive

    def racing(path, data, mode=0o600):
        if path.name == "eth.keystore.json":
            path.write_bytes(b"the other process's key")
        return real(path, data, mode=mode)

    monkeypatch.setattr(identity_mod, "create_exclusive", racing)
    with pytest.raises(IdentityError, match="appeared while this process was creating it"):
        init_identity(d, "pw", light_kdf=True)
    assert (d / ETH_KEYSTORE).read_bytes() == b"the other process's key"


def test_force_backup_moves_the_old_keys(tmp_path):
    d = tmp_path / "n"
    old = init_identity(d, "pw", light_kdf=True)
    eth_bytes = (d / ETH_KEYSTORE).read_bytes()
    backup = backup_keys(d)
    assert backup is not None and (backup / "eth.keystore.json").read_bytes() == eth_bytes
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o700
    new = init_identity(d, "pw", light_kdf=True)
    assert new.address != old.address
    assert backup_keys(tmp_path / "empty") is None


def test_a_swapped_keystore_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    init_identity(a, "pw", light_kdf=True)
    init_identity(b, "pw", light_kdf=True)
    eth_a, p2p_a = (a / ETH_KEYSTORE).read_bytes(), (a / LIBP2P_KEYSTORE).read_bytes()

    def put(rel, data):
        (a / rel).write_bytes(data)
        os.chmod(a / rel, 0o600)

    # an Ethereum keystore (another node's, or this node's own) in place of the libp2p key
    for foreign in ((b / ETH_KEYSTORE).read_bytes(), eth_a):
        put(LIBP2P_KEYSTORE, foreign)
        with pytest.raises(IdentityError, match="is not a dainode libp2p keystore"):
            load_identity(a, "pw")
    # another node's libp2p key, or another node's Ethereum key: the pair does not belong together
    put(LIBP2P_KEYSTORE, (b / LIBP2P_KEYSTORE).read_bytes())
    with pytest.raises(IdentityError, match="come from different nodes"):
        load_identity(a, "pw")
    put(LIBP2P_KEYSTORE, p2p_a)
    put(ETH_KEYSTORE, (b / ETH_KEYSTORE).read_bytes())
    with pytest.raises(IdentityError, match="come from different nodes"):
        load_identity(a, "pw")
    # the libp2p keystore in place of the Ethereum one
    put(ETH_KEYSTORE, p2p_a)
    with pytest.raises(IdentityError, match="not an Ethereum key"):
        load_identity(a, "pw")
    # a recorded peer id or address edited
    doc = json.loads(p2p_a)
    doc["dainode"]["peer_id"] = json.loads((b / LIBP2P_KEYSTORE).read_text())["dainode"]["peer_id"]
    put(ETH_KEYSTORE, eth_a)
    put(LIBP2P_KEYSTORE, json.dumps(doc).encode())
    with pytest.raises(IdentityError, match="records peer id"):
        load_identity(a, "pw")
    put(LIBP2P_KEYSTORE, p2p_a)
    doc = json.loads(eth_a)
    doc["address"] = json.loads((b / ETH_KEYSTORE).read_text())["address"]
    put(ETH_KEYSTORE, json.dumps(doc).encode())
    with pytest.raises(IdentityError, match="records address"):
        load_identity(a, "pw")
    put(ETH_KEYSTORE, eth_a)
    assert load_identity(a, "pw").address  # the original pair still loads


@pytest.mark.parametrize("rel", [ETH_KEYSTORE, LIBP2P_KEYSTORE])
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_key_file_others_can_read_is_refused_with_the_chmod_to_run(tmp_path, rel, mode):
    d = tmp_path / "n"
    init_identity(d, "pw", light_kdf=True)
    os.chmod(d / rel, mode)
    with pytest.raises(IdentityError, match=rf"mode {mode:04o}.*`chmod 600 {d / rel}`"):
        load_identity(d, "pw")
    assert stat.S_IMODE(os.stat(d / rel).st_mode) == mode  # refused, not changed behind the owner's back
    os.chmod(d / rel, 0o600)
    assert load_identity(d, "pw").address


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


def test_no_identity_at_all_says_to_run_init(tmp_path):
    with pytest.raises(IdentityError, match="holds no identity.*dainode init"):
        load_identity(tmp_path / "empty", "pw")
