"""Model specs, seeded init, flatten/unflatten, and the lazy-JAX import rule."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dainode.errors import MLError
from dainode.ml.spec import ModelSpec, flatten, init_params, unflatten

SPECS = [
    {"kind": "logreg", "sizes": [30, 2], "seed": 1},
    {"kind": "mlp", "sizes": [64, 128, 10], "seed": 0},
    {"kind": "cnn", "input_shape": [8, 8, 1], "channels": [4, 8], "classes": 10, "seed": 3},
]


@pytest.mark.parametrize("d", SPECS, ids=lambda d: d["kind"])
def test_flatten_unflatten_round_trip(d):
    spec = ModelSpec.from_dict(json.loads(json.dumps(d)))
    assert spec.to_dict() == d
    vec = init_params(spec)
    assert vec.dtype == np.float32 and vec.shape == (spec.n_params,)
    parts = unflatten(spec, vec)
    assert [k for k, _ in spec.layout()] == list(parts)
    assert all(parts[k].shape == s for k, s in spec.layout())
    assert np.array_equal(flatten(parts), vec)
    assert np.array_equal(flatten(list(parts.values())), vec)


def test_mlp_param_count_and_seeded_init():
    spec = ModelSpec.from_dict(SPECS[1])
    assert spec.n_params == 64 * 128 + 128 + 128 * 10 + 10
    assert np.array_equal(init_params(spec), init_params(spec))
    other = ModelSpec.from_dict({**SPECS[1], "seed": 1})
    assert not np.array_equal(init_params(spec), init_params(other))
    b = unflatten(spec, init_params(spec))["dense0.b"]
    assert not b.any()  # biases start at zero


@pytest.mark.parametrize("bad, msg", [
    ({"kind": "rnn", "sizes": [1, 2]}, "unknown"),
    ({"kind": "mlp", "sizes": [64]}, "sizes"),
    ({"kind": "logreg", "sizes": [4, 8, 2]}, "logreg"),
    ({"kind": "mlp", "sizes": [64, -1, 10]}, "positive"),
    ({"kind": "mlp", "sizes": [4, 2], "seed": -1}, "seed"),
    ({"kind": "mlp", "sizes": [4, 2], "lr": 0.1}, "unknown field"),
    ({"kind": "cnn", "input_shape": [8, 8], "channels": [4], "classes": 10}, "cnn needs"),
])
def test_bad_specs_are_refused(bad, msg):
    with pytest.raises(MLError, match=msg):
        ModelSpec.from_dict(bad)


def test_unflatten_refuses_wrong_length():
    with pytest.raises(MLError, match=r"needs \(4290,\)"):
        unflatten(SPECS[1] | {"sizes": [64, 64, 2]}, np.zeros(10, np.float32))


def test_import_dainode_ml_does_not_import_jax():
    """A relaying node imports dainode.ml (specs, aggregation) without paying for JAX."""
    code = ("import sys, dainode.ml, dainode.ml.spec, dainode.ml.aggregate, dainode.ml.datasets, "
            "dainode.ml.preprocess, dainode.ml.trainconfig, dainode.ml.devices; print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_params_bytes_round_trip_and_checks():
    from dainode.ml.spec import params_from_bytes, params_to_bytes

    spec = ModelSpec.from_dict(SPECS[0])
    vec = init_params(spec)
    blob = params_to_bytes(vec)
    assert len(blob) == 4 * spec.n_params
    assert np.array_equal(params_from_bytes(spec, blob), vec)
    with pytest.raises(MLError, match="needs 248"):
        params_from_bytes(spec, blob[:-4])
    bad = vec.copy()
    bad[5] = np.inf
    with pytest.raises(MLError, match="first at index 5"):
        params_from_bytes(spec, params_to_bytes(bad))
