"""Local training and evaluation on small data: determinism, FedProx, all model kinds."""

from __future__ import annotations

import numpy as np
import pytest

from dainode.errors import MLError
from dainode.ml.evaluate import evaluate, predict
from dainode.ml.spec import ModelSpec, init_params
from dainode.ml.train import TrainConfig, batch_plan, local_train

MLP = ModelSpec.from_dict({"kind": "mlp", "sizes": [64, 32, 10], "seed": 0})


@pytest.fixture(scope="module")
def small(digits):
    train, test = digits
    return train.x[:300], train.y[:300], test.x, test.y


def test_same_seed_same_params_other_seed_differs(small):
    x, y, _, _ = small
    w0 = init_params(MLP)
    cfg = TrainConfig(epochs=2, batch_size=32, learning_rate=0.1)
    a = local_train(MLP, w0, x, y, cfg, seed=[0, 1, 2])
    b = local_train(MLP, w0, x, y, cfg, seed=[0, 1, 2])
    c = local_train(MLP, w0, x, y, cfg, seed=[0, 1, 3])
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    assert a.n_examples == 300
    assert np.allclose(a.update, a.params - w0)


def test_batch_plan_covers_every_row_once_per_epoch():
    plan = batch_plan(70, TrainConfig(epochs=2, batch_size=32), seed=5)
    assert plan.shape == (6, 32)  # 3 batches per epoch, the last padded
    for e in range(2):
        rows = plan[3 * e:3 * e + 3].ravel()
        assert sorted(rows[rows >= 0].tolist()) == list(range(70))
        assert (rows < 0).sum() == 26


def test_training_improves_test_accuracy(small):
    x, y, xt, yt = small
    w0 = init_params(MLP)
    before = evaluate(MLP, w0, xt, yt)
    res = local_train(MLP, w0, x, y, TrainConfig(epochs=5, batch_size=32, learning_rate=0.1))
    after = evaluate(MLP, res.params, xt, yt)
    assert after["accuracy"] > before["accuracy"] + 0.3
    assert after["loss"] < before["loss"]
    assert set(after["per_class_accuracy"]) == set(range(10))
    # per-class accuracies are consistent with the overall one
    pred = predict(MLP, res.params, xt)
    for c, acc in after["per_class_accuracy"].items():
        assert acc == pytest.approx(np.mean(pred[yt == c] == c))


def test_fedprox_keeps_update_closer_to_global(small):
    x, y, _, _ = small
    w0 = init_params(MLP)
    free = local_train(MLP, w0, x, y, TrainConfig(epochs=3, learning_rate=0.1))
    prox = local_train(MLP, w0, x, y, TrainConfig(epochs=3, learning_rate=0.1, prox_mu=1.0))
    assert np.linalg.norm(prox.update) < 0.9 * np.linalg.norm(free.update)


@pytest.mark.parametrize("spec_d, opt, lr", [
    ({"kind": "logreg", "sizes": [64, 10], "seed": 0}, "sgd", 0.5),
    ({"kind": "cnn", "input_shape": [8, 8, 1], "channels": [4], "classes": 10, "seed": 0}, "adam", 0.01),
    ({"kind": "mlp", "sizes": [64, 16, 10], "seed": 0}, "momentum", 0.05),
])
def test_other_models_and_optimizers_learn(small, spec_d, opt, lr):
    x, y, xt, yt = small
    spec = ModelSpec.from_dict(spec_d)
    w0 = init_params(spec)
    res = local_train(spec, w0, x, y, TrainConfig(epochs=5, learning_rate=lr, optimizer=opt))
    assert evaluate(spec, res.params, xt, yt)["accuracy"] > 0.6


def test_bad_training_input(small):
    x, y, _, _ = small
    w0 = init_params(MLP)
    with pytest.raises(MLError, match="labels must be in"):
        local_train(MLP, w0, x, y + 10, TrainConfig())
    with pytest.raises(MLError, match="features have shape"):
        local_train(MLP, w0, x[:, :10], y, TrainConfig())
    with pytest.raises(MLError, match="empty"):
        local_train(MLP, w0, x[:0], y[:0], TrainConfig())
    with pytest.raises(MLError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(MLError, match="bad training config"):
        TrainConfig.from_dict({"epochs": 1, "lr": 0.1})


def test_evaluate_refuses_out_of_range_labels(small):
    """JAX clamps out-of-range gather indices; evaluate must not report a loss for label 10."""
    _, _, xt, yt = small
    with pytest.raises(MLError, match=r"test labels must be in \[0, 10\)"):
        evaluate(MLP, init_params(MLP), xt, np.where(yt == 0, 10, yt))
    with pytest.raises(MLError, match="as many labels as rows"):
        evaluate(MLP, init_params(MLP), xt, yt[:-1])
