"""Interop: a js-libp2p (@libp2p/gossipsub 17) peer and a real dainode exchange signed envelopes both ways."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

from eth_account import Account

from dainode.p2p.envelope import open_envelope

TOPIC = "/dai/1/tasks"
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "gossip_peer.mjs"


class JsPeer:
    def __init__(self, connect: str, eth_key: str):
        node = shutil.which("node")
        assert node, "Node.js (node) must be on PATH for the interop test (see Makefile: make install)"
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), "--connect", connect, "--topic", TOPIC, "--eth-key", eth_key],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next_event(self, kind: str, timeout: float, where=lambda e: True) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"js peer: no {kind!r} event within {timeout} s") from None
            if event is None:
                raise AssertionError(f"js peer exited ({self.proc.poll()}): {self.proc.stderr.read()[-2000:]}")
            if event["event"] == "error":
                raise AssertionError(f"js peer error: {event['error']}")
            if event["event"] == kind and where(event):
                return event

    def send(self, **cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(cmd="quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


def test_js_gossipsub_and_dainode_exchange_signed_envelopes(daemon_factory):
    node = daemon_factory("py").start()
    js_account = Account.create()
    js = JsPeer(node.multiaddr, js_account.key.hex())
    try:
        ready = js.next_event("ready", 60)
        assert ready["address"] == js_account.address  # the js side derives the same Ethereum address
        assert node.info["peer_id"] in ready["mesh"]

        # js -> dainode: envelope built and EIP-191-signed in JavaScript, accepted by the validator
        js.send(cmd="publish", type="js_hello", body={"text": "from js", "n": 300, "ok": True, "list": [1, "a"]})
        js.next_event("published", 10)
        deadline = time.monotonic() + 10
        got = []
        while time.monotonic() < deadline and not got:
            got = [m for m in node.rpc("gossip_recent", topic=TOPIC) if m["type"] == "js_hello"]
            time.sleep(0.05)
        assert got, node.rpc("gossip_stats")
        msg = got[0]
        assert msg["sender"] == js_account.address and msg["peer_id"] == ready["peerId"]
        assert msg["body"] == {"text": "from js", "n": 300, "ok": True, "list": [1, "a"]}
        stats = node.rpc("gossip_stats")
        assert stats["rejected"] == 0
        assert node.rpc("p2p_info")["known_eth_addresses"][ready["peerId"]] == js_account.address

        # dainode -> js: the js peer receives the daemon's envelope; its signature verifies
        node.rpc("gossip_publish", topic=TOPIC, body={"text": "from python"})
        event = js.next_event("message", 10, where=lambda e: e["from"] == node.info["peer_id"])
        env = open_envelope(TOPIC, bytes.fromhex(event["data"]))
        assert env["sender"] == node.info["address"] and env["body"] == {"text": "from python"}
    finally:
        js.stop()
