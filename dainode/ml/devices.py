"""What this machine offers for training: CPU cores, memory, JAX backend and devices (asked of a child process)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from dainode.errors import MLError

# JAX with its XLA client is ~170 MB of resident memory and ~1 s of imports. A compute offer only has to name the
# backend and devices, so a short-lived child lists them and the daemon loads JAX once it trains, not while idle.
PROBE = ("import json, jax; d = jax.devices(); print(json.dumps({'backend': jax.default_backend(), "
         "'devices': [f'{x.platform}:{x.id}' for x in d], 'version': jax.__version__}))")
PROBE_TIMEOUT_S = 120.0

_jax_info: dict | None = None  # the machine's devices do not change while the daemon runs


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def parse_probe(stdout: str) -> dict:
    """The probe's last output line as {backend, devices, version}; MLError if it is not that."""
    lines = stdout.strip().splitlines()
    try:
        info = json.loads(lines[-1]) if lines else None
    except ValueError:
        info = None
    if not (isinstance(info, dict) and isinstance(info.get("backend"), str) and isinstance(info.get("version"), str)
            and isinstance(info.get("devices"), list) and all(isinstance(d, str) for d in info["devices"])):
        raise MLError(f"the JAX device probe printed {stdout[-300:]!r}, not its JSON line")
    return {"backend": info["backend"], "devices": info["devices"], "version": info["version"]}


def jax_info() -> dict:
    """JAX's backend, devices and version, from a child process running PROBE (killed after PROBE_TIMEOUT_S)."""
    global _jax_info
    if _jax_info is not None:
        return _jax_info
    try:
        env = {k: v for k, v in os.environ.items() if k != "DAINODE_PASSWORD"}  # the child needs no secret
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                              timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MLError(f"the JAX device probe did not answer within {PROBE_TIMEOUT_S:g} s; is this machine overloaded?") from exc
    except OSError as exc:
        raise MLError(f"cannot run the JAX device probe ({exc})") from exc
    if done.returncode != 0:
        raise MLError(f"the JAX device probe failed (exit {done.returncode}): {done.stderr.strip()[-300:]}; "
                      f"check that jax imports in {sys.executable}")
    _jax_info = parse_probe(done.stdout)
    return _jax_info


def privacy_modes() -> list[str]:
    return ["fl", "he"] if importlib.util.find_spec("tenseal") is not None else ["fl"]


def compute_spec(capacity: int) -> dict:
    return {
        "cpu_cores": os.cpu_count() or 1,
        "memory_bytes": memory_bytes(),
        "jax": jax_info(),
        "capacity": int(capacity),
        "privacy_modes": privacy_modes(),
    }
