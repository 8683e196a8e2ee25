"""deploy.json constructor arguments: defaults, overrides, and "@Name" references to contracts deployed earlier."""

from __future__ import annotations

import pytest

from dainode.chain.devchain import constructor_args, load_deploy_spec
from dainode.errors import ConfigError

DEPLOYER = "0x" + "11" * 20
REGISTRY = "0x" + "22" * 20


def test_training_task_gets_the_registry_deployed_before_it():
    spec = load_deploy_spec()
    assert spec["Registry"]["order"] < spec["TrainingTask"]["order"]
    args = constructor_args("TrainingTask", spec["TrainingTask"], DEPLOYER, None, {"Registry": REGISTRY})
    assert [a.lower() for a in args] == [REGISTRY, "0x" + "00" * 20]


def test_reference_to_a_contract_not_yet_deployed_is_a_clear_error():
    spec = {"args": ["registry"], "types": ["address"], "defaults": {"registry": "@Registry"}}
    with pytest.raises(ConfigError, match="names Registry, which is not deployed before TrainingTask"):
        constructor_args("TrainingTask", spec, DEPLOYER, None, {})


def test_override_replaces_the_reference():
    spec = {"args": ["registry"], "types": ["address"], "defaults": {"registry": "@Registry"}}
    assert constructor_args("TrainingTask", spec, DEPLOYER, {"registry": REGISTRY}, {})[0].lower() == REGISTRY
