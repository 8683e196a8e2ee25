"""Thin Ethereum JSON-RPC client on httpx (runs on trio via anyio): calls, batches, retries, error mapping."""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from dainode.errors import ChainError, ChainRpcError, ChainStateGone, ChainUnavailable, NestingTooDeep
from dainode.limits import MAX_JSON_DEPTH, check_json_depth

log = logging.getLogger("dainode.chain")

# anvil's answer when the state of the block it resolved was pruned under the call (see ChainStateGone)
_OUT_OF_RANGE = re.compile(r"BlockOutOfRangeError: block height is (\d+) but requested was (\d+)")
# methods whose omitted block parameter means `latest`
_LATEST_BY_DEFAULT = frozenset({"eth_call", "eth_estimateGas", "eth_createAccessList"})
STATE_GONE_RETRIES = 5
STATE_GONE_BACKOFF_S = 0.02


def rpc_error(method: str, err: dict) -> ChainRpcError:
    """An endpoint's error object -> ChainRpcError, or its ChainStateGone subtype for anvil's pruned-head race."""
    code, message, data = int(err.get("code", -1)), str(err.get("message", "")), err.get("data")
    m = _OUT_OF_RANGE.search(message)
    if m and int(m.group(2)) < int(m.group(1)):
        return ChainStateGone(method, code, message, data, height=int(m.group(1)), requested=int(m.group(2)))
    return ChainRpcError(method, code, message, data)


def reads_latest(method: str, params: list[Any]) -> bool:
    """True when the call reads the state at the head (`latest`/`pending`, or no block given), so a retry reads the new head."""
    if params and params[-1] in ("latest", "pending"):
        return True
    return method in _LATEST_BY_DEFAULT and len(params) == 1


def to_int(value: Any) -> int:
    """Quantity from JSON-RPC (hex string) to int; ints pass through."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith(("0x", "0X")):
        return int(value, 16) if len(value) > 2 else 0
    raise ChainError(f"expected a hex quantity from the endpoint, got {value!r}")


def to_hex(value: int | bytes) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return hex(value)


def from_hex(value: str) -> bytes:
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise ChainError(f"expected 0x-prefixed hex data from the endpoint, got {value!r:.80}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ChainError(f"malformed hex data from the endpoint: {value!r:.80}") from None


def block_tag(block: int | str) -> str:
    """`latest`, `pending`, `earliest`, `safe`, `finalized`, a hex number or an int -> RPC block parameter."""
    if isinstance(block, int):
        return hex(block)
    if block in ("latest", "pending", "earliest", "safe", "finalized") or (isinstance(block, str) and block.startswith("0x")):
        return block
    if isinstance(block, str) and block.isdigit():
        return hex(int(block))
    raise ChainError(f"invalid block {block!r}: use latest, pending, earliest, a number or 0x-hex")


def decode_reply(body: bytes | str, *, what: str = "reply of the Ethereum endpoint") -> Any:
    """JSON from the endpoint, its nesting bounded first (json.loads recurses in C); ChainError if too deep."""
    try:
        check_json_depth(body, MAX_JSON_DEPTH, what=what)
        return json.loads(body)
    except NestingTooDeep as exc:
        raise ChainError(f"{exc}; the endpoint is broken or hostile") from None
    except RecursionError:
        raise ChainError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels; refused") from None


@dataclass
class CallStats:
    """Counters the service reports (calls, batches, retries, cumulative wall time)."""

    calls: int = 0
    batches: int = 0
    retries: int = 0
    failures: int = 0
    seconds: float = 0.0
    by_method: dict[str, int] = field(default_factory=dict)


class RpcClient:
    """JSON-RPC 2.0 over HTTP. Transport failures are retried with exponential backoff;
    after `retries` attempts ChainUnavailable says which endpoint is down. Error objects from
    the endpoint become ChainRpcError (never retried: the endpoint answered)."""

    def __init__(
        self, url: str, *, timeout: float = 10.0, retries: int = 4, backoff_s: float = 0.1, backoff_max_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.url = url
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.stats = CallStats()
        self._ids = itertools.count(1)
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> "RpcClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # One pooled connection set per client; keep-alive is what makes calls ~1 ms.
            self._client = httpx.AsyncClient(
                timeout=self.timeout, limits=httpx.Limits(max_connections=32), transport=self.transport
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with trio.CancelScope(shield=True):
                await client.aclose()

    async def _post(self, payload: Any, what: str) -> Any:
        delay = self.backoff_s
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            t0 = time.perf_counter()
            try:
                resp = await self._http().post(self.url, json=payload)
                self.stats.seconds += time.perf_counter() - t0
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise httpx.HTTPStatusError(f"HTTP {resp.status_code}", request=resp.request, response=resp)
                try:
                    return decode_reply(resp.content, what=f"{what}: reply of {self.url}")
                except ValueError:
                    raise ChainError(f"{what}: endpoint {self.url} answered HTTP {resp.status_code} with non-JSON body {resp.text[:120]!r}") from None
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                last = exc
                if attempt == self.retries:
                    break
                self.stats.retries += 1
                log.debug("%s: %s unreachable (%s); retry %d in %.2f s", what, self.url, exc, attempt + 1, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        self.stats.failures += 1
        raise ChainUnavailable(
            f"Ethereum endpoint {self.url} is unreachable ({type(last).__name__}: {last}) after {self.retries + 1} attempts; "
            "check that the chain is running and chain.endpoint is right"
        ) from last

    @staticmethod
    def _check(method: str, reply: Any) -> Any:
        if not isinstance(reply, dict):
            raise ChainError(f"{method}: malformed JSON-RPC reply {reply!r:.120}")
        if "error" in reply and reply["error"] is not None:
            err = reply["error"]
            if not isinstance(err, dict):
                raise ChainRpcError(method, -1, str(err))
            raise rpc_error(method, err)
        if "result" not in reply:
            raise ChainError(f"{method}: JSON-RPC reply without result or error")
        return reply["result"]

    async def call(self, method: str, *params: Any) -> Any:
        for attempt in range(STATE_GONE_RETRIES + 1):
            self.stats.calls += 1
            self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
            reply = await self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}, method)
            try:
                return self._check(method, reply)
            except ChainStateGone as exc:
                await self._state_gone(exc, attempt, reads_latest(method, list(params)))
        raise AssertionError("unreachable")  # pragma: no cover - _state_gone raises on the last attempt

    async def _state_gone(self, exc: ChainStateGone, attempt: int, at_head: bool) -> None:
        """Retry (return) a head read whose state a new block pruned under it; raise when not a head read or out of retries."""
        if not at_head:
            raise exc  # an explicit old block: retrying cannot bring its state back
        if attempt >= STATE_GONE_RETRIES:
            raise ChainStateGone(
                exc.method, exc.code,
                f"{exc.rpc_message}; still so after {STATE_GONE_RETRIES} retries at the new head: the endpoint keeps too few "
                "states (run anvil with `--prune-history 64`, not a bare `--prune-history`)",
                exc.data, height=exc.height, requested=exc.requested,
            ) from exc
        self.stats.retries += 1
        log.info("%s: %s dropped block %d's state under a read at latest (head now %d); retry %d",
                 exc.method, self.url, exc.requested, exc.height, attempt + 1)
        await trio.sleep(STATE_GONE_BACKOFF_S * 2**attempt)

    async def batch(self, calls: list[tuple[str, list[Any]]], *, raise_errors: bool = True) -> list[Any]:
        """Several calls in one HTTP request; results in call order. With raise_errors=False an
        error entry is returned as its ChainRpcError instead of raising."""
        if not calls:
            return []
        for attempt in range(STATE_GONE_RETRIES + 1):
            try:
                return await self._batch_once(calls, raise_errors)
            except ChainStateGone as exc:  # raised by _batch_once for head reads only
                await self._state_gone(exc, attempt, True)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _batch_once(self, calls: list[tuple[str, list[Any]]], raise_errors: bool) -> list[Any]:
        self.stats.batches += 1
        ids = [next(self._ids) for _ in calls]
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in zip(ids, calls)]
        replies = await self._post(payload, f"batch of {len(calls)}")
        if not isinstance(replies, list):
            # Some endpoints answer a batch they refuse with one error object.
            self._check(calls[0][0], replies)
            raise ChainError(f"endpoint {self.url} does not support JSON-RPC batches")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        out: list[Any] = []
        for i, (method, params) in zip(ids, calls):
            if i not in by_id:
                raise ChainError(f"batch reply from {self.url} lacks the answer to {method}")
            try:
                out.append(self._check(method, by_id[i]))
            except ChainRpcError as exc:
                if isinstance(exc, ChainStateGone) and reads_latest(method, params):
                    raise  # the whole batch is asked again at the new head (see batch)
                if raise_errors:
                    raise
                out.append(exc)
        return out
