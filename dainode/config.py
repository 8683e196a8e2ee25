"""Node configuration: one schema, four layers (defaults < TOML file < DAINODE_* env < flags)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dainode.errors import ConfigError

VALID_ROLES = ("data", "model", "compute")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def _doc(text: str, **extra: Any) -> dict:
    return {"doc": text, **extra}


def default_data_dir() -> str:
    """`$DAINODE_HOME`, else `~/.dainode`."""
    return os.environ.get("DAINODE_HOME") or str(Path.home() / ".dainode")


# --- the schema: one dataclass per TOML table -----------------------------------------
# Each field's metadata carries its documentation (config/default.toml repeats it, and a
# test checks that the two agree) and, optionally, `choices` or a `check` function that
# raises ValueError with a human message.


def _check_multiaddr(value: str) -> None:
    from multiaddr import Multiaddr

    try:
        Multiaddr(value)
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise ValueError(f"not a valid multiaddr ({exc})") from None


def _check_bootstrap(value: str) -> None:
    _check_multiaddr(value)
    if "/p2p/" not in value:
        raise ValueError("a bootstrap address must end in /p2p/<peer id>")


def _check_endpoint(value: str) -> None:
    if value in ("dev", "none"):
        return
    if not value.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError('expected "dev", "none" or an http(s)/ws(s) JSON-RPC URL')


# Every numeric key has `range=(low, high)` (inclusive) in its metadata: NaN, infinity and
# anything outside are refused at start (a test fails for a numeric key without one).
DAY_S = 86400.0
# the largest UnixFS leaf the store supports (dainode.store.unixfs.MAX_CHUNK_SIZE; a test checks they agree)
MAX_CHUNK_SIZE = 1024 * 1024


def _range(low: float, high: float) -> tuple[float, float]:
    return (low, high)


def range_text(bounds: tuple[float, float]) -> str:
    """`1 to 1048576`, `0.05 to 60.0`: how config/default.toml and errors state an allowed range."""
    return " to ".join(str(b) if isinstance(b, int) else repr(float(b)) for b in bounds)


@dataclass
class P2PConfig:
    listen: list[str] = field(
        default_factory=lambda: ["/ip4/0.0.0.0/tcp/4040"],
        metadata=_doc("Multiaddrs to listen on (TCP). Port 0 picks a free port.", check=_check_multiaddr),
    )
    bootstrap: list[str] = field(
        default_factory=list,
        metadata=_doc("Peers to dial at start and keep connected (multiaddrs ending in /p2p/<peer id>).", check=_check_bootstrap),
    )
    mdns: bool = field(default=False, metadata=_doc("Discover peers on the local network with mDNS."))
    dht: bool = field(default=True, metadata=_doc("Run the Kademlia DHT for peer routing and content providers."))
    low_water: int = field(default=8, metadata=_doc("Dial more peers when fewer than this many are connected.", range=_range(0, 10_000)))
    high_water: int = field(default=64, metadata=_doc("Close the least useful connections above this many peers.", range=_range(1, 10_000)))
    dial_backoff_max_s: float = field(default=60.0, metadata=_doc("Longest wait between reconnection attempts to a bootstrap peer.", range=_range(0.1, DAY_S)))


@dataclass
class GossipConfig:
    max_message_size: int = field(default=262144, metadata=_doc("Largest accepted gossip message in bytes.", range=_range(1024, 4 * 1024 * 1024)))
    time_window_s: float = field(default=300.0, metadata=_doc("Accept messages whose timestamp is at most this far from local time.", range=_range(1.0, DAY_S)))
    heartbeat_s: float = field(default=1.0, metadata=_doc("Gossipsub heartbeat interval (mesh maintenance).", range=_range(0.05, 60.0)))
    seen_ttl_s: float = field(default=900.0, metadata=_doc("How long message ids are remembered to drop replays.", range=_range(1.0, 7 * DAY_S)))
    mesh_degree: int = field(default=6, metadata=_doc("Gossipsub mesh degree D (peers each message is pushed to); D_low = D-2, D_high = 2D.", range=_range(1, 64)))


@dataclass
class StoreConfig:
    chunk_size: int = field(default=262144, metadata=_doc("UnixFS chunk size in bytes for `add`.", range=_range(1, MAX_CHUNK_SIZE)))
    cid_version: int = field(default=1, metadata=_doc("CID version for `add` (0 or 1).", choices=(0, 1), range=_range(0, 1)))
    raw_leaves: bool = field(default=True, metadata=_doc("Store file leaves as raw blocks (CIDv1 default)."))
    fetch_timeout_s: float = field(default=120.0, metadata=_doc("Give up fetching a block from the network after this long.", range=_range(0.1, DAY_S)))
    max_concurrent_wants: int = field(default=64, metadata=_doc("Blocks requested from the network at once by one fetch.", range=_range(1, 1024)))


@dataclass
class ChainConfig:
    endpoint: str = field(
        default="dev",
        metadata=_doc('"dev" spawns a private anvil; "none" runs without a chain; otherwise an Ethereum JSON-RPC URL.', check=_check_endpoint),
    )
    deployment_file: str = field(
        default="",
        metadata=_doc("JSON file with the contract addresses (empty: <data_dir>/deployment.json)."),
    )
    confirmations: int = field(default=0, metadata=_doc("Blocks to wait before acting on an event (0 for dev chains).", range=_range(0, 1000)))
    fee_multiplier: float = field(default=1.25, metadata=_doc("Multiplier on the base fee for EIP-1559 maxFeePerGas.", range=_range(1.0, 100.0)))
    max_fee_gwei: float = field(default=500.0, metadata=_doc("Never offer more than this maxFeePerGas (gwei).", range=_range(0.000001, 1_000_000.0)))
    poll_interval_s: float = field(default=1.0, metadata=_doc("Log polling interval when the endpoint has no websocket.", range=_range(0.01, 3600.0)))
    receipt_timeout_s: float = field(default=120.0, metadata=_doc("Give up waiting for a transaction receipt after this long.", range=_range(1.0, DAY_S)))
    dev_time_travel: bool = field(default=False, metadata=_doc(
        "Dev chains (chain id 31337) only: a model provider moves the chain's clock past a task's challenge window "
        "(evm_increaseTime) instead of waiting it out; every task on that chain sees the time pass (tests, demos)."))


def _check_http_listen(value: str) -> None:
    if value == "none":
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError('expected "none" or HOST:PORT, e.g. "127.0.0.1:5050" (port 0 picks a free one)')


@dataclass
class HttpConfig:
    listen: str = field(
        default="127.0.0.1:5050",
        metadata=_doc('Dashboard and /metrics address HOST:PORT (port 0 picks a free one); "none" turns them off.', check=_check_http_listen),
    )
    allow_remote: bool = field(default=False, metadata=_doc("Allow http.listen on a non-loopback address (anyone who can reach it and has the token sees the dashboard)."))


@dataclass
class Config:
    data_dir: str = field(
        default_factory=default_data_dir,
        metadata=_doc("Where keys, the blockstore, state and the admin socket live ($DAINODE_HOME or ~/.dainode)."),
    )
    roles: list[str] = field(
        default_factory=list,
        metadata=_doc("Roles this node plays: any of data, model, compute. Empty: relay only.", choices=VALID_ROLES),
    )
    log_level: str = field(default="info", metadata=_doc("debug, info, warning or error.", choices=LOG_LEVELS))
    log_format: str = field(default="text", metadata=_doc("text (one line per event) or json (one object per line).", choices=LOG_FORMATS))
    p2p: P2PConfig = field(default_factory=P2PConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    http: HttpConfig = field(default_factory=HttpConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- schema walking ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeySpec:
    """One leaf key of the schema, e.g. `p2p.listen`."""

    path: str
    type: Any
    field: dataclasses.Field

    @property
    def doc(self) -> str:
        return self.field.metadata.get("doc", "")

    @property
    def default(self) -> Any:
        if self.field.default is not dataclasses.MISSING:
            return self.field.default
        return self.field.default_factory()  # type: ignore[misc]


def _sections(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def iter_keys(cls: type = Config, prefix: str = "") -> list[KeySpec]:
    """Every leaf key of the schema, dotted, in declaration order."""
    hints = typing.get_type_hints(cls)
    keys: list[KeySpec] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(iter_keys(tp, f"{prefix}{f.name}."))
        else:
            keys.append(KeySpec(f"{prefix}{f.name}", tp, f))
    return keys


KEYS: dict[str, KeySpec] = {k.path: k for k in iter_keys()}


def _type_name(tp: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, "a list of strings")


def coerce(spec: KeySpec, value: Any, *, source: str, from_text: bool = False) -> Any:
    """Convert `value` to the key's type and validate it; ConfigError names key, value and what is accepted."""
    tp = spec.type

    def fail(why: str) -> ConfigError:
        bounds = spec.field.metadata.get("range")
        allowed = f"; allowed range is {range_text(bounds)}" if bounds is not None else ""
        return ConfigError(f"invalid value {value!r} for {spec.path} (from {source}): {why}{allowed}", key=spec.path)

    try:
        if tp is bool:
            if from_text and isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise fail("expected true or false")
                value = low in ("1", "true", "yes", "on")
            elif not isinstance(value, bool):
                raise fail("expected true or false")
            out: Any = value
        elif tp is int:
            if from_text and isinstance(value, str):
                value = int(value.strip())
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail("expected an integer")
            out = value
        elif tp is float:
            if from_text and isinstance(value, str):
                value = float(value.strip())
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise fail("expected a number")
            out = float(value)
        elif tp is str:
            if not isinstance(value, str):
                raise fail("expected a string")
            out = value
        else:  # list[str]
            if from_text and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail("expected a list of strings")
            out = list(value)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise fail(f"expected {_type_name(tp)}") from None

    choices = spec.field.metadata.get("choices")
    check = spec.field.metadata.get("check")
    bounds = spec.field.metadata.get("range")
    items = out if isinstance(out, list) else [out]
    for item in items:
        if bounds is not None and not bounds[0] <= item <= bounds[1]:  # NaN fails every comparison
            raise ConfigError(
                f"invalid value {item!r} for {spec.path} (from {source}): allowed range is {range_text(bounds)}",
                key=spec.path,
            )
        if choices is not None and item not in choices:
            accepted = ", ".join(str(c) for c in choices)
            raise ConfigError(
                f"invalid value {item!r} for {spec.path} (from {source}); accepted values: {accepted}", key=spec.path
            )
        if check is not None:
            try:
                check(item)
            except ValueError as exc:
                raise ConfigError(f"invalid value {item!r} for {spec.path} (from {source}): {exc}", key=spec.path) from None
    return out


def _flatten_toml(data: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    sections = _sections(Config)
    flat: dict[str, Any] = {}
    for name, value in data.items():
        path = f"{prefix}{name}"
        if not prefix and name in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] in {source} must be a table", key=name)
            flat.update(_flatten_toml(value, source, f"{name}."))
            continue
        if path not in KEYS:
            known = ", ".join(k for k in KEYS if k.startswith(prefix) and "." not in k[len(prefix):])
            raise ConfigError(f"unknown key {path!r} in {source}; known keys here: {known}", key=path)
        flat[path] = value
    return flat


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into dotted keys; unknown keys and unreadable files are ConfigErrors."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror or exc}", key="--config") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}", key="--config") from None
    return _flatten_toml(data, str(p))


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """`DAINODE_<KEY>` or `DAINODE_<SECTION>_<KEY>` values (strings) for known keys; other DAINODE_* vars are ignored."""
    out: dict[str, str] = {}
    for path in KEYS:
        var = "DAINODE_" + path.replace(".", "_").upper()
        if var in environ:
            out[path] = environ[var]
    return out


#: Command-line flags not named after their key's last part (error messages name the real flag).
FLAG_NAMES = {"chain.endpoint": "--chain", "http.listen": "--http-listen", "http.allow_remote": "--http-allow-remote"}


def build_config(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the four layers and validate every value. Flags are dotted keys with typed values (None = not given)."""
    environ = os.environ if environ is None else environ
    values: dict[str, tuple[Any, str, bool]] = {}
    if config_file is not None:
        for path, value in load_toml(config_file).items():
            values[path] = (value, f"config file {config_file}", False)
    for path, value in env_overrides(environ).items():
        values[path] = (value, "environment DAINODE_" + path.replace(".", "_").upper(), True)
    for path, value in (flags or {}).items():
        if value is None:
            continue
        if path not in KEYS:
            raise ConfigError(f"unknown configuration key {path!r}", key=path)
        flag = FLAG_NAMES.get(path) or "--" + path.split(".")[-1].replace("_", "-")
        values[path] = (value, f"flag {flag}", isinstance(value, str) and KEYS[path].type is not str)

    cfg = Config()
    for path, (value, source, from_text) in values.items():
        typed = coerce(KEYS[path], value, source=source, from_text=from_text)
        section, _, leaf = path.rpartition(".")
        target = getattr(cfg, section) if section else cfg
        setattr(target, leaf, typed)
    if cfg.p2p.low_water > cfg.p2p.high_water:
        raise ConfigError(
            f"p2p.low_water ({cfg.p2p.low_water}) must not exceed p2p.high_water ({cfg.p2p.high_water})", key="p2p.low_water"
        )
    # Roles are a set; keep a stable order and drop duplicates.
    cfg.roles = sorted(set(cfg.roles))
    return cfg
