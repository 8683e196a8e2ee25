"""Config: schema, precedence, validation, and default.toml kept in step with the schema."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dainode.config import KEYS, build_config
from dainode.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_precedence_defaults_file_env_flags(tmp_path):
    f = write(tmp_path, 'roles = ["data"]\nlog_level = "debug"\n[p2p]\nlow_water = 3\n[chain]\nendpoint = "none"\n')
    env = {"DAINODE_LOG_LEVEL": "warning", "DAINODE_P2P_LOW_WATER": "4", "DAINODE_PASSWORD": "ignored"}
    cfg = build_config(config_file=f, environ=env, flags={"p2p.low_water": "5", "roles": None})
    assert cfg.roles == ["data"]  # file (flag not given)
    assert cfg.log_level == "warning"  # env beats file
    assert cfg.p2p.low_water == 5  # flag beats env
    assert cfg.chain.endpoint == "none"  # file beats default
    assert cfg.gossip.max_message_size == 262144  # default


def test_roles_are_a_sorted_set_and_empty_means_relay():
    assert build_config(environ={}, flags={"roles": "data,compute,data"}).roles == ["compute", "data"]
    assert build_config(environ={}, flags={"roles": ""}).roles == []


def test_unknown_role_names_valid_ones():
    with pytest.raises(ConfigError) as exc:
        build_config(environ={}, flags={"roles": "banker"})
    msg = str(exc.value)
    assert "banker" in msg and "roles" in msg and "data, model, compute" in msg


def test_unknown_toml_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'p2p.lisen'.*listen"):
        build_config(config_file=write(tmp_path, '[p2p]\nlisen = ["/ip4/1.2.3.4/tcp/1"]\n'), environ={})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        build_config(config_file=write(tmp_path, 'colour = "blue"\n'), environ={})


def test_bad_values_name_key_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"'/ip4/nope'.*p2p.listen.*multiaddr"):
        build_config(environ={}, flags={"p2p.listen": ["/ip4/nope"]})
    with pytest.raises(ConfigError, match=r"bootstrap.*/p2p/"):
        build_config(environ={}, flags={"p2p.bootstrap": ["/ip4/127.0.0.1/tcp/1"]})
    with pytest.raises(ConfigError, match=r"chain.endpoint"):
        build_config(environ={}, flags={"chain.endpoint": "ftp://x"})
    with pytest.raises(ConfigError, match=r"DAINODE_P2P_LOW_WATER"):
        build_config(environ={"DAINODE_P2P_LOW_WATER": "many"})
    with pytest.raises(ConfigError, match=r"gossip.max_message_size.*integer"):
        build_config(config_file=write(tmp_path, '[gossip]\nmax_message_size = "big"\n'), environ={})
    with pytest.raises(ConfigError, match="low_water"):
        build_config(environ={}, flags={"p2p.low_water": 10, "p2p.high_water": 5})


def test_unreadable_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        build_config(config_file=tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_config(config_file=write(tmp_path, "roles = [\n"), environ={})


def test_data_dir_default_follows_dainode_home(monkeypatch, tmp_path):
    monkeypatch.setenv("DAINODE_HOME", str(tmp_path / "home"))
    assert build_config(environ={}).data_dir == str(tmp_path / "home")


def test_default_toml_documents_every_key_with_its_default():
    text = (REPO / "config" / "default.toml").read_text()
    data = tomllib.loads(text)
    flat = {}
    for k, v in data.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    for path, spec in KEYS.items():
        if path == "data_dir":  # its default depends on the environment; documented as a comment
            assert "# data_dir =" in text
            continue
        assert path in flat, f"config/default.toml lacks {path}"
        assert flat[path] == spec.default, f"default.toml has {path} = {flat[path]!r}, schema says {spec.default!r}"
        assert spec.doc and spec.doc.split(" (")[0][:30] in text, f"default.toml lacks the doc line of {path}"
    assert set(flat) <= set(KEYS), f"default.toml has keys the schema lacks: {set(flat) - set(KEYS)}"
    # and the file itself loads through the validating loader
    build_config(config_file=REPO / "config" / "default.toml", environ={})
