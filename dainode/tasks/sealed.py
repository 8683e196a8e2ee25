"""Sealed task documents: a clear, canonical-JSON binding header followed by an envelope whose associated data is that binding.

Layout: ``b"DAIS"`` | version u8 | u32 header length | canonical JSON header | envelope.
The header ``{"schema": ..., "binding": {...}}`` lets a reader say precisely why a document is
not the one it expected (wrong round, wrong sender, ...) before any decryption; the envelope's
associated data is built from the *expected* binding, so a header edited to look right makes
the envelope fail to authenticate.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Any, Iterable

from dainode.crypto import envelope as env
from dainode.crypto.keys import PrivateKey, PublicKey
from dainode.errors import CryptoError, DocumentRejected
from dainode.ml.preprocess import canonical_json

MAGIC = b"DAIS"
VERSION = 1
MAX_HEADER = 64 * 1024
_HEAD = struct.Struct(">4sBI")
_ADDR_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


def address(value: Any, what: str = "address") -> str:
    """An Ethereum address normalised to lowercase ``0x`` + 40 hex digits (bindings compare these)."""
    if not isinstance(value, str) or not _ADDR_RE.match(value):
        raise ValueError(f"{what} must be 0x followed by 40 hex digits, got {value!r}")
    return value.lower()


@dataclass(frozen=True)
class TaskRef:
    """Which task a document belongs to: the chain, the TrainingTask contract and the task id on it."""

    chain_id: int
    task_address: str
    task_id: int

    def __post_init__(self):
        object.__setattr__(self, "task_address", address(self.task_address, "task_address"))
        for name in ("chain_id", "task_id"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")

    def fields(self) -> dict:
        return {"chain_id": self.chain_id, "task_address": self.task_address, "task_id": self.task_id}


def pack(schema: str, binding: dict, recipients: Iterable[PublicKey], payload: bytes) -> bytes:
    """Seal ``payload`` for ``recipients`` with ``binding`` in the clear header and as associated data."""
    header = canonical_json({"schema": schema, "binding": binding})
    sealed = env.encrypt(payload, list(recipients), env.associated_data(schema, **binding))
    return _HEAD.pack(MAGIC, VERSION, len(header)) + header + sealed


def read_header(blob: bytes) -> tuple[str, dict, bytes]:
    """(schema, binding, envelope) of a sealed document; DocumentRejected('malformed') if it is not one."""
    blob = bytes(blob)
    if len(blob) < _HEAD.size:
        raise DocumentRejected("malformed", f"{len(blob)} bytes is too short for a sealed task document")
    magic, version, hlen = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise DocumentRejected("malformed", "not a sealed task document (bad magic)")
    if version != VERSION:
        raise DocumentRejected("malformed", f"sealed document version {version}; this node reads {VERSION}")
    if hlen > MAX_HEADER or _HEAD.size + hlen > len(blob):
        raise DocumentRejected("malformed", f"header length {hlen} does not fit the {len(blob)}-byte document")
    try:
        head = json.loads(blob[_HEAD.size:_HEAD.size + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DocumentRejected("malformed", f"header is not JSON: {exc}") from None
    if not isinstance(head, dict) or not isinstance(head.get("schema"), str) or not isinstance(head.get("binding"), dict):
        raise DocumentRejected("malformed", "header lacks a schema string and a binding object")
    return head["schema"], head["binding"], blob[_HEAD.size + hlen:]


def compare(found: dict, expected: dict, order: list[tuple[str, tuple[str, ...]]]) -> None:
    """Raise DocumentRejected(reason) for the first group of binding fields that differs."""
    for reason, keys in order:
        diff = [k for k in keys if found.get(k) != expected.get(k)]
        if diff:
            detail = ", ".join(f"{k} is {found.get(k)!r}, expected {expected.get(k)!r}" for k in diff)
            raise DocumentRejected(reason, detail)
    extra = sorted(set(found) - set(expected))
    if extra:
        raise DocumentRejected("malformed", f"binding has unexpected field(s) {extra}")


def unpack(blob: bytes, key: PrivateKey, schema: str, expected: dict,
           order: list[tuple[str, tuple[str, ...]]]) -> bytes:
    """The payload of a sealed document that must carry ``schema`` and ``expected`` binding; else DocumentRejected."""
    found_schema, binding, sealed = read_header(blob)
    if found_schema != schema:
        raise DocumentRejected("malformed", f"document is a {found_schema!r}, expected a {schema!r}")
    compare(binding, expected, order)
    try:
        return env.decrypt(sealed, key, env.associated_data(schema, **expected))
    except CryptoError as exc:  # EnvelopeError, DecryptionError: tampered, wrong key, edited header
        raise DocumentRejected("undecryptable", str(exc)) from None
