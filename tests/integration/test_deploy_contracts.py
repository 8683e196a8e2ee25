"""scripts/deploy-contracts against a real anvil standing in for a public chain: a deployment file nodes can read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eth_utils import keccak

from dainode.chain.devchain import read_deployment
from tests.integration.chain_env import DEV_KEY_2, AnvilProcess

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "deploy-contracts"
DEPLOYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # DEV_KEY_2's address
AUTHORITY = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # another account


def test_deploys_the_three_contracts_with_a_key_file_and_writes_the_deployment(tmp_path):
    anvil = AnvilProcess(tmp_path).start()
    try:
        key = tmp_path / "deployer.key"
        key.write_text(DEV_KEY_2 + "\n")
        out = subprocess.run([sys.executable, str(SCRIPT), "--rpc", anvil.url, "--out", str(tmp_path / "d.json"),
                              "--key-file", str(key), "--authority", AUTHORITY], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        d = read_deployment(tmp_path / "d.json")
        assert d["chain_id"] == 31337 and d["deployer"] == DEPLOYER
        assert sorted(d["contracts"]) == ["DataTransfer", "Registry", "TrainingTask"]
        for name, address in d["contracts"].items():
            assert len(anvil.rpc("eth_getCode", address, "latest")) > 2, name
            assert f"{name:<13} {address}" in out.stdout
        # the authority (every task's default arbiter) is the one asked for, not the deployer
        got = anvil.rpc("eth_call", {"to": d["contracts"]["TrainingTask"], "data": "0x" + keccak(text="authority()")[:4].hex()},
                        "latest")
        assert got[-40:].lower() == AUTHORITY[2:].lower()
    finally:
        anvil.stop()


def test_no_key_exits_2_and_says_how_to_give_one(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--rpc", "http://127.0.0.1:9", "--out", str(tmp_path / "d.json")],
                         capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "--key-file FILE or set DAINODE_DEPLOYER_KEY" in out.stderr
