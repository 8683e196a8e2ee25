"""The signed gossip envelope: msgpack `{v, type, body, sender, ts, sig}`, EIP-191 signed by the node's Ethereum key."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

from dainode.errors import GossipRejected
from dainode.limits import MAX_MSGPACK_DEPTH

VERSION = 1
SUPPORTED_VERSIONS = frozenset({VERSION})
# Domain separation: a gossip signature can never be replayed as a signature over
# something else the same account signs (transactions are not EIP-191 anyway).
SIGNING_DOMAIN = b"dai-gossip"
FIELDS = frozenset({"v", "type", "body", "sender", "ts", "sig"})


@dataclass(frozen=True)
class GossipMessage:
    """A validated, decoded gossip message as roles see it (no msgpack, no signature)."""

    topic: str
    v: int
    type: str
    body: dict
    sender: str  # checksummed Ethereum address that signed the envelope
    ts: int  # sender's clock, milliseconds since the epoch
    peer_id: str  # libp2p peer that originated the message (base58)
    msg_id: str = ""  # hex pubsub message id (origin peer + seqno)
    received_at: float = field(default=0.0, compare=False)  # local time.time() at acceptance

    def to_json(self) -> dict:
        return {
            "topic": self.topic,
            "v": self.v,
            "type": self.type,
            "body": jsonable(self.body),
            "sender": self.sender,
            "ts": self.ts,
            "peer_id": self.peer_id,
            "msg_id": self.msg_id,
            "received_at": self.received_at,
        }


def jsonable(value: Any) -> Any:
    """msgpack values as JSON values: bytes become 0x-hex strings, tuples lists."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what msgpack can encode


def check_body(body: Any, limit: int = MAX_MSGPACK_DEPTH) -> None:
    """Raise ValueError unless `body` is data msgpack and JSON can both carry: nesting at most `limit`,
    integers within 64 bits, finite floats, string or integer keys. No recursion (it may come from a peer)."""
    stack: list[tuple[Any, int, Any]] = [(body, 0, None)]  # (value, depth, (parent path, key))

    def where(trail: Any) -> str:
        parts = []
        while trail is not None:
            trail, key = trail
            parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        return ("body" + "".join(reversed(parts)))[:120]

    while stack:
        item, depth, trail = stack.pop()
        if item is None or isinstance(item, (bool, str, bytes)):
            continue
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise ValueError(f"{where(trail)}: integer {str(item)[:24]}… is outside the 64-bit range; send it as a string")
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"{where(trail)}: {item} is not a finite number (NaN and infinity are not JSON)")
            continue
        if isinstance(item, (dict, list, tuple)):
            if depth + 1 > limit:
                raise ValueError(f"{where(trail)}: nested deeper than {limit} levels")
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(key, bool) or not isinstance(key, (str, int)) or (isinstance(key, int) and not INT_MIN <= key <= INT_MAX):
                        raise ValueError(f"{where(trail)}: map keys must be strings, got {type(key).__name__}")
                    stack.append((value, depth + 1, (trail, str(key))))
            else:
                stack.extend((value, depth + 1, (trail, i)) for i, value in enumerate(item))
            continue
        raise ValueError(f"{where(trail)}: {type(item).__name__} values cannot be sent")


def signing_payload(topic: str, v: int, type_: str, body: dict, sender: str, ts: int) -> bytes:
    """The bytes the sender signs. The topic is included so a message cannot be replayed on another topic."""
    return SIGNING_DOMAIN + msgpack.packb([v, topic, type_, body, sender, ts], use_bin_type=True)


def seal(account, topic: str, type_: str, body: dict, *, ts: int | None = None, v: int = VERSION) -> bytes:
    """Build and sign an envelope with `account` (an eth_account LocalAccount); returns the wire bytes."""
    if not isinstance(type_, str) or not type_:
        raise ValueError("message type must be a non-empty string")
    if not isinstance(body, dict):
        raise ValueError("message body must be a dict")
    check_body(body)
    ts = int(time.time() * 1000) if ts is None else ts
    payload = signing_payload(topic, v, type_, body, account.address, ts)
    sig = account.sign_message(encode_defunct(primitive=payload)).signature
    return msgpack.packb(
        {"v": v, "type": type_, "body": body, "sender": account.address, "ts": ts, "sig": bytes(sig)},
        use_bin_type=True,
    )


def open_envelope(topic: str, data: bytes, *, verify: bool = True) -> dict:
    """Decode and check one envelope; returns its fields. Raises GossipRejected(reason) on any defect.

    Reasons: malformed (not msgpack / wrong fields or types), unknown_version,
    bad_signature (does not recover), sender_mismatch (recovers to another address).
    """
    try:
        env = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises a zoo of types on garbage
        raise GossipRejected("malformed", f"not msgpack: {type(exc).__name__}") from None
    if not isinstance(env, dict) or set(env) != FIELDS:
        keys = sorted(map(str, env)) if isinstance(env, dict) else type(env).__name__
        raise GossipRejected("malformed", f"expected fields {sorted(FIELDS)}, got {keys}")
    v, type_, body, sender, ts, sig = (env[k] for k in ("v", "type", "body", "sender", "ts", "sig"))
    if not isinstance(v, int) or isinstance(v, bool):
        raise GossipRejected("malformed", "v must be an integer")
    if v not in SUPPORTED_VERSIONS:
        raise GossipRejected("unknown_version", f"v={v}")
    if not isinstance(type_, str) or not type_ or not isinstance(body, dict):
        raise GossipRejected("malformed", "type must be a non-empty string and body a map")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise GossipRejected("malformed", "ts must be an integer (ms)")
    try:
        check_body(body)
    except ValueError as exc:
        raise GossipRejected("malformed", str(exc)) from None
    if not isinstance(sender, str) or not isinstance(sig, bytes) or len(sig) != 65:
        raise GossipRejected("malformed", "sender must be an address string and sig 65 bytes")
    try:
        sender = to_checksum_address(sender)
    except Exception:
        raise GossipRejected("malformed", f"sender {sender!r} is not an address") from None
    env = {"v": v, "type": type_, "body": body, "sender": sender, "ts": ts, "sig": sig, "raw_sender": env["sender"]}
    if verify:
        verify_envelope(topic, env)
    return env


def verify_envelope(topic: str, env: dict) -> None:
    """Check the signature of an envelope decoded by `open_envelope(verify=False)`."""
    payload = signing_payload(topic, env["v"], env["type"], env["body"], env["raw_sender"], env["ts"])
    try:
        signer = Account.recover_message(encode_defunct(primitive=payload), signature=env["sig"])
    except Exception as exc:
        raise GossipRejected("bad_signature", f"signature does not recover: {type(exc).__name__}") from None
    if signer != env["sender"]:
        raise GossipRejected("sender_mismatch", f"signed by {signer}, claims {env['sender']}")
