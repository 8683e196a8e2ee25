"""Task manifest: parse and validate the model provider's TOML, and its canonical JSON document for IPFS."""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dainode.errors import AggregationError, ConfigError, MLError
from dainode.ml.aggregate import Rule, make_rule
from dainode.ml.preprocess import canonical_json
from dainode.ml.spec import ModelSpec
from dainode.ml.trainconfig import OPTIMIZERS, TrainConfig
from dainode.tasks.fields import Table

SCHEMA = "dainode.task-manifest/1"
AGGREGATIONS = ("fedavg", "fedprox", "median", "trimmed_mean", "multikrum")
PRIVACY_MODES = ("fl", "he")
INITS = ("seeded", "zeros")
# What each party can read, by privacy mode (task_status and docs/tasks.md say the same)
VISIBILITY = {
    "fl": {"compute_provider": "the data and the model in the clear, inside its own process (sealed for its key)",
           "model_provider": "each update and the models, never the data",
           "everyone_after_reveal": "updates, models and the test set (the task key is revealed)"},
    "he": {"compute_provider": "ciphertexts only: CKKS-encrypted rows, models and its masked update, in envelopes; "
                               "it holds no secret key",
           "model_provider": "the decrypted gradient sums and the models, never the data (each gradient slot it "
                             "decrypts is masked)",
           "everyone_after_reveal": "updates, models and the test set (the task key and the CKKS secret are revealed)"},
}
HE_MAX_LOCAL_EPOCHS = 8
HE_KINDS = ("logistic", "linear")  # binary: label_classes [0, 1], layers [features, 2] / [features, 1]
MODEL_KINDS = {"mlp": "mlp", "logistic": "logreg", "linear": "linreg"}  # manifest name -> dainode.ml.spec kind
PLANNED_KINDS = ()
CONTRIBUTION_METHODS = ("shapley", "loo")
UTILITIES = ("loss", "accuracy")
SPLIT_PARTS = ("test", "train")
MAX_PROVIDERS = 64  # TrainingTask.MAX_MATCHES
MAX_ROUNDS = 65535  # rounds are uint16 on chain
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# aggregation_params each rule accepts (fedprox's mu is the clients' proximal term, see TrainConfig.prox_mu)
RULE_PARAMS = {"fedavg": (), "fedprox": ("mu",), "median": (), "trimmed_mean": ("beta",), "multikrum": ("f", "m")}


@dataclass(frozen=True)
class TaskSection:
    name: str
    rounds: int
    providers: int
    local_epochs: int
    round_window_s: int
    quorum: int
    aggregation: str
    privacy: str
    reward_pool_wei: int
    max_data_price_wei: int
    max_compute_price_wei: int
    seed: int
    aggregation_params: dict = field(default_factory=dict)
    clip_norm: float | None = None
    contribution: str = "shapley"
    contribution_utility: str = "loss"
    quorum_lost_rounds: int | None = None  # abandon after this many rounds running end below quorum (None: never)


@dataclass(frozen=True)
class ModelSection:
    kind: str
    layers: tuple[int, ...]
    lr: float
    batch: int
    optimizer: str = "sgd"
    momentum: float = 0.9
    init: str | None = None  # None: seeded He-uniform (dainode.ml.spec.init_params); "zeros": all zero


@dataclass(frozen=True)
class DataSection:
    features: tuple[int, ...]
    label_classes: tuple[int, ...]
    min_rows: int
    min_quality: float


@dataclass(frozen=True)
class TestSection:
    dataset: str
    label_column: str | None = None
    feature_scale: float = 1.0
    split_fraction: float | None = None  # None: the whole dataset is the test set
    split_seed: int = 0
    split_part: str = "test"


@dataclass(frozen=True)
class Manifest:
    """A validated task manifest; build it with ``load_manifest``/``parse_manifest``/``from_document``."""

    task: TaskSection
    model: ModelSection
    data: DataSection
    test: TestSection

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec(kind=MODEL_KINDS[self.model.kind], sizes=self.model.layers, seed=self.task.seed)

    @property
    def train_config(self) -> TrainConfig:
        mu = float(self.task.aggregation_params.get("mu", 0.0)) if self.task.aggregation == "fedprox" else 0.0
        return TrainConfig(epochs=self.task.local_epochs, batch_size=self.model.batch, learning_rate=self.model.lr,
                           optimizer=self.model.optimizer, momentum=self.model.momentum, prox_mu=mu, seed=self.task.seed)

    @property
    def rule(self) -> Rule:
        params = {k: v for k, v in self.task.aggregation_params.items() if k != "mu"}
        return make_rule({"name": self.task.aggregation, **params})

    @property
    def data_schema(self) -> dict:
        """The required schema in ``dainode.ml.datasets.validate`` form."""
        feats = self.data.features
        return {"features": feats[0] if len(feats) == 1 else list(feats), "dtype": "float32",
                "label_classes": list(self.data.label_classes), "rows": {"min": self.data.min_rows}}

    def to_document(self) -> dict[str, Any]:
        """The JSON-able document (wei as decimal strings, a ``schema`` version) that goes on IPFS."""
        doc = {"schema": SCHEMA}
        for name in ("task", "model", "data", "test"):
            sec = {k: v for k, v in asdict(getattr(self, name)).items() if v is not None}
            if name == "task":
                for k in ("reward_pool_wei", "max_data_price_wei", "max_compute_price_wei"):
                    sec[k] = str(sec[k])
            if name == "test":
                sec["split"] = {"fraction": sec.pop("split_fraction", None), "seed": sec.pop("split_seed"),
                                "part": sec.pop("split_part")}
                if sec["split"]["fraction"] is None:
                    del sec["split"]
            doc[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in sec.items()}
        return doc

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_document())

    @classmethod
    def from_document(cls, doc: Any, *, source: str = "manifest document") -> "Manifest":
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise ConfigError(f"{source}: invalid value {got!r} for schema: expected {SCHEMA!r}", key="schema")
        return parse_manifest({k: v for k, v in doc.items() if k != "schema"}, source=source)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "manifest document") -> "Manifest":
        try:
            doc = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{source}: not a JSON document: {exc}") from None
        return cls.from_document(doc, source=source)


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest TOML file; ConfigError (exit 2) names the key, value and what is accepted."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"manifest file {path} does not exist; write one like config/task.example.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_manifest(doc, source=str(path))


def parse_manifest(doc: dict, *, source: str = "manifest") -> Manifest:
    """Validate a manifest given as a dict (TOML tables ``task``, ``model``, ``data``, ``test``)."""
    root = Table(doc, "manifest", source)
    tables = {n: root.raw(n, True, f"a [{n}] table") for n in ("task", "model", "data", "test")}
    extra = sorted(set(doc) - set(tables))
    if extra:
        raise ConfigError(f"{source}: unknown table or key {extra[0]!r}; a manifest has [task], [model], [data] "
                          "and [test]", key=extra[0])
    task = _task(Table(tables["task"], "task", source))
    data = _data(Table(tables["data"], "data", source))
    model = _model(Table(tables["model"], "model", source), data)
    test = _test(Table(tables["test"], "test", source))
    if task.privacy == "he":
        _check_he(task, model, data, source)
    m = Manifest(task, model, data, test)
    try:
        m.train_config
    except MLError as exc:
        raise ConfigError(f"{source}: [model] does not make a valid training config: {exc}", key="model") from None
    return m


def _task(t: Table) -> TaskSection:
    name = t.str("name")
    if not _NAME_RE.match(name):
        raise t.fail("name", name, "expected 1-64 characters A-Z a-z 0-9 . _ -, starting with a letter or digit")
    providers = t.int("providers", lo=1, hi=MAX_PROVIDERS)
    quorum = t.int("quorum", lo=1)
    if quorum > providers:
        raise t.fail("quorum", quorum, f"must be <= task.providers ({providers}): a round cannot wait for more "
                                       "updates than there are providers")
    aggregation = t.str("aggregation", choices=AGGREGATIONS)
    privacy = t.str("privacy", choices=PRIVACY_MODES)
    params = _rule_params(t, aggregation, providers)
    if privacy == "he" and not make_rule(aggregation).linear:
        raise t.fail("aggregation", aggregation, "privacy 'he' aggregates ciphertexts and needs a linear rule: "
                                                 "fedavg or fedprox")
    sec = TaskSection(
        name=name, rounds=t.int("rounds", lo=1, hi=MAX_ROUNDS), providers=providers,
        local_epochs=t.int("local_epochs", lo=1, hi=1000), round_window_s=t.int("round_window_s", lo=1, hi=7 * 86400),
        quorum=quorum, aggregation=aggregation, privacy=privacy, reward_pool_wei=t.wei("reward_pool_wei", lo=1),
        max_data_price_wei=t.wei("max_data_price_wei"), max_compute_price_wei=t.wei("max_compute_price_wei"),
        seed=t.int("seed", lo=0, hi=2**32 - 1), aggregation_params=params,
        clip_norm=t.float("clip_norm", lo=0, lo_open=True, optional=True),
        contribution=t.str("contribution", choices=CONTRIBUTION_METHODS, default="shapley"),
        contribution_utility=t.str("contribution_utility", choices=UTILITIES, default="loss"),
        quorum_lost_rounds=t.int("quorum_lost_rounds", lo=0, hi=MAX_ROUNDS, default=0) or None)
    reserved = providers * (sec.max_data_price_wei + sec.max_compute_price_wei)
    if reserved > sec.reward_pool_wei:
        raise t.fail("reward_pool_wei", str(sec.reward_pool_wei),
                     f"must cover providers x (max_data_price_wei + max_compute_price_wei) = {reserved}, the prices "
                     "the contract reserves at match time")
    t.finish()
    return sec


def _check_he(task: TaskSection, model: ModelSection, data: DataSection, source: str) -> None:
    """The he mode trains binary linear models on CKKS ciphertexts (dainode/crypto/he_linear.py)."""
    if model.kind not in HE_KINDS:
        raise ConfigError(f"{source}: invalid value {model.kind!r} for model.kind: privacy 'he' trains "
                          f"{', '.join(HE_KINDS)} models only (linear in the features, binary)", key="model.kind")
    if len(data.label_classes) != 2:
        raise ConfigError(f"{source}: invalid value {list(data.label_classes)} for data.label_classes: privacy 'he' "
                          "trains a binary model; give exactly two classes", key="data.label_classes")
    if task.local_epochs > HE_MAX_LOCAL_EPOCHS:
        raise ConfigError(f"{source}: invalid value {task.local_epochs} for task.local_epochs: privacy 'he' runs at most "
                          f"{HE_MAX_LOCAL_EPOCHS} full-batch epochs per round (each one after the first costs a refresh "
                          "round trip to the model provider); use more rounds", key="task.local_epochs")
    if task.aggregation == "fedprox" and task.aggregation_params.get("mu", 0) and task.local_epochs > 1:
        raise ConfigError(f"{source}: task.aggregation_params.mu is not applied by the he key holder's steps; with "
                          "privacy 'he' and local_epochs > 1 use fedavg or mu = 0", key="task.aggregation_params.mu")
    if task.clip_norm is not None:
        raise ConfigError(f"{source}: task.clip_norm is not supported with privacy 'he' (the computation provider "
                          "cannot clip what it cannot read)", key="task.clip_norm")


def _rule_params(t: Table, aggregation: str, providers: int) -> dict:
    raw = t.table("aggregation_params")
    allowed = RULE_PARAMS[aggregation]
    key = t.key("aggregation_params")
    for k, v in raw.items():
        if k not in allowed:
            raise ConfigError(f"{t.source}: unknown key {key}.{k} (value {v!r}) for aggregation {aggregation!r}; accepted: "
                              f"{', '.join(allowed) or 'none'}", key=f"{key}.{k}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise t.fail_key(f"{key}.{k}", v, "expected a finite number")
    if "mu" in raw and raw["mu"] < 0:
        raise t.fail_key(f"{key}.mu", raw["mu"], "expected a number >= 0 (the FedProx proximal weight)")
    for k in ("f", "m"):
        if k in raw and not isinstance(raw[k], int):
            raise t.fail_key(f"{key}.{k}", raw[k], "expected an integer")
    try:
        rule = make_rule({"name": aggregation, **{k: v for k, v in raw.items() if k != "mu"}})
    except AggregationError as exc:
        raise t.fail("aggregation_params", raw, str(exc)) from None
    if aggregation == "multikrum" and providers < rule.f + 3:
        raise t.fail("aggregation_params", raw, f"multikrum with f={rule.f} needs task.providers >= {rule.f + 3}")
    return dict(raw)


def _model(t: Table, data: DataSection) -> ModelSection:
    kind = t.str("kind")
    if kind in PLANNED_KINDS:
        raise t.fail("kind", kind, f"{kind!r} is planned but not supported yet; use one of {', '.join(MODEL_KINDS)}")
    if kind not in MODEL_KINDS:
        raise t.fail("kind", kind, f"unknown model kind: expected one of {', '.join(MODEL_KINDS)}")
    layers = t.int_list("layers", lo=1, min_len=2)
    n_in = math.prod(data.features)
    if layers[0] != n_in:
        raise t.fail("layers", list(layers), f"the first layer must equal the feature count of [data] ({n_in})")
    if kind == "linear":
        if len(layers) != 2 or layers[1] != 1:
            raise t.fail("layers", list(layers), "a linear (least-squares) model has exactly two layers: [features, 1]")
        if sorted(data.label_classes) != [0, 1]:
            raise ConfigError(f"{t.source}: invalid value {list(data.label_classes)} for data.label_classes: a linear "
                              "model is a binary least-squares classifier; use [0, 1]", key="data.label_classes")
    elif layers[-1] <= max(data.label_classes):
        raise t.fail("layers", list(layers), f"the last layer must have at least {max(data.label_classes) + 1} "
                                             f"outputs for data.label_classes {list(data.label_classes)}")
    if kind == "logistic" and len(layers) != 2:
        raise t.fail("layers", list(layers), "a logistic model has exactly two layers: [features, classes]")
    sec = ModelSection(kind=kind, layers=layers, lr=t.float("lr", lo=0, lo_open=True, hi=100.0),
                       batch=t.int("batch", lo=1, hi=1 << 20),
                       optimizer=t.str("optimizer", choices=OPTIMIZERS, default="sgd"),
                       momentum=t.float("momentum", lo=0, hi=1.0, default=0.9),
                       init=t.str("init", choices=INITS, optional=True))
    t.finish()
    return sec


def _data(t: Table) -> DataSection:
    sec = DataSection(features=t.int_list("features", lo=1, scalar_ok=True),
                      label_classes=t.int_list("label_classes", lo=0, min_len=2, unique=True),
                      min_rows=t.int("min_rows", lo=1), min_quality=t.float("min_quality", lo=0, hi=1.0))
    t.finish()
    return sec


def _test(t: Table) -> TestSection:
    dataset = t.str("dataset")
    label_column = t.str("label_column", optional=True)
    scale = t.float("feature_scale", lo=0, lo_open=True, default=1.0)
    split = Table(t.table("split"), t.key("split"), t.source)
    fraction = split.float("fraction", lo=0, lo_open=True, hi=0.99, optional=True)
    seed = split.int("seed", lo=0, default=0)
    part = split.str("part", choices=SPLIT_PARTS, default="test")
    split.finish()
    t.finish()
    return TestSection(dataset=dataset, label_column=label_column, feature_scale=scale, split_fraction=fraction,
                       split_seed=seed, split_part=part)
