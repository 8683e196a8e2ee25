"""forge fuzz tests of the money paths (contracts/test/*.t.sol), run offline with the npm solc wrapper."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORGE = ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"


def test_forge_fuzz_suites_pass(tmp_path):
    # foundry.toml names solc relative to contracts/, hence cwd. Build output and fuzz corpus go to tmp so the checkout stays clean and runs do not share state.
    env = {**os.environ, "FOUNDRY_OUT": str(tmp_path / "out"), "FOUNDRY_CACHE_PATH": str(tmp_path / "cache")}
    proc = subprocess.run(
        [str(FORGE), "test", "--offline", "--json", "--root", str(ROOT / "contracts")],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT / "contracts",  # solc path is relative
    )
    assert proc.stdout.strip(), f"forge printed nothing (rc {proc.returncode}): {proc.stderr[-2000:]}"
    suites = json.loads(proc.stdout)
    results = {f"{s}::{t}": r for s, v in suites.items() for t, r in v["test_results"].items()}
    failed = {k: r.get("reason") for k, r in results.items() if r["status"] != "Success"}
    assert not failed, f"forge tests failed: {failed}"
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Every money path is fuzzed, each with the configured number of runs.
    names = {k.split("::")[1].split("(")[0] for k in results}
    assert {
        "testFuzz_verifiedPaysProviderExactly", "testFuzz_cancelRefundsAfterExpiry",
        "testFuzz_forcefulPaysOneSideOnce", "testFuzz_provideOnlyBeforeExpiry",
        "testFuzz_balanceIsSumOfOpenEscrows",
        "testFuzz_reentrantRefundPaysOnce", "testFuzz_finishConservesThePool",
        "testFuzz_abandonConservesThePool", "testFuzz_overSplitReverts",
    } <= names
    assert "test_expiryBoundaries" in names
    # TrainingTask: one test per attack of issue 12, the access matrix, the no-stuck-wei invariants.
    assert {
        "testFuzz_equalSplitConservesThePool", "testFuzz_providerSettlesAloneAfterTimeout",
        "testFuzz_constructorBoundsDuration", "test_attack_zeroSplitIsRefused", "test_attack_abandonPaysDataProviders",
        "test_attack_publishAllRoundsInOneBlock", "test_attack_farDeadlineIsRefused", "test_attack_matchWithoutConsent",
        "test_attack_lateUpdateIsNotCountedForTheNextRound", "test_attack_copiedUpdateEarnsNothing",
        "test_attack_revealIsCheckedAndHasConsequences", "test_attack_neverRevealedSplitsTheBonusEqually",
        "test_trainingPhaseGuards", "test_payoutGuardsAfterSplit", "invariant_balanceIsCreditsPlusEscrow",
        "invariant_endedTasksHoldNothing",
    } <= names
    for k, r in results.items():
        if "testFuzz_" in k:
            assert r["kind"]["Fuzz"]["runs"] == 256, k
