"""The compute offer's machine description: JAX's devices come from a child process, so the daemon stays JAX-free."""

import subprocess
import sys

import pytest

from dainode.errors import MLError
from dainode.ml import devices


def run_fresh(code: str) -> str:
    """Run `code` in a new interpreter (this test process has JAX loaded by other tests) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.strip()


def test_compute_spec_names_the_cpu_backend_without_loading_jax_in_the_caller():
    out = run_fresh("import sys, json; from dainode.ml.devices import compute_spec; s = compute_spec(2); "
                    "print(json.dumps([s['jax']['backend'], s['jax']['devices'], s['capacity'], 'jax' in sys.modules]))")
    assert out.splitlines()[-1] == '["cpu", ["cpu:0"], 2, false]'


def test_what_every_daemon_imports_at_start_does_not_import_jax():
    """Node() imports every role module and the audit, store and dashboard services. A manifest's TrainConfig lives
    in ml/trainconfig.py, and ml/contribution.py evaluates (JAX) only when a task is verified; before, JAX and
    optax loaded at every start (~0.9 s and ~170 MB)."""
    code = ("import importlib, pkgutil, sys, dainode.node, dainode.roles as r\n"
            "for m in pkgutil.iter_modules(r.__path__): importlib.import_module('dainode.roles.' + m.name)\n"
            "import dainode.audit.service, dainode.store.service, dainode.dashboard.service, dainode.tasks.verify\n"
            "print(sorted(n for n in ('jax', 'optax', 'tenseal') if n in sys.modules))")
    assert run_fresh(code).splitlines()[-1] == "[]"


@pytest.fixture
def probe(monkeypatch):
    """Set the probe's code for one test, with the cached answer cleared (restored afterwards)."""
    monkeypatch.setattr(devices, "_jax_info", None)
    return lambda code: monkeypatch.setattr(devices, "PROBE", code)


def test_a_probe_that_fails_says_how_with_its_exit_code(probe):
    probe("import sys; sys.stderr.write('no jax here'); sys.exit(3)")
    with pytest.raises(MLError, match=r"exit 3.*no jax here"):
        devices.jax_info()


@pytest.mark.parametrize("stdout", ["", "not json", '{"backend": "cpu"}', '{"backend": "cpu", "devices": [1], "version": "x"}'])
def test_probe_output_that_is_not_its_json_line_is_rejected(stdout):
    with pytest.raises(MLError, match="JAX device probe printed"):
        devices.parse_probe(stdout)


def test_a_probe_that_hangs_is_killed_at_the_timeout(probe, monkeypatch):
    probe("import time; time.sleep(60)")
    monkeypatch.setattr(devices, "PROBE_TIMEOUT_S", 0.5)
    with pytest.raises(MLError, match="did not answer within 0.5 s"):
        devices.jax_info()


def test_the_probe_child_does_not_get_the_node_password_and_its_answer_is_cached(probe, monkeypatch):
    monkeypatch.setenv("DAINODE_PASSWORD", "secret")
    probe("import json, os; print(json.dumps({'backend': 'cpu', 'devices': [], "
          "'version': str(os.environ.get('DAINODE_PASSWORD'))}))")
    assert devices.jax_info()["version"] == "None"
    probe("raise SystemExit(1)")  # a second call does not run the probe again
    assert devices.jax_info()["version"] == "None"
