"""Acceptance runs of the reference job: IID, label-skewed, CKKS-aggregated, poisoned."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.errors import AggregationError
from dainode.ml.reference import reference_job
from dainode.ml.simulate import run_federated

POISON = {"provider": 3, "kind": "sign_flip", "factor": 4.0}


def test_iid_reference_reaches_092(clean_iid):
    assert clean_iid.accuracy >= 0.92, clean_iid.history
    assert len(clean_iid.history) == 20 and len(clean_iid.round_ms) == 20
    # it learned over the rounds, not only at the end
    assert clean_iid.history[0]["accuracy"] < clean_iid.history[-1]["accuracy"]


def test_label_skewed_reference_reaches_085(digits):
    job = reference_job("label_skew", data=digits)
    # the split really is skewed: no provider sees all 10 classes
    assert all(len(np.unique(y)) < 10 for _, y in job.providers)
    res = run_federated(job)
    assert res.accuracy >= 0.85, res.history


@pytest.mark.slow
def test_ckks_aggregation_matches_plaintext(digits, clean_iid):
    res = run_federated(reference_job("iid", data=digits, ckks=True, eval_every=0))
    assert abs(res.accuracy - clean_iid.accuracy) <= 0.005
    # CKKS noise is ~1e-8 relative; after 20 rounds the models are still nearly identical
    assert np.max(np.abs(res.params - clean_iid.params)) < 1e-3


def test_ckks_refuses_nonlinear_rule_before_training(digits):
    with pytest.raises(AggregationError, match="not linear"):
        run_federated(reference_job("iid", data=digits, ckks=True, rule="median", rounds=1))


def test_poisoned_provider_fedavg_degrades_robust_rules_hold(digits, clean_iid):
    poisoned_avg = run_federated(reference_job("iid", data=digits, poison=POISON, eval_every=0))
    krum = run_federated(reference_job("iid", data=digits, poison=POISON, eval_every=0,
                                       rule={"name": "multikrum", "f": 1}))
    median = run_federated(reference_job("iid", data=digits, poison=POISON, eval_every=0, rule="median"))
    clean = clean_iid.accuracy
    assert poisoned_avg.accuracy < clean - 0.2, poisoned_avg.final
    assert krum.accuracy >= clean - 0.02
    assert median.accuracy >= clean - 0.02


def test_scaled_update_is_clipped_away(digits, clean_iid):
    """A provider boosting its update 20x: FedAvg is hurt, FedAvg with norm clipping is not."""
    boost = {"provider": 3, "kind": "scale", "factor": -20.0}
    plain = run_federated(reference_job("iid", data=digits, poison=boost, eval_every=0))
    clipped = run_federated(reference_job("iid", data=digits, poison=boost, eval_every=0, clip_norm=1.0))
    assert plain.accuracy < clean_iid.accuracy - 0.2
    assert clipped.accuracy > plain.accuracy + 0.2


def test_run_is_deterministic(digits):
    again = run_federated(reference_job("iid", data=digits, rounds=3, eval_every=0))
    again2 = run_federated(reference_job("iid", data=digits, rounds=3, eval_every=0))
    assert np.array_equal(again.params, again2.params)
