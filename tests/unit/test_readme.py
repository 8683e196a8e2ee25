"""README.md documents what the code has: its generated tables are current, and every manifest key the parser reads,
every scripts/testnet command and the troubleshooting cases a newcomer meets are in it."""

from __future__ import annotations

import re
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
_loader = SourceFileLoader("readme_reference", str(REPO / "scripts" / "readme_reference.py"))
ref = module_from_spec(spec_from_loader("readme_reference", _loader))
_loader.exec_module(ref)


def test_the_generated_tables_are_current():
    _, stale = ref.render(README)
    assert stale == [], f"README.md is stale: {stale}; run scripts/readme_reference.py --write"


def test_render_notices_a_command_missing_from_the_readme():
    without = README.replace("| `dainode task verify [--json] ID` |", "| `dainode task verify ID` |")
    assert without != README
    assert ref.render(without)[1] == ["cli"]


def test_every_manifest_key_the_parser_reads_is_documented():
    src = (REPO / "dainode" / "tasks" / "manifest.py").read_text()
    read = set(re.findall(r'\.(?:str|int|float|wei|int_list|fail)\("([a-z_]+)"', src))
    documented = {k.rsplit(".", 1)[-1] for k, _, _ in ref.manifest_keys()}
    assert read and read <= documented, f"manifest keys read by dainode/tasks/manifest.py but not documented: {read - documented}"


def test_two_commands_first_and_the_sections_a_newcomer_needs():
    first = README.split("```", 2)[1]
    assert "make demo" in first and "make test" in first
    for heading in ("## What `make demo` shows", "## How it works", "## The local testnet", "## Against a real Ethereum chain",
                    "## Connecting to real IPFS peers", "## Troubleshooting", "## Admin JSON-RPC", "## Task manifest"):
        assert heading in README, heading
    for case in ("port is in use", "no Node/npm", "stale socket", "wrong password", "insufficient funds"):
        assert case in README, case
    assert "scripts/deploy-contracts --rpc" in README


def test_linked_files_exist():
    for target in re.findall(r"\]\(((?:docs|config|bench|scripts)/[^)#]+)\)", README):
        assert (REPO / target).exists(), target
