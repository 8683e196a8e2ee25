"""Rotation-free CKKS gradients: no Galois keys, no secret in the shared context, gradients as in float64, masks that hide slots."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.crypto import he_linear as hel
from dainode.crypto.ckks import CkksContext
from dainode.errors import CryptoError


@pytest.fixture(scope="module")
def keys():
    key = hel.create_he_context()
    pub = hel.check_he_context(CkksContext.from_bytes(hel.eval_context_bytes(key)))
    return key, pub


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(3)
    x = np.clip(rng.standard_normal((150, 6)), -4, 4)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(float)
    return x, y


def test_shared_context_has_relinearisation_key_only(keys):
    key, pub = keys
    assert not pub.has_secret_key and not pub.tenseal.has_galois_keys() and pub.tenseal.has_relin_keys()
    assert pub.fingerprint == key.fingerprint
    raw = hel.eval_context_bytes(key)
    assert len(raw) < 4_000_000, len(raw)  # the single-process trainer's context (all Galois keys) was 81 MB
    back = CkksContext.from_bytes(hel.secret_context_bytes(key))
    assert back.has_secret_key and back.fingerprint == key.fingerprint


@pytest.mark.parametrize("kind", hel.KINDS)
def test_masked_gradient_sums_to_the_float64_gradient(keys, rows, kind):
    key, pub = keys
    x, y = rows
    data = hel.HeData.from_bytes(pub, hel.encrypt_data(pub, x, y, kind).to_bytes())
    wb = np.array([0.3, -0.2, 0.1, 0.0, 0.05, -0.1, 0.2])
    model = hel.model_from_bytes(pub, hel.model_to_bytes(hel.encrypt_model(key, wb)), 7)
    grads = hel.grads_from_bytes(key, hel.grads_to_bytes(hel.masked_gradient(model, data, kind)), 7)
    got = hel.decrypt_gradient(key, grads)
    x1 = np.hstack([x, np.ones((len(x), 1))])
    z = x1 @ wb
    err = (0.5 + 0.197 * z - 0.004 * z**3 if kind == "logistic" else z) - y
    want = x1.T @ err
    assert np.max(np.abs(got - want)) < 0.02 * max(1.0, np.max(np.abs(want))), (got, want)
    # what the key holder sees slot by slot is masked: no slot is a per-sample term x_ij * err_i
    slots = key.decrypt(grads[0])[: len(x)]
    assert np.median(np.abs(slots)) > 1000 * np.max(np.abs(x1[:, 0] * err))
    assert hel.decrypt_gradient(key, grads).tobytes() == got.tobytes()  # decryption is deterministic


def test_bad_inputs_are_refused(keys, rows):
    key, pub = keys
    x, y = rows
    with pytest.raises(CryptoError, match="standardise"):
        hel.encrypt_data(pub, x * 10, y, "logistic")
    with pytest.raises(CryptoError, match="0 or 1"):
        hel.encrypt_data(pub, x, y * 2, "logistic")
    blob = hel.encrypt_data(pub, x[:10], y[:10], "logistic").to_bytes()
    with pytest.raises(CryptoError, match="truncated"):
        hel.HeData.from_bytes(pub, blob[:-100])
    with pytest.raises(CryptoError, match="needs 8"):
        hel.model_from_bytes(pub, hel.model_to_bytes(hel.encrypt_model(key, np.zeros(7))), 8)
    other = hel.create_he_context()
    with pytest.raises(CryptoError, match="different CKKS key pair"):
        hel.model_from_bytes(other, hel.model_to_bytes(hel.encrypt_model(key, np.zeros(7))), 7)
    with pytest.raises(CryptoError, match="no secret key"):
        hel.secret_context_bytes(pub)
    small = CkksContext.create(8192, (40, 21, 21, 40), 21)
    with pytest.raises(CryptoError, match="he mode uses"):
        hel.check_he_context(small)
