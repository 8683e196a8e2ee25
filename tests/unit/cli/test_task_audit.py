"""`dainode task watch` output: a progress bar on a terminal, a plain line per round otherwise; `task verify` exit codes."""

from __future__ import annotations

import io
import types

import pytest

from dainode.cli import main, task_audit


def _answers():
    base = {"task_id": 5, "rounds": 2, "phase": "training", "open_round_updates": 1, "credited_wei": "0", "challenges": [],
            "done": False, "marker": {}}
    h0 = {"round": 0, "accuracy": 0.5, "loss": 1.5, "included": 2, "excluded": 0}
    h1 = {"round": 1, "accuracy": 0.75, "loss": 1.0, "included": 2, "excluded": 0}
    return [dict(base, history=[]), dict(base, history=[h0], marker={"block": 1}),
            dict(base, history=[h0, h1], phase="final", done=True, credited_wei="7", marker={"block": 2})]


class _Out(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
def test_watch_prints_each_round_once_and_ends(monkeypatch, tty):
    answers = iter(_answers())
    calls = []
    monkeypatch.setattr(task_audit, "_call", lambda args, method, params, timeout: calls.append(params) or next(answers))
    out = _Out(tty)
    monkeypatch.setattr("sys.stdout", out)
    assert main(["task", "watch", "5", "--data-dir", "/nonexistent"]) == 0
    text = out.getvalue()
    lines = [ln.split("\r\x1b[K")[-1] for ln in text.split("\n") if ln.split("\r\x1b[K")[-1]]
    assert [ln for ln in lines if ln.startswith("round ")] == [
        "round 1/2 accuracy 0.5000 loss 1.5000 updates 2 rejected 0", "round 2/2 accuracy 0.7500 loss 1.0000 updates 2 rejected 0"]
    assert lines[-1] == "task 5 final: 2/2 rounds, credited 7 wei"
    assert ("[" + "#" * 15 + "-" * 15 + "] 1/2 rounds" in text) == tty and ("\r" in text) == tty
    assert calls[1]["known"] == {} and calls[2]["known"] == {"block": 1}  # each call passes the previous marker


@pytest.mark.parametrize("ok, code", [(True, 0), (False, 1)])
def test_verify_exit_code(monkeypatch, capsys, ok, code):
    verdict = {"task_id": 3, "ok": ok, "verdict": "PASS" if ok else "FAIL", "phase": "final", "rounds": 1, "matches": 2,
               "history": [], "differences": [] if ok else [{"where": "split sum", "posted": "1", "recomputed": "2", "detail": ""}]}
    monkeypatch.setattr(task_audit, "_call", lambda *a, **k: verdict)
    assert main(["task", "verify", "3", "--data-dir", "/nonexistent"]) == code
    out = capsys.readouterr().out
    assert out.startswith(f"task 3: {verdict['verdict']}")
    assert ("DIFF split sum: posted '1', recomputed '2'" in out) == (not ok)
