"""Test-only launcher: `dainode` whose model role posts a tampered split while `<data-dir>/tamper-split` exists.

The tamper (the first and last match swap shares and weights, the bonuses follow: a self-consistent
lie) replaces ModelRole.adjust_split, the hook the model role calls before postSplit. Never used
outside tests/integration.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path


def tampered(self, split):
    flag = Path(self.ctx.data_dir) / "tamper-split"
    if not flag.exists():
        return split
    from dainode.tasks.split import integer_split

    matches = [dict(d) for d in split.matches]
    a, b = matches[0], matches[-1]
    for k in ("share", "weight"):
        a[k], b[k] = b[k], a[k]
    bonuses = integer_split(split.bonus_wei, {int(d["match_id"]): int(d["weight"]) for d in matches})
    for d in matches:
        d["bonus_wei"] = bonuses[int(d["match_id"])]
    return replace(split, matches=tuple(matches))


if __name__ == "__main__":
    from dainode.cli import main
    from dainode.roles.model import ModelRole

    ModelRole.adjust_split = tampered
    sys.exit(main(sys.argv[1:]))
