"""The committed contracts/build/ artifacts match contracts/src/ and the installed solc."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "compile-contracts"


def _compile_module():
    loader = importlib.machinery.SourceFileLoader("compile_contracts", str(SCRIPT))
    spec = importlib.util.spec_from_loader("compile_contracts", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


cc = _compile_module()


@pytest.mark.parametrize("name", cc.CONTRACTS)
def test_artifact_source_hash_matches_sources(name):
    """Cheap check (no node): sources, settings or the pinned solc changed without recompiling."""
    art = json.loads((ROOT / "contracts" / "build" / f"{name}.json").read_text())
    assert set(art) == {"contractName", "abi", "bytecode", "deployedBytecode", "compiler", "sourceHash"}
    assert art["contractName"] == name
    pinned = json.loads((ROOT / "node_modules" / "solc" / "package.json").read_text())["version"]
    assert art["compiler"].startswith(pinned + "+"), "artifacts built by another solc: run scripts/compile-contracts"
    expected = cc.source_hash(art["compiler"], cc.sources(), cc.SETTINGS.read_bytes())
    assert art["sourceHash"] == expected, "contracts/src changed: run scripts/compile-contracts and commit"
    assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 100
    assert art["deployedBytecode"].startswith("0x") and len(art["deployedBytecode"]) > 100


def test_source_hash_changes_with_a_source():
    """The hash covers source text: a one-character edit must change it (else the check above is empty)."""
    srcs = cc.sources()
    settings = cc.SETTINGS.read_bytes()
    base = cc.source_hash("v", srcs, settings)
    path = next(iter(srcs))
    assert cc.source_hash("v", {**srcs, path: srcs[path] + " "}, settings) != base
    assert cc.source_hash("v", srcs, settings + b" ") != base
    assert cc.source_hash("w", srcs, settings) != base


def test_recompile_reproduces_committed_artifacts_byte_for_byte():
    """Full check: a fresh compile (npm solc) gives exactly the committed files, deploy.json included."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_deploy_json_lists_every_contract_with_constructor_args():
    deploy = json.loads((ROOT / "contracts" / "build" / "deploy.json").read_text())
    assert set(deploy) == set(cc.CONTRACTS)
    assert sorted(d["order"] for d in deploy.values()) == list(range(len(cc.CONTRACTS)))
    for name, d in deploy.items():
        art = json.loads((ROOT / "contracts" / "build" / f"{name}.json").read_text())
        ctor = next((i for i in art["abi"] if i["type"] == "constructor"), {"inputs": []})
        assert [i["type"] for i in ctor["inputs"]] == d["types"], name
        assert len(d["args"]) == len(d["types"])
