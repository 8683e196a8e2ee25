"""Nesting limits for outside input and the process recursion limit (no decoder may overflow the C stack)."""

from __future__ import annotations

import logging
import re
import sys
from itertools import accumulate
from typing import Any

from dainode.errors import NestingTooDeep

log = logging.getLogger("dainode.node")

# CPython's own default. py_ecc (imported by eth-account/web3) raises the limit to 100,000 at
# import, after which Python's recursion guard never fires and deep input overflows the C
# stack instead (a segfault, exit 139). The daemon restores this value after importing it.
RECURSION_LIMIT = 1000

MAX_JSON_DEPTH = 64  # admin JSON-RPC requests, chain endpoint replies, websocket messages
MAX_MSGPACK_DEPTH = 64  # gossip envelopes and request/response frames
MAX_DAG_DEPTH = 128  # UnixFS trees (a balanced 1024-link tree of 1 TiB is 3 levels deep)

# modules known to raise the recursion limit when first imported
_RAISERS = ("py_ecc",)


def restore_recursion_limit(limit: int = RECURSION_LIMIT) -> int:
    """Import the modules that raise the recursion limit, then set it back to `limit`; returns the limit found.

    Once those modules are imported, importing them again (lazily, anywhere) runs no module
    code, so the limit stays restored for the life of the process.
    """
    for name in _RAISERS:
        try:
            __import__(name)
        except ImportError:
            pass
    found = sys.getrecursionlimit()
    if found != limit:
        log.debug("recursion limit was %d (raised by an import); restoring %d", found, limit)
        sys.setrecursionlimit(limit)
    return found


# --- JSON: a linear scan, before json.loads (which recurses in C) ------------------------

# a JSON string: quote, then runs of plain characters or escapes (unrolled, no nested repeats)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = [0] * 256
_DELTA[ord("[")] = _DELTA[ord("{")] = 1
_DELTA[ord("]")] = _DELTA[ord("}")] = -1


def json_depth(text: bytes | bytearray | str) -> int:
    """The deepest array/object nesting in JSON `text` (brackets inside strings do not count); no recursion.

    Malformed text gives an upper bound (json.loads will refuse it anyway).
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if b'"' in data:
        data = _STRING.sub(b"", data)
    brackets = data.translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_DELTA.__getitem__, brackets))))


def check_json_depth(text: bytes | bytearray | str, limit: int = MAX_JSON_DEPTH, *, what: str = "JSON input") -> None:
    """Raise NestingTooDeep if `text` nests arrays/objects deeper than `limit`; cheap for ordinary input."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return  # cannot be deeper than the number of opening brackets
    depth = json_depth(data)
    if depth > limit:
        raise NestingTooDeep(what, depth, limit)


# --- decoded values (msgpack): an explicit stack, no recursion ----------------------------


def value_depth_exceeds(value: Any, limit: int) -> bool:
    """True if lists/tuples/dicts in `value` nest deeper than `limit` (a scalar is depth 0)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list, tuple)))
    return False


def check_value_depth(value: Any, limit: int = MAX_MSGPACK_DEPTH, *, what: str = "decoded value") -> None:
    """Raise NestingTooDeep if `value` nests containers deeper than `limit`."""
    if value_depth_exceeds(value, limit):
        raise NestingTooDeep(what, None, limit)
