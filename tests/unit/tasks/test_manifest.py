"""Task manifest: the example parses, documents round-trip, and every kind of bad manifest names key, value and what is accepted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dainode.errors import ConfigError
from dainode.ml.aggregate import FedAvg, MultiKrum
from dainode.tasks.manifest import SCHEMA, Manifest, load_manifest, parse_manifest
from tests.unit.tasks.helpers import manifest_doc

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "task.example.toml"


def test_example_manifest_parses_to_the_ml_types():
    m = load_manifest(EXAMPLE)
    assert m.task.name == "digits-mlp" and m.task.rounds == 10 and m.task.providers == 4 and m.task.quorum == 3
    assert m.task.reward_pool_wei == 4 * 10**18
    assert m.model_spec.kind == "mlp" and m.model_spec.sizes == (64, 128, 10) and m.model_spec.seed == 0
    cfg = m.train_config
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.optimizer) == (1, 32, 0.1, "sgd")
    assert isinstance(m.rule, FedAvg)
    assert m.data_schema == {"features": 64, "dtype": "float32", "label_classes": list(range(10)),
                             "rows": {"min": 100}}
    assert (m.test.dataset, m.test.feature_scale, m.test.split_fraction, m.test.split_part) == ("digits", 0.0625, 0.2, "test")


def test_document_round_trip_is_canonical():
    m = load_manifest(EXAMPLE)
    doc = m.to_document()
    assert doc["schema"] == SCHEMA
    assert doc["task"]["reward_pool_wei"] == "4000000000000000000"  # wei as decimal strings
    again = Manifest.from_bytes(m.to_bytes())
    assert again == m and again.to_bytes() == m.to_bytes()
    assert m.to_bytes().startswith(b'{"data":')  # sorted keys, no whitespace


def test_document_needs_its_schema():
    doc = load_manifest(EXAMPLE).to_document()
    doc["schema"] = "dainode.task-manifest/0"
    with pytest.raises(ConfigError, match="schema.*dainode.task-manifest/1"):
        Manifest.from_document(doc)
    with pytest.raises(ConfigError, match="not a JSON document"):
        Manifest.from_bytes(b"{nope")


def test_options_reach_rule_and_training_config():
    d = manifest_doc(aggregation="multikrum", aggregation_params={"f": 1}, clip_norm=2.5)
    m = parse_manifest(d)
    assert isinstance(m.rule, MultiKrum) and m.rule.f == 1 and m.task.clip_norm == 2.5
    m = parse_manifest(manifest_doc(aggregation="fedprox", aggregation_params={"mu": 0.01}))
    assert m.train_config.prox_mu == 0.01 and isinstance(m.rule, FedAvg)
    d = manifest_doc()
    d["model"].update(kind="logistic", layers=[64, 10], optimizer="adam")
    m = parse_manifest(d)
    assert m.model_spec.kind == "logreg" and m.train_config.optimizer == "adam"
    d = manifest_doc(reward_pool_wei=10**18)  # an integer is accepted too
    assert parse_manifest(d).task.reward_pool_wei == 10**18


def _set(doc: dict, dotted: str, value) -> dict:
    *tables, key = dotted.split(".")
    t = doc
    for name in tables:
        t = t[name]
    if value is _DELETE:
        del t[key]
    else:
        t[key] = value
    return doc


_DELETE = object()

# (key, value, what the message must say is accepted)
BAD = [
    # missing keys
    ("task.rounds", _DELETE, "missing key task.rounds"),
    ("task.aggregation", _DELETE, "missing key task.aggregation"),
    ("model.lr", _DELETE, "missing key model.lr"),
    ("data.label_classes", _DELETE, "missing key data.label_classes"),
    ("test.dataset", _DELETE, "missing key test.dataset"),
    # wrong types
    ("task.rounds", "10", "expected an integer >= 1"),
    ("task.rounds", 2.0, "expected an integer >= 1"),
    ("task.providers", True, "expected an integer >= 1"),
    ("model.lr", "fast", "expected a finite number"),
    ("model.layers", "64,16,10", "a list of at least 2 integers"),
    ("task.name", 5, "expected a string"),
    ("task.reward_pool_wei", 1.5e18, "an amount in wei"),
    ("task.reward_pool_wei", "4e18", "not a decimal integer"),
    ("task.reward_pool_wei", "-1", "not a decimal integer"),
    # NaN and infinity
    ("model.lr", math.nan, "NaN and infinity are not accepted"),
    ("model.lr", math.inf, "NaN and infinity are not accepted"),
    ("data.min_quality", -math.inf, "NaN and infinity are not accepted"),
    ("task.clip_norm", math.nan, "NaN and infinity are not accepted"),
    # out of range
    ("task.rounds", 0, "out of range: expected an integer >= 1 and <= 65535"),
    ("task.rounds", 70000, "out of range"),
    ("task.providers", 65, "out of range: expected an integer >= 1 and <= 64"),
    ("task.seed", -1, "out of range"),
    ("model.lr", 0.0, "out of range: expected a finite number > 0"),
    ("data.min_quality", 1.5, "out of range: expected a finite number >= 0 and <= 1.0"),
    ("task.reward_pool_wei", "0", "out of range"),
    ("task.reward_pool_wei", str(2**128), "out of range"),
    ("test.feature_scale", -1.0, "out of range"),
    ("task.name", "bad name!", "expected 1-64 characters"),
    # cross-field rules
    ("task.quorum", 5, "must be <= task.providers (4)"),
    ("model.layers", [63, 16, 10], "the first layer must equal the feature count of [data] (64)"),
    ("model.layers", [64, 16, 9], "at least 10 outputs"),
    ("task.reward_pool_wei", "100", "must cover providers x (max_data_price_wei + max_compute_price_wei)"),
    # unknown choices
    ("task.aggregation", "mean", "unknown value: expected one of 'fedavg', 'fedprox', 'median', 'trimmed_mean', 'multikrum'"),
    ("task.privacy", "tee", "expected one of 'fl', 'he'"),
    ("model.kind", "cnn", "unknown model kind: expected one of mlp, logistic"),
    ("task.contribution", "banzhaf", "expected one of 'shapley', 'loo'"),
    # unknown keys
    ("task.roundz", 3, "unknown key task.roundz"),
    ("model.dropout", 0.5, "unknown key model.dropout"),
    ("test.split.shuffle", True, "unknown key test.split.shuffle"),
    ("task.aggregation_params.beta", 0.1, "unknown key task.aggregation_params.beta (value 0.1) for aggregation 'fedavg'"),
]


@pytest.mark.parametrize("key,value,accepted", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_manifest_names_key_value_and_accepted(key, value, accepted):
    doc = _set(manifest_doc(), key, value)
    with pytest.raises(ConfigError) as exc:
        parse_manifest(doc, source="t.toml")
    msg = str(exc.value)
    assert msg.startswith("t.toml: ")
    assert key in msg and exc.value.key == key
    assert accepted in msg
    if value is not _DELETE:
        assert repr(value) in msg or str(value) in msg


def test_unknown_table_and_missing_table():
    doc = manifest_doc()
    doc["extra"] = {}
    with pytest.raises(ConfigError, match="unknown table or key 'extra'"):
        parse_manifest(doc)
    doc = manifest_doc()
    del doc["data"]
    with pytest.raises(ConfigError, match=r"missing key manifest.data: expected a \[data\] table"):
        parse_manifest(doc)
    doc = manifest_doc()
    doc["model"] = [1, 2]
    with pytest.raises(ConfigError, match="model: must be a table"):
        parse_manifest(doc)


def test_rule_parameter_errors():
    with pytest.raises(ConfigError, match=r"task.aggregation_params.*beta must be in \[0, 0.5\)"):
        parse_manifest(manifest_doc(aggregation="trimmed_mean", aggregation_params={"beta": 0.7}))
    with pytest.raises(ConfigError, match="multikrum with f=2 needs task.providers >= 5"):
        parse_manifest(manifest_doc(aggregation="multikrum", aggregation_params={"f": 2}))
    with pytest.raises(ConfigError, match="task.aggregation_params.mu.*>= 0"):
        parse_manifest(manifest_doc(aggregation="fedprox", aggregation_params={"mu": -1}))
    with pytest.raises(ConfigError, match="task.aggregation_params.f.*finite number"):
        parse_manifest(manifest_doc(aggregation="multikrum", aggregation_params={"f": math.inf}))
    with pytest.raises(ConfigError, match="privacy 'he' .* needs a linear rule"):
        parse_manifest(manifest_doc(aggregation="median", privacy="he"))


def test_load_manifest_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; write one like config/task.example.toml"):
        load_manifest(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[task\nname = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_manifest(bad)
    nan = tmp_path / "nan.toml"
    nan.write_text(EXAMPLE.read_text().replace("lr = 0.1 ", "lr = nan "))
    with pytest.raises(ConfigError, match="model.lr") as exc:
        load_manifest(nan)
    assert exc.value.key == "model.lr" and "NaN" in str(exc.value)


def test_example_documents_every_key():
    """Every key the parser reads appears in config/task.example.toml (commented-out optional ones count)."""
    text = EXAMPLE.read_text()
    m = load_manifest(EXAMPLE)
    doc = m.to_document()
    keys = [k for sec in ("task", "model", "data") for k in doc[sec]] + ["dataset", "label_column", "feature_scale",
                                                                         "fraction", "seed", "part", "clip_norm"]
    for k in keys:
        assert f"{k} =" in text, f"{k} is not documented in {EXAMPLE.name}"


def test_quorum_lost_rounds_is_optional_and_leaves_the_document_alone_when_unset():
    from tests.unit.tasks.helpers import manifest_doc

    plain = parse_manifest(manifest_doc())
    assert plain.task.quorum_lost_rounds is None and "quorum_lost_rounds" not in plain.to_document()["task"]
    m = parse_manifest(manifest_doc(quorum_lost_rounds=2))
    assert m.task.quorum_lost_rounds == 2 and Manifest.from_bytes(m.to_bytes()).task.quorum_lost_rounds == 2
    with pytest.raises(ConfigError, match="quorum_lost_rounds"):
        parse_manifest(manifest_doc(quorum_lost_rounds=-1))
