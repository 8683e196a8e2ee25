#!/usr/bin/env python3
"""The README's reference tables, generated from the code: every `dainode` and `scripts/testnet` command, every config
key and every task-manifest key. `--write` updates README.md between its `<!-- generated:NAME -->` markers; `--check`
exits 1 naming each stale table (tests/unit/test_readme.py runs it, so a new command or key without docs fails)."""

from __future__ import annotations

import argparse
import re
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
README = REPO / "README.md"
NOISE = re.compile(r" \[-h\]| \[--data-dir DATA_DIR\]| \[--dir DIR\]")


def _esc(text: str) -> str:
    return text.replace("|", "\\|")


def _leaves(parser: argparse.ArgumentParser, helps: str = ""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        usage = " ".join(parser.format_usage().split()).removeprefix("usage: ")
        yield NOISE.sub("", usage), helps
        return
    for action in subs:
        text = {c.dest: c.help or "" for c in action._choices_actions}
        for name, sub in action.choices.items():
            yield from _leaves(sub, text.get(name, ""))


def commands_table(parser: argparse.ArgumentParser) -> str:
    rows = ["| command | what it does |", "| --- | --- |"]
    rows += [f"| `{_esc(usage)}` | {_esc(help_)} |" for usage, help_ in _leaves(parser)]
    return "\n".join(rows)


def cli() -> str:
    from dainode.cli import build_parser

    return commands_table(build_parser())


def testnet() -> str:
    loader = SourceFileLoader("scripts_testnet", str(REPO / "scripts" / "testnet"))
    mod = module_from_spec(spec_from_loader("scripts_testnet", loader))
    loader.exec_module(mod)
    return commands_table(mod.build_parser())


def config() -> str:
    from dainode.config import iter_keys

    rows = ["| key | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for k in iter_keys():
        env = "DAINODE_" + k.path.replace(".", "_").upper()
        default = k.default if k.path != "data_dir" else "~/.dainode"
        rows.append(f"| `{k.path}` | `{env}` | `{_esc(repr(default) if isinstance(default, str) else str(default))}` | "
                    f"{_esc(' '.join(k.doc.split()))} |")
    return "\n".join(rows)


def manifest_keys(path: Path = REPO / "config" / "task.example.toml") -> list[tuple[str, str, str]]:
    """(dotted key, example value, comment) for every key of the example manifest, optional (commented) ones too."""
    out, table, above = [], "", []
    for line in path.read_text().splitlines():
        m = re.match(r"^\[([a-z_.]+)\]\s*(#.*)?$", line)
        if m:
            table, above = m.group(1), []
            continue
        m = re.match(r"^#?\s?([a-z_]+) = (.+?)\s*(?:#\s*(.*))?$", line)
        if m and table:
            key, value, note = m.groups()
            note = (note or "").strip() or " ".join(above)  # no note on the line: the comment block above it
            if line.startswith("#") and not note.startswith("optional"):
                note = "optional: " + note
            out.append((f"{table}.{key}", value.strip(), note))
            above = []
        elif line.startswith("#") and table:
            above.append(line.lstrip("# ").strip())
        else:
            above = []
    return out


def manifest() -> str:
    rows = ["| key | example | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{k}` | `{_esc(v)}` | {_esc(n)} |" for k, v, n in manifest_keys()]
    return "\n".join(rows)


TABLES = {"cli": cli, "testnet": testnet, "config": config, "manifest": manifest}


def block(name: str, text: str) -> str:
    return f"<!-- generated:{name} (scripts/readme_reference.py --write) -->\n{text}\n<!-- /generated:{name} -->"


def render(readme: str) -> tuple[str, list[str]]:
    """README text with every generated table replaced; and the names of tables that were missing or stale."""
    stale = []
    for name, fn in TABLES.items():
        pat = re.compile(rf"<!-- generated:{name} .*?-->\n(?:.*?\n)?<!-- /generated:{name} -->", re.S)
        new = block(name, fn())
        found = pat.search(readme)
        if found is None:
            stale.append(f"{name} (no <!-- generated:{name} --> block)")
            continue
        if found.group(0) != new:
            stale.append(name)
            readme = readme[:found.start()] + new + readme[found.end():]
    return readme, stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update README.md in place")
    ap.add_argument("--check", action="store_true", help="exit 1 if a table in README.md is missing or stale")
    args = ap.parse_args(argv)
    text, stale = render(README.read_text())
    if args.write:
        README.write_text(text)
    elif args.check:
        if stale:
            print("README.md is stale: " + ", ".join(stale) + "; run scripts/readme_reference.py --write", file=sys.stderr)
            return 1
    else:
        for name, fn in TABLES.items():
            print(block(name, fn()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
