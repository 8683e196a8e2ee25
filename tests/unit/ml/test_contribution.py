"""Contribution shares from stored round updates: shuffled labels, identical providers, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.errors import MLError
from dainode.ml.contribution import RoundRecord, leave_one_out, shapley
from dainode.ml.reference import REFERENCE_MODEL, reference_job
from dainode.ml.simulate import run_federated


@pytest.fixture(scope="module")
def shuffled_run(digits):
    """Reference IID job where provider 3's labels are a random permutation of its true ones."""
    job = reference_job("iid", data=digits, record_updates=True, eval_every=0)
    x3, y3 = job.providers[3]
    job.providers[3] = (x3, np.random.default_rng(1).permutation(y3))
    return run_federated(job)


def test_shuffled_labels_get_a_clearly_lower_share(digits, shuffled_run):
    test = digits[1]
    for result in (shapley(REFERENCE_MODEL, shuffled_run.records, test.x, test.y, 4),
                   leave_one_out(REFERENCE_MODEL, shuffled_run.records, test.x, test.y, 4)):
        shares = result["shares"]
        assert sum(shares.values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in shares.values())
        honest = [shares[i] for i in range(3)]
        assert shares[3] < 0.5 * min(honest), result


def test_shapley_efficiency_and_determinism(digits, shuffled_run):
    test = digits[1]
    a = shapley(REFERENCE_MODEL, shuffled_run.records, test.x, test.y, 4)
    b = shapley(REFERENCE_MODEL, shuffled_run.records, test.x, test.y, 4)
    assert a == b
    # exact round-wise Shapley values telescope to the loss reduction of the whole run
    from dainode.ml.evaluate import evaluate
    from dainode.ml.spec import init_params
    gain = evaluate(REFERENCE_MODEL, init_params(REFERENCE_MODEL), test.x, test.y)["loss"] - \
        evaluate(REFERENCE_MODEL, shuffled_run.params, test.x, test.y)["loss"]
    assert sum(a["values"].values()) == pytest.approx(gain, rel=1e-3)


def test_monte_carlo_is_seeded_and_close_to_exact(digits, shuffled_run):
    test = digits[1]
    recs = shuffled_run.records[:5]
    exact = shapley(REFERENCE_MODEL, recs, test.x, test.y, 4)["values"]
    mc1 = shapley(REFERENCE_MODEL, recs, test.x, test.y, 4, exact_max=0, permutations=48, seed=3)
    mc2 = shapley(REFERENCE_MODEL, recs, test.x, test.y, 4, exact_max=0, permutations=48, seed=3)
    assert mc1 == mc2
    scale = max(abs(v) for v in exact.values())
    for i in range(4):
        assert mc1["values"][i] == pytest.approx(exact[i], abs=0.15 * scale)


def test_identical_providers_get_equal_shares(digits):
    """Providers 0 and 1 hold the same shard (trained with different batch orders)."""
    test = digits[1]
    job = reference_job("iid", data=digits, record_updates=True, eval_every=0)
    job.providers[1] = job.providers[0]
    res = run_federated(job)
    shares = shapley(REFERENCE_MODEL, res.records, test.x, test.y, 4)["shares"]
    assert shares[0] == pytest.approx(shares[1], abs=0.05)
    assert all(s > 0.1 for s in shares.values())


def test_identical_updates_get_exactly_equal_shares_and_negatives_clip(digits):
    """Symmetry with the same update; a harmful update's negative value is clipped to share 0."""
    from dainode.ml.spec import init_params
    from dainode.ml.train import local_train
    from dainode.ml.reference import REFERENCE_TRAIN

    train, test = digits
    w0 = init_params(REFERENCE_MODEL)
    good = local_train(REFERENCE_MODEL, w0, train.x[:400], train.y[:400], REFERENCE_TRAIN).update
    rec = RoundRecord(w0, np.stack([good, good, -3 * good]), np.array([400.0, 400.0, 400.0]))
    res = shapley(REFERENCE_MODEL, [rec], test.x, test.y, 3)
    assert res["values"][0] == pytest.approx(res["values"][1], abs=1e-9)
    assert res["values"][2] < 0 and res["shares"][2] == 0
    assert res["shares"][0] == pytest.approx(0.5)


def test_absent_provider_only_earns_in_rounds_it_joined(digits, shuffled_run):
    """Round records name their participants; a provider missing from a round gets nothing for it."""
    test = digits[1]
    recs = []
    for t, r in enumerate(shuffled_run.records[:6]):
        keep = [0, 1, 2] if t >= 3 else [0, 1]  # provider 2 joins at round 3; provider 3 never
        recs.append(RoundRecord(r.global_params, r.updates[keep], r.weights[keep], providers=keep))
    res = shapley(REFERENCE_MODEL, recs, test.x, test.y, 4)
    assert all(set(pr) == ({0, 1, 2} if t >= 3 else {0, 1}) for t, pr in enumerate(res["per_round"]))
    assert res["values"][3] == 0 and res["shares"][3] == 0
    assert res["values"][2] == pytest.approx(sum(pr[2] for pr in res["per_round"][3:]))
    with pytest.raises(MLError, match="outside 0..3"):
        shapley(REFERENCE_MODEL, [RoundRecord(recs[0].global_params, recs[0].updates, recs[0].weights,
                                              providers=[0, 7])], test.x, test.y, 4)
