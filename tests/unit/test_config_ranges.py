"""Every numeric config key has an allowed range; NaN, infinity and out-of-range values are refused naming key, value and range."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dainode.config import KEYS, MAX_CHUNK_SIZE, build_config, range_text
from dainode.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NUMERIC = [path for path, spec in KEYS.items() if spec.type in (int, float)]


def bounds(path: str) -> tuple[float, float]:
    return KEYS[path].field.metadata["range"]


def test_there_are_numeric_keys():
    assert len(NUMERIC) >= 15  # guards the parametrizations below against an empty list


@pytest.mark.parametrize("path", NUMERIC)
def test_every_numeric_key_has_a_range_holding_its_default(path):
    meta = KEYS[path].field.metadata
    assert "range" in meta, f"{path} is numeric but has no range=(low, high) in its metadata"
    low, high = meta["range"]
    assert math.isfinite(low) and math.isfinite(high) and low <= high
    assert low <= KEYS[path].default <= high


@pytest.mark.parametrize("path", NUMERIC)
def test_bounds_are_accepted(path):
    low, high = bounds(path)
    tp = KEYS[path].type
    for value in (low, high):
        # p2p.low_water <= p2p.high_water is checked across keys: give the other one room
        room = {"p2p.low_water": 0, "p2p.high_water": 10_000}
        cfg = build_config(environ={}, flags={**room, path: tp(value)})
        section, _, leaf = path.rpartition(".")
        assert getattr(getattr(cfg, section) if section else cfg, leaf) == value


def _bad_values(path: str) -> list:
    low, high = bounds(path)
    tp = KEYS[path].type
    step = 1 if tp is int else max(abs(high) * 1e-3, 1e-9)
    bad = [tp(low - step if tp is int else low * 0.5 if low > 0 else low - step), tp(high + step)]
    if tp is float:
        bad += [math.nan, math.inf, -math.inf]
    return bad


@pytest.mark.parametrize("path", NUMERIC)
def test_out_of_range_nan_and_inf_are_refused_from_toml(path, tmp_path):
    section, _, leaf = path.rpartition(".")
    for value in _bad_values(path):
        literal = {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan" if value != value else repr(value))
        toml = (f"[{section}]\n" if section else "") + f"{leaf} = {literal}\n"
        f = tmp_path / "c.toml"
        f.write_text(toml)
        with pytest.raises(ConfigError) as err:
            build_config(config_file=f, environ={})
        msg = str(err.value)
        assert err.value.key == path
        assert path in msg and range_text(bounds(path)) in msg, msg
        assert literal in msg.lower() or repr(value) in msg, msg


@pytest.mark.parametrize("path", NUMERIC)
def test_out_of_range_is_refused_from_environment_text(path):
    var = "DAINODE_" + path.replace(".", "_").upper()
    for value in _bad_values(path):
        with pytest.raises(ConfigError, match="allowed range"):
            build_config(environ={var: str(value)})


@pytest.mark.parametrize("path", [p for p in NUMERIC if KEYS[p].type is int])
def test_integer_keys_refuse_nan_and_fractions_naming_the_range(path, tmp_path):
    section, _, leaf = path.rpartition(".")
    for literal in ("nan", "inf", "1.5"):
        f = tmp_path / "c.toml"
        f.write_text((f"[{section}]\n" if section else "") + f"{leaf} = {literal}\n")
        with pytest.raises(ConfigError, match=f"{path}.*expected an integer; allowed range is {range_text(bounds(path))}"):
            build_config(config_file=f, environ={})


def test_heartbeat_nan_named_in_the_error():
    with pytest.raises(ConfigError, match=r"nan for gossip\.heartbeat_s .*allowed range is 0\.05 to 60\.0"):
        build_config(environ={"DAINODE_GOSSIP_HEARTBEAT_S": "nan"})


def test_chunk_size_limit_is_the_store_limit():
    from dainode.store.unixfs import MAX_CHUNK_SIZE as STORE_MAX

    assert MAX_CHUNK_SIZE == STORE_MAX
    with pytest.raises(ConfigError, match="store.chunk_size"):
        build_config(environ={"DAINODE_STORE_CHUNK_SIZE": "5000000"})


def test_default_toml_states_each_range():
    text = (REPO / "config" / "default.toml").read_text()
    lines = text.splitlines()
    section = ""
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("["):
            section = s.strip("[]") + "."
        elif s and not s.startswith("#") and "=" in s:
            path = section + s.split("=")[0].strip()
            if path in NUMERIC:
                assert lines[i - 1] == f"# Allowed: {range_text(bounds(path))}.", f"default.toml: {path} lacks its range line"
