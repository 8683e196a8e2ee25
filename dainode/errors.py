"""The one exception hierarchy of dainode; library errors are wrapped into these at package boundaries."""

from __future__ import annotations


class DainodeError(Exception):
    """Base of every error dainode raises on purpose.

    The message says what was wrong and, where possible, what to do about it.
    """


# --- configuration and local files -------------------------------------------------


class ConfigError(DainodeError):
    """A configuration value, file or flag is invalid (the CLI exits with status 2)."""

    def __init__(self, message: str, *, key: str | None = None):
        super().__init__(message)
        self.key = key


class IdentityError(DainodeError):
    """Key material is missing, unreadable or cannot be decrypted."""


class WrongPasswordError(IdentityError):
    """A keystore or sealed key file did not decrypt with the given password."""


class NestingTooDeep(DainodeError):
    """Outside input (JSON, msgpack, a DAG) nests deeper than dainode accepts; refused before it is decoded further."""

    def __init__(self, what: str, depth: int | None, limit: int):
        found = f" ({depth} levels)" if depth is not None else ""
        super().__init__(f"{what} is nested deeper than {limit} levels{found}; refused")
        self.depth = depth
        self.limit = limit


class NodeNotRunningError(DainodeError):
    """No daemon answers on the admin socket."""


class ServiceNotRunning(DainodeError):
    """A service was used before it started (or after it stopped); the work was not done."""


class ServiceCrashed(DainodeError):
    """A supervised service of the node raised; the node stops with a non-zero status."""

    def __init__(self, service: str, cause: BaseException):
        super().__init__(f"service {service!r} crashed: {type(cause).__name__}: {cause}")
        self.service = service
        self.cause = cause


# --- admin JSON-RPC -----------------------------------------------------------------


class RpcError(DainodeError):
    """A JSON-RPC error object, raised by methods or received by the client."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # Application errors (-32000 .. -32099 are reserved for implementation-defined server errors).
    APPLICATION_ERROR = -32000

    def __init__(self, code: int, message: str, data: object | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        err: dict = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


# --- peer-to-peer -------------------------------------------------------------------


class P2PError(DainodeError):
    """A libp2p operation (dial, stream, gossip) failed."""


class GossipRejected(P2PError):
    """An incoming gossip message failed validation; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"gossip message rejected ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


class ProtocolError(P2PError):
    """A peer sent something that does not follow a dainode wire protocol."""


class RequestTimeout(P2PError):
    """A request/response exchange with a peer did not finish in time."""


class StreamBroken(P2PError):
    """The connection to a peer broke mid-request (it went away, restarted or reset the stream)."""


class RemoteError(P2PError):
    """A peer answered a request/response exchange with an error (its handler refused the request)."""


# --- content storage ----------------------------------------------------------------


class StoreError(DainodeError):
    """Blockstore, UnixFS or bitswap failure."""


class BlockNotFound(StoreError):
    """A block is neither local nor could be fetched from any provider in time."""


class InvalidBlock(StoreError):
    """A block's bytes do not hash to its CID, or it does not decode as its codec says."""


class InvalidCid(StoreError):
    """A string or bytes value is not a valid CID."""


class PathRefused(StoreError):
    """A local path store_add/store_get must not read or write (the node's data dir, a device, /proc, an existing file)."""


# --- chain --------------------------------------------------------------------------


class ChainError(DainodeError):
    """Ethereum JSON-RPC, signing, or contract failure."""


class ChainUnavailable(ChainError):
    """The RPC endpoint cannot be reached (after retries)."""


class ChainRpcError(ChainError):
    """The Ethereum endpoint answered a JSON-RPC call with an error object (`code`, `data` kept)."""

    def __init__(self, method: str, code: int, message: str, data: object | None = None):
        super().__init__(f"{method} failed at the Ethereum endpoint: {message} (code {code})")
        self.method = method
        self.code = code
        self.rpc_message = message
        self.data = data


class ChainStateGone(ChainRpcError):
    """The endpoint resolved `latest` to block `requested`, then no longer held its state (a new head `height` pruned it).

    anvil `--prune-history` without a state count keeps only the newest state, so a block mined
    between resolving the tag and reading the state fails the read (BlockOutOfRangeError with
    requested < height). Transient: RpcClient retries such a read at the new head."""

    def __init__(self, method: str, code: int, message: str, data: object | None = None, *, height: int, requested: int):
        super().__init__(method, code, message, data)
        self.height = height
        self.requested = requested


class TransactionReverted(ChainError):
    """A transaction or call reverted; `error_name` is the decoded custom error if known."""

    def __init__(self, message: str, *, error_name: str | None = None, args: tuple = (), tx_hash: str | None = None):
        super().__init__(message)
        self.error_name = error_name
        self.error_args = args
        self.tx_hash = tx_hash


class ProofError(ChainError):
    """A Merkle proof or block header from the RPC endpoint does not verify."""


class ConsentError(ChainError):
    """A TrainingTask match consent (EIP-712 signature) is malformed or not signed by whom it should be."""


# --- local state --------------------------------------------------------------------


class StateError(DainodeError):
    """The node's durable state (SQLite) rejected an operation."""


# --- privacy and learning -----------------------------------------------------------


class CryptoError(DainodeError):
    """Encryption, decryption or key handling failed."""


class EnvelopeError(CryptoError):
    """An encrypted envelope is malformed, tampered with, truncated, or of an unknown version."""


class DecryptionError(CryptoError):
    """Ciphertext did not authenticate with the given key."""


class MLError(DainodeError):
    """Training, evaluation or aggregation failed."""


class DatasetError(MLError):
    """A dataset file does not match its declared schema; the message says what does not fit."""


class AggregationError(MLError):
    """An aggregation rule cannot be applied (e.g. a non-linear rule under CKKS)."""


# --- training tasks -----------------------------------------------------------------


class TaskError(DainodeError):
    """A training-task step (manifest, keys, round, split, verification) cannot proceed."""


class FetchTimeout(TaskError):
    """A document of a task could not be fetched in time: no connected peer served it (yet)."""


class DocumentRejected(TaskError):
    """A task document (update, global model, round result) fails a check.

    `reason` is a short stable code (e.g. ``wrong_round``, ``undecryptable``) that goes into the
    on-chain rejection evidence; `detail` says what exactly did not fit.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LocalnetError(DainodeError):
    """The local testnet (dainode.localnet: anvil and daemons on this machine) could not be started, found or stopped."""
