"""Test-only launcher: `dainode` whose model role posts a tampered split while `<data-dir>/tamper-split` exists.

The tamper (the first and last match swap shares and weights, the bonuses follow: a self-consistent
lie) replaces ModelRole.adjust_split, the hook the model role calls before postSplit. Once it has lied, it no
longer moves a dev chain's clock past the challenge window (chain.dev_time_travel): the data providers get the
window to challenge, as on a real chain. Never used outside tests/integration.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path


LIED = []


def tampered(self, split):
    flag = Path(self.ctx.data_dir) / "tamper-split"
    if not flag.exists():
        return split
    LIED.append(split.task)
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

    from dainode.roles.taskchain import TaskChain

    ModelRole.adjust_split = tampered
    honest_travel = TaskChain.dev_travel_to

    async def dev_travel_to(self, timestamp):
        return False if LIED else await honest_travel(self, timestamp)

    TaskChain.dev_travel_to = dev_travel_to
    sys.exit(main(sys.argv[1:]))
