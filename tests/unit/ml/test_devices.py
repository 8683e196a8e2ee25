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


def test_the_daemons_role_modules_do_not_import_jax():
    """Every role module is imported at daemon start; a manifest's TrainConfig lives in ml/trainconfig.py so reading
    one does not pull in ml/train.py with JAX and optax (~0.9 s and ~130 MB at every start before)."""
    code = ("import importlib, pkgutil, sys, dainode.node, dainode.roles as r\n"
            "for m in pkgutil.iter_modules(r.__path__): importlib.import_module('dainode.roles.' + m.name)\n"
            "print(sorted(n for n in ('jax', 'optax', 'tenseal') if n in sys.modules))")
    assert run_fresh(code).splitlines()[-1] == "[]"


def test_a_probe_that_fails_says_how_with_its_exit_code():
    with pytest.raises(MLError, match=r"exit 3.*no jax here"):
        devices.jax_info([sys.executable, "-c", "import sys; sys.stderr.write('no jax here'); sys.exit(3)"])


@pytest.mark.parametrize("stdout", ["", "not json", '{"backend": "cpu"}', '{"backend": "cpu", "devices": [1], "version": "x"}'])
def test_probe_output_that_is_not_its_json_line_is_rejected(stdout):
    with pytest.raises(MLError, match="JAX device probe printed"):
        devices.parse_probe(stdout)


def test_a_probe_that_hangs_is_killed_at_the_timeout(monkeypatch):
    monkeypatch.setattr(devices, "PROBE_TIMEOUT_S", 0.5)
    with pytest.raises(MLError, match="did not answer within 0.5 s"):
        devices.jax_info([sys.executable, "-c", "import time; time.sleep(60)"])


def test_the_probe_child_does_not_get_the_node_password(monkeypatch):
    monkeypatch.setenv("DAINODE_PASSWORD", "secret")
    code = ("import json, os; print(json.dumps({'backend': 'cpu', 'devices': [], "
            "'version': str(os.environ.get('DAINODE_PASSWORD'))}))")
    assert devices.jax_info([sys.executable, "-c", code])["version"] == "None"


def test_the_services_every_daemon_starts_do_not_import_jax():
    """Node() imports the audit service, which imports task verification and the contribution utilities; those
    evaluate models only when a task is verified, so JAX must wait until then (it was loaded at every start)."""
    code = ("import sys, dainode.node, dainode.audit.service, dainode.store.service, dainode.dashboard.service, "
            "dainode.tasks.verify, dainode.ml.contribution\n"
            "print(sorted(n for n in ('jax', 'optax', 'tenseal') if n in sys.modules))")
    assert run_fresh(code).splitlines()[-1] == "[]"
