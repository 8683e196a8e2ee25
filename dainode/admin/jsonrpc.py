"""JSON-RPC 2.0 protocol logic (parse, bind params, dispatch, encode), independent of any transport."""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
import math
import typing
from typing import Any, Awaitable, Callable

from dainode.errors import DainodeError, NestingTooDeep, RpcError
from dainode.limits import MAX_JSON_DEPTH, check_json_depth

log = logging.getLogger("dainode.admin")

Method = Callable[..., Any] | Callable[..., Awaitable[Any]]

#: Requests in one batch; more are refused as a whole (geth refuses over its batch limit too).
MAX_BATCH = 100
#: Bytes of reply to one line (a request or a whole batch); a bigger reply is refused, not built.
MAX_REPLY_BYTES = 32 * 1024 * 1024

#: Reply bytes the method running now may still produce. Methods that can return a lot
#: (store_cat) read it to refuse up front instead of building a reply that is then thrown away.
reply_budget: contextvars.ContextVar[int] = contextvars.ContextVar("reply_budget", default=MAX_REPLY_BYTES)

_SIMPLE_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "an array", dict: "an object"}


class MethodRegistry:
    """Name -> callable. Methods take named parameters; positional JSON arrays bind in order."""

    def __init__(self) -> None:
        self._methods: dict[str, tuple[Method, inspect.Signature, dict[str, Any]]] = {}

    def add(self, name: str, fn: Method) -> None:
        if name in self._methods:
            raise ValueError(f"RPC method {name!r} registered twice")
        if "_" not in name:
            raise ValueError(f"RPC method {name!r} must be namespaced like `module_method`")
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable annotations: skip type checks rather than fail registration
            hints = {}
        self._methods[name] = (fn, inspect.signature(fn), hints)

    def add_all(self, methods: dict[str, Method]) -> None:
        for name, fn in methods.items():
            self.add(name, fn)

    def names(self) -> list[str]:
        return sorted(self._methods)

    def modules(self) -> dict[str, str]:
        return {name.split("_", 1)[0]: "1.0" for name in self._methods}

    def lookup(self, name: str) -> tuple[Method, inspect.Signature, dict[str, Any]]:
        try:
            return self._methods[name]
        except KeyError:
            raise RpcError(RpcError.METHOD_NOT_FOUND, f"method not found: {name!r} (see rpc_modules)") from None


def _check_type(name: str, value: Any, hint: Any) -> None:
    """Reject obviously wrong JSON types for simply-annotated params (-32602)."""
    origin = typing.get_origin(hint) or hint
    if origin is typing.Union or str(origin) == "types.UnionType":
        options = [typing.get_origin(a) or a for a in typing.get_args(hint)]
    else:
        options = [origin]
    if type(None) in options and value is None:
        return
    checkable = [o for o in options if o in _SIMPLE_TYPES]
    if not checkable or len(checkable) != len([o for o in options if o is not type(None)]):
        return
    for o in checkable:
        if o is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if o is int and isinstance(value, bool):
            continue
        if isinstance(value, o):
            return
    wanted = " or ".join(_SIMPLE_TYPES[o] for o in checkable)
    raise RpcError(RpcError.INVALID_PARAMS, f"invalid params: {name!r} must be {wanted}, got {json.dumps(value)[:80]}")


def bind_params(sig: inspect.Signature, hints: dict[str, Any], params: Any) -> inspect.BoundArguments:
    try:
        if params is None:
            bound = sig.bind()
        elif isinstance(params, list):
            bound = sig.bind(*params)
        elif isinstance(params, dict):
            bound = sig.bind(**params)
        else:
            raise RpcError(RpcError.INVALID_REQUEST, "invalid request: params must be an array or an object")
    except TypeError as exc:
        expected = ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"{p.name}?" for p in sig.parameters.values()
        )
        raise RpcError(RpcError.INVALID_PARAMS, f"invalid params: {exc} (expected: {expected or 'none'})") from None
    for name, value in bound.arguments.items():
        if name in hints:
            _check_type(name, value, hints[name])
    return bound


def _error(id_: Any, err: RpcError) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "error": err.to_json()}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)  # ASCII (ensure_ascii): len() is the size in bytes


async def call_one(registry: MethodRegistry, request: Any) -> str | None:
    """Handle one request object; its encoded response, or None for notifications (no `id`)."""
    return (await _call(registry, request))[0]


async def _call(registry: MethodRegistry, request: Any) -> tuple[str | None, bool]:
    """(encoded response or None for a notification, whether the result was refused as too large)."""
    text, too_large = await _respond(registry, request)
    return (None if isinstance(request, dict) and "id" not in request else text), too_large


async def _respond(registry: MethodRegistry, request: Any) -> tuple[str, bool]:
    if not isinstance(request, dict):
        return _dumps(_error(None, RpcError(RpcError.INVALID_REQUEST, "invalid request: expected a JSON object"))), False
    id_ = request.get("id")
    if request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
        return _dumps(_error(id_, RpcError(RpcError.INVALID_REQUEST, 'invalid request: needs "jsonrpc": "2.0" and a string "method"'))), False
    if not (id_ is None or isinstance(id_, (str, int, float))) or isinstance(id_, bool) or (isinstance(id_, float) and not math.isfinite(id_)):
        return _dumps(_error(None, RpcError(RpcError.INVALID_REQUEST, "invalid request: id must be a string, number or null"))), False
    method = request["method"]
    budget = reply_budget.get()
    too_large = False
    try:
        fn, sig, hints = registry.lookup(method)
        bound = bind_params(sig, hints, request.get("params"))
        result = fn(*bound.args, **bound.kwargs)
        if inspect.isawaitable(result):
            result = await result
        # encode here, inside the error handling, not while writing (NaN is not JSON: _dumps refuses it)
        text = _dumps({"jsonrpc": "2.0", "id": id_, "result": result})
        if len(text) > budget:
            too_large = True
            raise RpcError(
                RpcError.APPLICATION_ERROR,
                f"reply too large: {method} returned {len(text)} bytes, over the {budget} bytes this request "
                f"may still return (replies to one request or batch are limited); ask for less per call "
                f"(store_cat: offset/length) or use store_get to write a file on the daemon's machine",
            )
    except RpcError as err:
        text = _dumps(_error(id_, err))
    except DainodeError as exc:
        text = _dumps(_error(id_, RpcError(RpcError.APPLICATION_ERROR, str(exc), {"type": type(exc).__name__})))
    except Exception as exc:  # noqa: BLE001 - a faulty method must not take the socket down
        log.exception("RPC method %s failed", method)
        text = _dumps(_error(id_, RpcError(RpcError.INTERNAL_ERROR, f"internal error in {method}: {type(exc).__name__}: {exc}")))
    return text, too_large


async def _run_limited(registry: MethodRegistry, request: Any, budget: int) -> tuple[str | None, bool]:
    """Run one request allowed `budget` bytes of reply (methods see it as `reply_budget`)."""
    token = reply_budget.set(budget)
    try:
        return await _call(registry, request)
    finally:
        reply_budget.reset(token)


async def handle_message(
    registry: MethodRegistry, line: bytes, *, max_batch: int = MAX_BATCH, max_reply_bytes: int = MAX_REPLY_BYTES
) -> bytes | None:
    """One line in, one line out (None when nothing is to be sent back). Never raises: whatever
    the client sent, the answer is a JSON-RPC error rather than a crash of the connection handler."""
    try:
        return await _handle_message(registry, line, max_batch, max_reply_bytes)
    except Exception as exc:  # noqa: BLE001 - a bug here must not take the admin socket down
        log.exception("admin request could not be handled")
        return encode(_error(None, RpcError(RpcError.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")))


async def _handle_message(registry: MethodRegistry, line: bytes, max_batch: int, max_reply_bytes: int) -> bytes | None:
    try:
        # json.loads recurses in C: measure the nesting first, without recursion
        check_json_depth(line, MAX_JSON_DEPTH, what="request")
        payload = json.loads(line)
    except NestingTooDeep as exc:
        return encode(_error(None, RpcError(RpcError.INVALID_REQUEST, f"invalid request: {exc}")))
    except RecursionError:
        return encode(_error(None, RpcError(RpcError.INVALID_REQUEST, f"invalid request: nested deeper than {MAX_JSON_DEPTH} levels")))
    except (UnicodeDecodeError, ValueError) as exc:
        return encode(_error(None, RpcError(RpcError.PARSE_ERROR, f"parse error: {exc}")))
    if isinstance(payload, list):
        if not payload:
            return encode(_error(None, RpcError(RpcError.INVALID_REQUEST, "invalid request: empty batch")))
        if len(payload) > max_batch:
            return encode(_error(None, RpcError(
                RpcError.INVALID_REQUEST,
                f"invalid request: batch of {len(payload)} requests; at most {max_batch} per batch, send it in smaller batches",
            )))
        return _encode_batch(await _run_batch(registry, payload, max_reply_bytes))
    text, _ = await _run_limited(registry, payload, max_reply_bytes)
    return None if text is None else text.encode("utf-8") + b"\n"


async def _run_batch(registry: MethodRegistry, payload: list, max_reply: int) -> list[str]:
    """Run a batch in order while its replies fit in `max_reply` bytes; refuse the rest unrun."""
    texts: list[str] = []
    left = max_reply - 2  # the enclosing [ ]
    for item in payload:
        if left <= 0:
            id_ = item.get("id") if isinstance(item, dict) else None
            if isinstance(item, dict) and "id" not in item:
                continue  # a notification gets no reply, and is not run either
            texts.append(_dumps(_error(id_, RpcError(
                RpcError.APPLICATION_ERROR,
                f"not run: the replies of this batch reached the {max_reply}-byte limit per admin request; "
                f"send the remaining requests in another batch",
            ))))
            continue
        text, too_large = await _run_limited(registry, item, left)
        if text is not None:
            texts.append(text)
            left -= len(text) + 1
        if too_large:
            left = 0  # the budget is spent: running the rest would only build more refused replies
    return texts


def _encode_batch(texts: list[str]) -> bytes | None:
    return ("[" + ",".join(texts) + "]\n").encode("utf-8") if texts else None


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
