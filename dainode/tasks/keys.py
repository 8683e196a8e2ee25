"""Per-task X25519 envelope keys: public document, password-sealed private part, and the public reveal form.

A task key is made fresh for each task and is never the node's identity or envelope key: after
training its private part is published (``reveal_document``) so that anyone can decrypt the
task's updates and models and check the split.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from dainode.crypto.keys import key_id, public_key_bytes, read_sealed, seal, unseal, write_sealed
from dainode.errors import CryptoError, TaskError

PUBLIC_SCHEMA = "dainode.task-key/1"
REVEAL_SCHEMA = "dainode.task-key-reveal/1"
ALG = "X25519"
SEAL_KIND = "task-x25519"  # authenticated in the sealed file: a node envelope key file is refused
TASK_KEYS_DIR = "keys/tasks"
_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _hex32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", value):
        raise TaskError(f"{what} must be 32 bytes as 64 hex digits, got {value!r}")
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


@dataclass(frozen=True)
class TaskPublicKey:
    """The public half, as published in the manifest / on IPFS; envelopes are wrapped for ``key``."""

    key: x25519.X25519PublicKey = field(repr=False)

    @property
    def raw(self) -> bytes:
        return public_key_bytes(self.key)

    @property
    def key_id(self) -> bytes:
        return key_id(self.key)

    def to_document(self) -> dict:
        return {"schema": PUBLIC_SCHEMA, "alg": ALG, "public_key": self.raw.hex(), "key_id": self.key_id.hex()}

    @classmethod
    def from_document(cls, doc: Any) -> "TaskPublicKey":
        if not isinstance(doc, dict) or doc.get("schema") != PUBLIC_SCHEMA or doc.get("alg") != ALG:
            raise TaskError(f"not a {PUBLIC_SCHEMA} document with alg {ALG}: {doc!r:.200}")
        pub = cls(x25519.X25519PublicKey.from_public_bytes(_hex32(doc.get("public_key"), "public_key")))
        if "key_id" in doc and _hex32(doc["key_id"], "key_id") != pub.key_id:
            raise TaskError("task key document: key_id does not match public_key (sha256 of the raw key)")
        return pub


@dataclass(frozen=True)
class TaskKey:
    """The model provider's per-task key pair. Holds a secret until revealed: never log it."""

    private: x25519.X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> "TaskKey":
        return cls(x25519.X25519PrivateKey.generate())

    @property
    def public(self) -> TaskPublicKey:
        return TaskPublicKey(self.private.public_key())

    @property
    def key_id(self) -> bytes:
        return key_id(self.private)

    def reveal_bytes(self) -> bytes:
        """The raw 32 private-key bytes, as published after training."""
        return self.private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())

    def reveal_document(self) -> dict:
        return {"schema": REVEAL_SCHEMA, "alg": ALG, "private_key": self.reveal_bytes().hex(),
                "public_key": self.public.raw.hex()}

    @classmethod
    def from_reveal(cls, raw: bytes, *, expected: TaskPublicKey | bytes | None = None) -> "TaskKey":
        """Load a revealed key; with ``expected`` (the published public key or its key id) check it is the task's."""
        raw = bytes(raw)
        if len(raw) != 32:
            raise TaskError(f"a revealed X25519 task key is 32 bytes, got {len(raw)}")
        key = cls(x25519.X25519PrivateKey.from_private_bytes(raw))
        if expected is not None:
            want = expected.key_id if isinstance(expected, TaskPublicKey) else bytes(expected)
            if not hmac.compare_digest(want, key.key_id):
                raise TaskError(f"revealed key {key.key_id.hex()[:16]} is not the task's published key "
                                f"{want.hex()[:16]}: the reveal is wrong")
        return key

    @classmethod
    def from_reveal_document(cls, doc: Any, *, expected: TaskPublicKey | bytes | None = None) -> "TaskKey":
        if not isinstance(doc, dict) or doc.get("schema") != REVEAL_SCHEMA or doc.get("alg") != ALG:
            raise TaskError(f"not a {REVEAL_SCHEMA} document with alg {ALG}")
        key = cls.from_reveal(_hex32(doc.get("private_key"), "private_key"), expected=expected)
        if "public_key" in doc and _hex32(doc["public_key"], "public_key") != key.public.raw:
            raise TaskError("revealed key document: public_key does not belong to private_key")
        return key

    # --- sealed on disk, with the node's password (the crypto layer's scrypt + AES-GCM sealing) ---

    def seal(self, password: str, *, light_kdf: bool = False) -> bytes:
        return seal(self.reveal_bytes(), password, SEAL_KIND, light_kdf=light_kdf)

    @classmethod
    def unseal(cls, blob: bytes, password: str, *, where: str = "sealed task key") -> "TaskKey":
        return cls.from_reveal(unseal(blob, password, SEAL_KIND, where=where))

    def save(self, data_dir: str | Path, ref: str, password: str, *, light_kdf: bool = False) -> Path:
        """Write ``<data_dir>/keys/tasks/<ref>.key`` (0600, never overwritten)."""
        path = task_key_path(data_dir, ref)
        write_sealed(path, self.reveal_bytes(), password, SEAL_KIND, light_kdf=light_kdf)
        return path

    @classmethod
    def load(cls, data_dir: str | Path, ref: str, password: str) -> "TaskKey":
        path = task_key_path(data_dir, ref)
        return cls.from_reveal(read_sealed(path, password, SEAL_KIND))


def task_key_path(data_dir: str | Path, ref: str) -> Path:
    """Where a task's sealed key lives; ``ref`` is a local name (e.g. the manifest CID or task id)."""
    if not isinstance(ref, str) or not _REF_RE.match(ref):
        raise CryptoError(f"invalid task key name {ref!r}: use 1-128 characters A-Z a-z 0-9 . _ -")
    return Path(data_dir).expanduser() / TASK_KEYS_DIR / f"{ref}.key"
