"""Typed reading of one manifest table: every error names the key, the value and what is accepted."""

from __future__ import annotations

import math
from typing import Any

from dainode.errors import ConfigError

MAX_WEI = 2**128 - 1  # the contract keeps the pool in a uint128


class Table:
    """Reads the keys of one TOML table (``path`` like ``task``) and refuses unknown ones at ``finish``."""

    def __init__(self, data: Any, path: str, source: str, *, required: bool = True):
        self.path, self.source = path, source
        if data is None and not required:
            data = {}
        if not isinstance(data, dict):
            raise self.fail_key(path, data, f"must be a table ([{path}]), got {type(data).__name__}")
        self.data = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def fail_key(self, key: str, value: Any, accepted: str) -> ConfigError:
        return ConfigError(f"{self.source}: invalid value {value!r} for {key}: {accepted}", key=key)

    def fail(self, name: str, value: Any, accepted: str) -> ConfigError:
        return self.fail_key(self.key(name), value, accepted)

    def raw(self, name: str, required: bool, what: str) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(f"{self.source}: missing key {self.key(name)}: expected {what}", key=self.key(name))
            return None
        return self.data[name]

    def int(self, name: str, *, lo: int | None = None, hi: int | None = None, default: int | None = None) -> int:
        what = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
        v = self.raw(name, default is None, what)
        if v is None:
            return default  # type: ignore[return-value]
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(name, v, f"expected {what}, got {type(v).__name__}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(name, v, f"out of range: expected {what}")
        return v

    def float(self, name: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
              default: float | None = None, optional: bool = False) -> float | None:
        rng = (f" {'>' if lo_open else '>='} {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
        what = "a finite number" + rng
        v = self.raw(name, default is None and not optional, what)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(name, v, f"expected {what}, got {type(v).__name__}")
        if not math.isfinite(v):
            raise self.fail(name, v, f"NaN and infinity are not accepted: expected {what}")
        if lo is not None and (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
            raise self.fail(name, v, f"out of range: expected {what}")
        return float(v)

    def str(self, name: str, *, choices: tuple[str, ...] | None = None, default: str | None = None,
            optional: bool = False) -> str | None:
        what = f"one of {', '.join(repr(c) for c in choices)}" if choices else "a string"
        v = self.raw(name, default is None and not optional, what)
        if v is None:
            return default
        if not isinstance(v, str):
            raise self.fail(name, v, f"expected {what}, got {type(v).__name__}")
        if choices and v not in choices:
            raise self.fail(name, v, f"unknown value: expected {what}")
        if not v:
            raise self.fail(name, v, f"must not be empty: expected {what}")
        return v

    def wei(self, name: str, *, lo: int = 0) -> int:
        what = f"an amount in wei >= {lo}: a decimal string such as \"4000000000000000000\" (or an integer)"
        v = self.raw(name, True, what)
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise self.fail(name, v, f"expected {what}, got {type(v).__name__}")
        if isinstance(v, str):
            if not v.isascii() or not v.isdigit():
                raise self.fail(name, v, f"not a decimal integer: expected {what}")
            n = int(v)
        else:
            n = v
        if n < lo or n > MAX_WEI:
            raise self.fail(name, v, f"out of range: expected {what}, at most 2^128 - 1")
        return n

    def int_list(self, name: str, *, lo: int = 0, min_len: int = 1, scalar_ok: bool = False,
                 unique: bool = False) -> tuple[int, ...]:
        what = (f"an integer >= {lo} or " if scalar_ok else "") + f"a list of at least {min_len} integers >= {lo}" \
            + (", without repeats" if unique else "")
        v = self.raw(name, True, what)
        if scalar_ok and isinstance(v, int) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list) or len(v) < min_len or \
                not all(isinstance(i, int) and not isinstance(i, bool) and i >= lo for i in v):
            raise self.fail(name, v, f"expected {what}")
        if unique and len(set(v)) != len(v):
            raise self.fail(name, v, f"repeated value: expected {what}")
        return tuple(v)

    def table(self, name: str) -> dict:
        v = self.raw(name, False, "a table")
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(name, v, f"expected a table, got {type(v).__name__}")
        return v

    def finish(self, accepted: tuple[str, ...] | None = None) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            names = accepted or tuple(sorted(self.seen))
            raise ConfigError(f"{self.source}: unknown key {self.key(extra[0])} (value {self.data[extra[0]]!r}); "
                              f"[{self.path}] accepts: {', '.join(names)}", key=self.key(extra[0]))
