"""`dainode init` resolves the data dir like every other command (--data-dir, $DAINODE_DATA_DIR, $DAINODE_HOME)."""

from __future__ import annotations

from dainode.cli import main


def test_init_honours_dainode_data_dir(tmp_path, monkeypatch, capsys):
    target = tmp_path / "from-env"
    monkeypatch.setenv("DAINODE_DATA_DIR", str(target))
    monkeypatch.setenv("DAINODE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAINODE_PASSWORD", "pw")
    assert main(["init", "--light-kdf"]) == 0
    assert f"data dir  {target}" in capsys.readouterr().out
    assert any(target.iterdir()) and not (tmp_path / "home").exists()
    # the flag still wins over the environment
    flag = tmp_path / "from-flag"
    assert main(["init", "--light-kdf", "--data-dir", str(flag)]) == 0
    assert any(flag.iterdir())
