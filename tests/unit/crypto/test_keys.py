"""Sealed key files: round trip, wrong password, damage, permissions, public-key export and ids."""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from dainode.crypto import envelope as env
from dainode.crypto import keys
from dainode.crypto.ckks import CkksContext
from dainode.errors import CryptoError, IdentityError, WrongPasswordError

PW = "correct horse"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("node")
    return data_dir, keys.init_envelope_keys(data_dir, PW, light_kdf=True)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_envelope_keys_round_trip_and_permissions(node):
    data_dir, created = node
    for rel in (keys.RSA_KEY_FILE, keys.X25519_KEY_FILE):
        assert _mode(data_dir / rel) == 0o600
        assert b"PRIVATE" not in (data_dir / rel).read_bytes()
    assert _mode(data_dir / "keys") == 0o700
    loaded = keys.load_envelope_keys(data_dir, PW)
    assert keys.key_id(loaded.rsa) == keys.key_id(created.rsa)
    assert keys.key_id(loaded.x25519) == keys.key_id(created.x25519)
    assert loaded.rsa.key_size == 3072
    # the loaded keys open an envelope sealed to the created ones
    ad = env.associated_data("test")
    blob = env.encrypt(b"secret", [created.rsa_public, created.x25519_public], ad)
    assert env.decrypt(blob, loaded.private_for(keys.key_id(created.x25519)), ad) == b"secret"
    assert env.decrypt(blob, loaded.rsa, ad) == b"secret"
    again, was_created = keys.load_or_init_envelope_keys(data_dir, PW)
    assert not was_created and keys.key_id(again.rsa) == keys.key_id(created.rsa)


def test_wrong_password(node):
    data_dir, _ = node
    with pytest.raises(WrongPasswordError, match="wrong password"):
        keys.load_envelope_keys(data_dir, "incorrect")


def test_damaged_file_is_not_reported_as_wrong_password(node, tmp_path):
    data_dir, created = node
    blob = bytearray((data_dir / keys.X25519_KEY_FILE).read_bytes())
    blob[-5] ^= 1
    with pytest.raises(IdentityError, match="damaged") as excinfo:
        keys.unseal(bytes(blob), PW, "x25519")
    assert not isinstance(excinfo.value, WrongPasswordError)
    with pytest.raises(IdentityError, match="holds a 'x25519' key"):
        keys.unseal(bytes(blob), PW, "rsa")
    with pytest.raises(IdentityError, match="bad magic"):
        keys.unseal(b"garbage", PW, "rsa")


def test_refuses_to_overwrite(node):
    data_dir, _ = node
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        keys.init_envelope_keys(data_dir, PW, light_kdf=True)


def test_kdf_parameters_recorded_in_file(tmp_path):
    blob = keys.seal(b"x", PW, "t", light_kdf=True)
    assert blob[7] == keys.KDF_LOG2N_LIGHT  # log2N right after magic, version, kind length, kind
    assert keys.unseal(blob, PW, "t") == b"x"


def test_public_key_export_and_ids(node):
    _, k = node
    for pub in (k.rsa_public, k.x25519_public):
        pem = keys.export_public_pem(pub)
        assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
        back = keys.load_public_key(pem)
        assert keys.key_id(back) == keys.key_id(pub) == hashlib.sha256(keys.public_key_bytes(pub)).digest()
        der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert keys.key_id(keys.load_public_key(der)) == keys.key_id(pub)
    raw = keys.public_key_bytes(k.x25519_public)
    assert len(raw) == 32 and keys.key_id(keys.load_public_key(raw)) == keys.key_id(k.x25519_public)
    with pytest.raises(CryptoError, match="not a valid public key"):
        keys.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_ckks_context_sealed(tmp_path):
    ctx = CkksContext.create()
    path = keys.save_ckks_context(tmp_path, "task-1", ctx, PW, light_kdf=True)
    assert _mode(path) == 0o600 and path.parent == tmp_path / "keys"
    back = keys.load_ckks_context(tmp_path, "task-1", PW)
    assert back.has_secret_key and back.fingerprint == ctx.fingerprint
    assert np.allclose(back.decrypt(ctx.public().encrypt(np.array([1.0, 2.0]))), [1.0, 2.0], atol=1e-6)
    with pytest.raises(WrongPasswordError):
        keys.load_ckks_context(tmp_path, "task-1", "nope")
    with pytest.raises(CryptoError, match="public CKKS context"):
        keys.save_ckks_context(tmp_path, "pub", ctx.public(), PW, light_kdf=True)
    with pytest.raises(CryptoError, match="invalid CKKS key name"):
        keys.save_ckks_context(tmp_path, "../evil", ctx, PW, light_kdf=True)


def test_interrupted_init_is_backed_up_and_redone_but_a_lone_key_is_never_replaced(tmp_path):
    keys.write_sealed(tmp_path / keys.X25519_KEY_FILE, b"half-written init", PW, "x25519", light_kdf=True)
    (tmp_path / keys.ENVELOPE_INIT_MARKER).write_text("0\n")  # the marker of an init that died
    k, created = keys.load_or_init_envelope_keys(tmp_path, PW, light_kdf=True)
    assert created and keys.key_id(keys.load_envelope_keys(tmp_path, PW).x25519) == keys.key_id(k.x25519)
    backup = next((tmp_path / "keys").glob("backup-*-envelope-init"))
    assert keys.read_sealed(backup / "envelope-x25519.key", PW, "x25519") == b"half-written init"  # moved, not deleted
    for lost, kept in ((keys.X25519_KEY_FILE, keys.RSA_KEY_FILE), (keys.RSA_KEY_FILE, keys.X25519_KEY_FILE)):
        d = tmp_path / lost.replace("/", "-")
        keys.init_envelope_keys(d, PW, light_kdf=True)
        before = (d / kept).read_bytes()
        (d / lost).unlink()
        with pytest.raises(IdentityError, match=rf"{lost} is missing.*restore it from a backup"):
            keys.load_or_init_envelope_keys(d, PW, light_kdf=True)
        assert (d / kept).read_bytes() == before and not (d / lost).exists()


def test_sealed_key_files_are_never_replaced_and_must_be_private(tmp_path):
    ctx = CkksContext.create()
    path = keys.save_ckks_context(tmp_path, "task-1", ctx, PW, light_kdf=True)
    before = path.read_bytes()
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        keys.save_ckks_context(tmp_path, "task-1", CkksContext.create(), PW, light_kdf=True)
    assert path.read_bytes() == before
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match=rf"mode 0644.*chmod 600 {path}"):
        keys.load_ckks_context(tmp_path, "task-1", PW)
