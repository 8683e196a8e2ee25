"""CKKS contexts and encrypted vectors: round trip, linear operations, public context, hostile bytes."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.crypto.ckks import CkksContext, EncryptedVector, encrypted_weighted_sum
from dainode.errors import CryptoError


@pytest.fixture(scope="module")
def ctx() -> CkksContext:
    return CkksContext.create()


@pytest.fixture(scope="module")
def pub(ctx) -> CkksContext:
    return ctx.public()


def test_round_trip_any_length(ctx, pub):
    rng = np.random.default_rng(0)
    for n in (0, 1, ctx.slot_count, ctx.slot_count + 1, 3 * ctx.slot_count - 7):
        v = rng.normal(size=n)
        ev = pub.encrypt(v)
        assert ev.length == n
        assert len(ev.chunks) == -(-n // ctx.slot_count)
        out = ctx.decrypt(ev)
        assert out.dtype == np.float64 and out.shape == (n,)
        if n:
            assert np.max(np.abs(out - v)) < 1e-6


def test_serialised_vector_round_trip(ctx, pub):
    v = np.linspace(-3, 3, 10_000)
    blob = pub.encrypt(v).to_bytes()
    back = EncryptedVector.from_bytes(pub, blob)
    assert back.length == v.size
    assert np.max(np.abs(ctx.decrypt(back) - v)) < 1e-6


def test_sum_scale_and_weighted_sum(ctx, pub):
    rng = np.random.default_rng(1)
    vs = [rng.normal(size=5000) for _ in range(4)]
    evs = [pub.encrypt(v) for v in vs]
    assert np.max(np.abs(ctx.decrypt(evs[0] + evs[1]) - (vs[0] + vs[1]))) < 1e-6
    assert np.max(np.abs(ctx.decrypt(evs[2].scale(-0.25)) - (-0.25 * vs[2]))) < 1e-6
    weights = [0.1, 0.2, 0.3, 0.4]
    expected = sum(w * v for w, v in zip(weights, vs))
    got = ctx.decrypt(encrypted_weighted_sum(evs, weights))
    assert np.max(np.abs(got - expected)) < 1e-6
    # `+` leaves its operands untouched; add_ works in place
    assert np.max(np.abs(ctx.decrypt(evs[0]) - vs[0])) < 1e-6
    acc = pub.encrypt(vs[0])
    acc.add_(evs[1])
    assert np.max(np.abs(ctx.decrypt(acc) - (vs[0] + vs[1]))) < 1e-6


def test_depth_exhaustion_is_a_clear_error(pub):
    ev = pub.encrypt(np.ones(4)).scale(0.5).scale(0.5)
    with pytest.raises(CryptoError, match="no multiplicative level left"):
        ev.scale(0.5)


def test_public_context_cannot_decrypt_and_is_small(ctx, pub):
    assert ctx.has_secret_key and not pub.has_secret_key
    pub_bytes = pub.to_bytes()
    assert len(pub_bytes) < 2_000_000
    assert len(pub_bytes) < len(ctx.to_bytes())
    peer = CkksContext.from_bytes(pub_bytes)
    assert not peer.has_secret_key
    assert peer.fingerprint == ctx.fingerprint
    ev = peer.encrypt(np.arange(5.0))
    with pytest.raises(CryptoError, match="no secret key"):
        peer.decrypt(ev)
    assert np.max(np.abs(ctx.decrypt(ev) - np.arange(5.0))) < 1e-6


def test_secret_context_round_trips_through_bytes(ctx):
    again = CkksContext.from_bytes(ctx.to_bytes())
    assert again.has_secret_key and again.fingerprint == ctx.fingerprint
    ev = ctx.encrypt(np.array([1.5, -2.5]))
    assert np.allclose(again.decrypt(EncryptedVector.from_bytes(again, ev.to_bytes())), [1.5, -2.5], atol=1e-6)


def test_other_key_pair_is_refused(ctx, pub):
    other = CkksContext.create()
    ev = other.encrypt(np.ones(3))
    with pytest.raises(CryptoError, match="different CKKS key pair"):
        EncryptedVector.from_bytes(pub, ev.to_bytes())
    with pytest.raises(CryptoError, match="different CKKS key pair"):
        ctx.decrypt(ev)
    with pytest.raises(CryptoError, match="different CKKS key pairs"):
        pub.encrypt(np.ones(3)) + ev


def test_malformed_vector_bytes(pub):
    blob = pub.encrypt(np.arange(5000.0)).to_bytes()
    bad = {
        "empty": b"",
        "magic": b"XXXX" + blob[4:],
        "version": blob[:4] + b"\x09" + blob[5:],
        "truncated": blob[:-100],
        "trailing": blob + b"\x00",
        "header only": blob[:37],
    }
    # chunk count that does not match the declared length
    bad["chunks"] = blob[:33] + (3).to_bytes(4, "big") + blob[37:]
    # corrupt the first ciphertext's body (after its 4-byte length prefix)
    corrupt = bytearray(blob)
    corrupt[41:61] = b"\xff" * 20
    bad["ciphertext"] = bytes(corrupt)
    for name, data in bad.items():
        with pytest.raises(CryptoError):
            EncryptedVector.from_bytes(pub, data)
    with pytest.raises(CryptoError, match="must have 2 ciphertexts"):
        EncryptedVector.from_bytes(pub, bad["chunks"])
    with pytest.raises(CryptoError, match="version 9"):
        EncryptedVector.from_bytes(pub, bad["version"])


def test_malformed_context_bytes():
    for data in (b"", b"DCKC", b"DCKC\x01garbage", b"nope" * 10, b"DCKC\x02" + b"\x00" * 10):
        with pytest.raises(CryptoError):
            CkksContext.from_bytes(data)


def test_bad_inputs(pub):
    with pytest.raises(CryptoError, match="1-D"):
        pub.encrypt(np.ones((2, 2)))
    with pytest.raises(CryptoError, match="NaN"):
        pub.encrypt(np.array([1.0, np.nan]))
    with pytest.raises(CryptoError, match="lengths"):
        pub.encrypt(np.ones(3)) + pub.encrypt(np.ones(4))
    with pytest.raises(CryptoError, match="weights"):
        encrypted_weighted_sum([pub.encrypt(np.ones(3))], [1.0, 2.0])
    with pytest.raises(CryptoError, match="invalid CKKS parameters"):
        CkksContext.create(poly_modulus_degree=1000)
    # 200 bits of modulus at N=4096 would be far below 128-bit security: SEAL refuses
    with pytest.raises(CryptoError, match="invalid CKKS parameters"):
        CkksContext.create(poly_modulus_degree=4096)


def test_addition_does_not_use_up_the_operands_depth(ctx, pub):
    # TenSEAL mod-switches the right operand in place when levels differ; EncryptedVector
    # must not let that leak: after `low + fresh`, `fresh` still has both levels.
    fresh = pub.encrypt(np.ones(8))
    low = pub.encrypt(np.ones(8)).scale(0.5).scale(0.5)
    total = low + fresh
    acc = pub.encrypt(np.ones(8)).scale(0.5).scale(0.5)
    acc.add_(fresh)
    assert np.allclose(ctx.decrypt(fresh.scale(0.5).scale(0.5)), 0.25, atol=1e-6)
    assert np.allclose(ctx.decrypt(total), 1.25, atol=1e-6)
    assert np.allclose(ctx.decrypt(acc), 1.25, atol=1e-6)
