"""Argument handling of the CLI that needs no daemon: flags anywhere, bad values refused with exit 2."""

from __future__ import annotations

import pytest

import dainode.cli.client
from dainode.cli import main


@pytest.fixture
def calls(monkeypatch):
    made = []

    def fake_rpc_call(args, method, params=None, **kw):
        made.append((args.data_dir, method, params))
        return {"ok": True}

    monkeypatch.setattr(dainode.cli.client, "rpc_call", fake_rpc_call)
    return made


@pytest.mark.parametrize(
    "argv",
    [
        ["rpc", "--data-dir", "D", "store_pin_ls", '{"type": "direct"}'],
        ["rpc", "store_pin_ls", "--data-dir", "D", '{"type": "direct"}'],
        ["rpc", "store_pin_ls", '{"type": "direct"}', "--data-dir", "D"],
    ],
)
def test_rpc_takes_flags_anywhere(calls, argv, capsys):
    assert main(argv) == 0
    assert calls == [("D", "store_pin_ls", {"type": "direct"})]
    assert '"ok": true' in capsys.readouterr().out


def test_rpc_still_refuses_real_extra_arguments(calls, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["rpc", "node_info", "--data-dir", "D", "[]", "surplus"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unrecognized arguments" in err and "surplus" in err
    assert calls == []


@pytest.mark.parametrize("flag, value", [("--length", "-5"), ("--offset", "-1")])
def test_cat_refuses_negative_ranges(flag, value, tmp_path, capsys):
    assert main(["cat", "bafkqaaa", flag, value, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert flag in err and value in err and len(err.strip().splitlines()) == 1


def test_chain_error_names_the_chain_flag(tmp_path, capsys):
    assert main(["start", "--data-dir", str(tmp_path / "n"), "--light-kdf", "--chain", "foo"]) == 2
    err = capsys.readouterr().err
    assert "--chain" in err and "--endpoint" not in err and "chain.endpoint" in err
