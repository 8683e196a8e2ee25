"""Nesting limits: the linear JSON depth scan, the value depth walk, and the recursion limit restore."""

from __future__ import annotations

import json
import sys

import pytest

from dainode.errors import NestingTooDeep
from dainode.limits import (
    MAX_JSON_DEPTH,
    RECURSION_LIMIT,
    check_json_depth,
    check_value_depth,
    json_depth,
    restore_recursion_limit,
    value_depth_exceeds,
)


@pytest.mark.parametrize(
    "text, depth",
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[[[", "]]]", {"k": "{{{"}]', 2),  # brackets inside strings do not count
        (r'["\"[[[[", "\\", [[]]]', 3),  # escaped quotes and backslashes do not end strings early
        ("[" * 10 + "]" * 10, 10),
    ],
)
def test_json_depth_matches_the_structure(text, depth):
    assert json_depth(text) == depth == json_depth(text.encode())


def test_json_depth_agrees_with_json_on_real_documents():
    doc = {"jsonrpc": "2.0", "result": {"logs": [{"topics": ["0x" + "ab" * 32] * 4, "data": "]]]}}}"}] * 50}}
    text = json.dumps(doc)
    assert json_depth(text) == 5
    check_json_depth(text)  # ordinary input passes


def test_a_200kb_line_of_brackets_is_refused_without_recursion():
    line = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(NestingTooDeep, match=f"nested deeper than {MAX_JSON_DEPTH} levels \\(200000 levels\\)"):
        check_json_depth(line, what="request")
    with pytest.raises(NestingTooDeep):
        check_json_depth(b'{"a":' * 100_000)  # unterminated: still measured, still refused


def test_many_brackets_side_by_side_are_not_depth():
    check_json_depth(json.dumps([[i] for i in range(10_000)]))


def test_value_depth():
    deep: list = []
    for _ in range(100):
        deep = [deep]
    assert value_depth_exceeds(deep, 64)
    assert not value_depth_exceeds({"a": [{"b": [1]}]}, 4)
    assert value_depth_exceeds({"a": [{"b": [1]}]}, 3)
    with pytest.raises(NestingTooDeep):
        check_value_depth({"k": deep})


def test_restore_recursion_limit_undoes_py_ecc(monkeypatch):
    import py_ecc  # noqa: F401  (already imported or imported now: either way it ran its setrecursionlimit once)

    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(100_000)  # what py_ecc does at import
        assert restore_recursion_limit() == 100_000
        assert sys.getrecursionlimit() == RECURSION_LIMIT
        import eth_account  # noqa: F401  (a later import of the eth stack does not raise it again)

        assert sys.getrecursionlimit() == RECURSION_LIMIT
    finally:
        sys.setrecursionlimit(old)
