"""dainode.tasks is transport-free: importing all of it loads no roles, node, p2p or chain code."""

from __future__ import annotations

import subprocess
import sys


def test_tasks_imports_no_transport():
    code = ("import sys, pkgutil, importlib, dainode.tasks as t\n"
            "for m in pkgutil.iter_modules(t.__path__): importlib.import_module('dainode.tasks.' + m.name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[:2] in "
            "(['dainode', 'roles'], ['dainode', 'node'], ['dainode', 'p2p'], ['dainode', 'chain'], ['dainode', 'cli']))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
