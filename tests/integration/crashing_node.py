"""Test-only launcher: `dainode` that SIGKILLs itself at a named point of a TrainingTask transaction.

`<data-dir>/crash-at` lists points, one per line: `before:FN` / `after:FN` (FN a TrainingTask function sent by
the task roles), optionally `:ROUND` for publishGlobalModel and submitUpdate. `before` dies with the step's
intent written and nothing signed; `after` dies with the transaction mined and the step not yet finished
(the worst place: the chain moved, the state did not). A point is removed from the file before the kill,
so the restarted node runs on. Never used outside tests/integration.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROUND_ARG = {"publishGlobalModel": 1, "submitUpdate": 2}


def crash_if(data_dir: Path, point: str) -> None:
    flag = Path(data_dir) / "crash-at"
    try:
        points = flag.read_text().split()
    except OSError:
        return
    if point not in points:
        return
    points.remove(point)
    flag.write_text("".join(p + "\n" for p in points))
    print(f"crashing_node: SIGKILL at {point}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    from dainode.roles.taskchain import TaskChain

    original = TaskChain.send

    async def send(self, fn, *args, **kw):
        data_dir = os.environ["CRASH_DATA_DIR"]
        names = [fn] + ([f"{fn}:{int(args[ROUND_ARG[fn]])}"] if fn in ROUND_ARG and len(args) > ROUND_ARG[fn] else [])
        for n in names:
            crash_if(data_dir, f"before:{n}")
        receipt = await original(self, fn, *args, **kw)
        for n in names:
            crash_if(data_dir, f"after:{n}")
        return receipt

    TaskChain.send = send


if __name__ == "__main__":
    argv = sys.argv[1:]
    os.environ["CRASH_DATA_DIR"] = argv[argv.index("--data-dir") + 1]
    install()
    from dainode.cli import main

    sys.exit(main(argv))
