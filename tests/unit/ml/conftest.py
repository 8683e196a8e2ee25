"""Shared, expensive fixtures for the ml tests: the reference data and one clean reference run."""

from __future__ import annotations

import pytest

from dainode.ml.reference import reference_data, reference_job
from dainode.ml.simulate import run_federated


@pytest.fixture(scope="session")
def digits():
    """(train, test) of the reference job."""
    return reference_data()


@pytest.fixture(scope="session")
def clean_iid(digits):
    """The reference job, 4 IID providers, plaintext FedAvg, 20 rounds (shared by several tests)."""
    return run_federated(reference_job("iid", data=digits))
