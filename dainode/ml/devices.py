"""What this machine offers for training: CPU cores, memory, JAX backend and devices (jax imported lazily)."""

from __future__ import annotations

import importlib.util
import os


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def jax_info() -> dict:
    import jax  # heavy: only when a compute offer is made

    devices = jax.devices()
    return {"backend": jax.default_backend(), "devices": [f"{d.platform}:{d.id}" for d in devices], "version": jax.__version__}


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
