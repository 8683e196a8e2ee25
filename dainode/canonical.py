"""Canonical JSON: the one byte form of a document whose CID or hash is signed or put on chain."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(doc: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN/Infinity; TypeError/ValueError when `doc` is not JSON-able."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
