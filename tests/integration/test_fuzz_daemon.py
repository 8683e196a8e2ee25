"""Fuzz a real daemon (hypothesis, bounded): JSON at the admin socket, msgpack at gossip and request/response,
malformed bitswap messages and blocks. No crash; every request is answered or its connection closed."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time

import msgpack
import pytest
import trio
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p.custom_types import TProtocol
from libp2p.utils.varint import encode_varint_prefixed

from dainode.p2p.envelope import signing_payload
from dainode.p2p.idexchange import PROTOCOL as ID_PROTOCOL
from dainode.store.bitswap import wire
from dainode.store.cid import DAG_PB, RAW, cid_of
from tests.integration.daemon import DaemonProcess
from tests.integration.test_p2p_forged import TOPIC, raw_peer
from tests.unit.store.deep_dag import deep_chain

MAX_ADMIN_REQUEST = 1024 * 1024  # dainode.admin.server.MAX_REQUEST_BYTES
PROBE_ID = "fuzz-probe-7f3a"
PROBE = json.dumps({"jsonrpc": "2.0", "id": PROBE_ID, "method": "node_info"}).encode()
# Admin methods the fuzzer may call: everything except those that stop the node, write or read
# arbitrary paths, dial out, or drop the fuzzing peer.
SAFE_METHODS = [
    "node_info", "rpc_modules", "rpc_methods", "p2p_peers", "p2p_info", "gossip_publish", "gossip_recent",
    "gossip_stats", "store_progress", "store_cat", "store_pin_rm", "store_pin_ls", "store_stat", "bitswap_stat",
]
PARAM_NAMES = ["topic", "body", "limit", "since", "cid", "offset", "length", "encoding", "job", "type", "ping_timeout_s"]
def fuzz(examples: int) -> settings:
    """Bounded runs: a fixed number of examples, no per-example deadline (daemons are slow on 2 cores), no example database."""
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)


def strict_json(raw: bytes):
    """Parse a reply line; NaN/Infinity (not JSON) fail the test."""
    return json.loads(raw, parse_constant=lambda c: pytest.fail(f"reply holds non-JSON {c}: {raw[:200]!r}"))


# --- the daemon and a raw libp2p peer living in a thread --------------------------------------


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    node = DaemonProcess(tmp_path_factory.mktemp("fuzz"), "target", env={"DAINODE_STORE_FETCH_TIMEOUT_S": "3"})
    try:
        node.start()
        yield node
    finally:
        node.stop()


class Peer:
    """A raw py-libp2p host + gossipsub (no dainode checks) connected to the daemon, run by trio in a thread.

    It serves bitswap from `blocks` (binary CID -> bytes), whatever they contain.
    """

    def __init__(self, daemon_addr: str):
        self.daemon_addr = daemon_addr
        self.blocks: dict[bytes, bytes] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"raw peer did not start: {self._error!r}")

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._stop = trio.Event()
        async with raw_peer(self.daemon_addr) as pubsub:
            self.host = pubsub.host
            self.daemon_id = next(iter(self.host.get_network().connections))
            self.host.set_stream_handler(TProtocol(wire.PROTOCOL_120), self._serve_bitswap)
            self.token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    async def _serve_bitswap(self, stream) -> None:
        peer = stream.muxed_conn.peer_id
        reader = wire.MessageReader(stream)
        out = None
        with contextlib.suppress(Exception):
            while (payload := await reader.read()) is not None:
                msg = wire.decode(payload)
                if out is None:
                    out = await self.host.new_stream(peer, [TProtocol(wire.PROTOCOL_120)])
                for e in msg.entries:
                    if e.cancel:
                        continue
                    data = self.blocks.get(e.cid)
                    if e.want_have or data is None:
                        await out.write(wire.frame(wire.encode(presences=[(e.cid, data is not None)])))
                    else:
                        await out.write(wire.frame(wire.encode(blocks=[(wire.parse_cid_bytes(e.cid), data)])))

    def run(self, fn, *args):
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
        self._thread.join(30)


@pytest.fixture(scope="module")
def peer(target):
    p = Peer(target.multiaddr)
    yield p
    p.close()


def assert_alive(node) -> None:
    assert node.proc.poll() is None, f"the daemon exited with {node.proc.returncode}:\n{node.log_tail()}"
    assert node.rpc("node_info")["pid"] == node.pid


# --- admin socket: nested, oversized and ill-typed JSON -----------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.integers(-(10**40), 10**40) | st.floats() | st.text(max_size=16)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=20)
request_objects = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2, None]), "method": st.sampled_from(SAFE_METHODS) | st.text(max_size=12)},
    optional={
        "id": st.integers() | st.text(max_size=8) | st.none() | st.floats() | st.lists(st.integers(), max_size=2),
        "params": json_values | st.dictionaries(st.sampled_from(PARAM_NAMES), json_values, max_size=4) | st.lists(json_values, max_size=4),
    },
)


def _nest(args) -> bytes:
    depth, kind, closed, inner = args
    if kind == "[":
        return b"[" * depth + inner + (b"]" * depth if closed else b"")
    return b'{"a":' * depth + inner + (b"}" * depth if closed else b"")


nested = st.tuples(st.integers(1, 120_000), st.sampled_from("[{"), st.booleans(), st.sampled_from([b"1", b'"x"', b"NaN", b"[]"])).map(_nest)
admin_lines = st.one_of(
    request_objects.map(lambda r: json.dumps(r).encode()),  # json.dumps writes NaN/Infinity tokens: the daemon must cope
    st.lists(request_objects, max_size=4).map(lambda b: json.dumps(b).encode()),
    nested,
    nested.map(lambda n: b'{"jsonrpc":"2.0","id":1,"method":"gossip_publish","params":{"topic":"' + TOPIC.encode() + b'","body":{"x":' + n + b"}}}"),
    st.binary(max_size=300),
    st.integers(MAX_ADMIN_REQUEST - 10, MAX_ADMIN_REQUEST + 4096).map(lambda n: b'"' + b"a" * n + b'"'),
)


def admin_exchange(path, line: bytes) -> tuple[list, bool]:
    """Send `line` then a probe on one connection; return the replies up to the probe's, and whether the probe was answered."""
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(line + b"\n" + PROBE + b"\n")
        f = s.makefile("rb")
        while True:
            try:
                raw = f.readline()
            except ConnectionResetError:
                return replies, False
            if not raw:
                return replies, False  # the daemon closed the connection
            reply = strict_json(raw)
            replies.append(reply)
            if isinstance(reply, dict) and reply.get("id") == PROBE_ID:
                return replies, True


def test_fuzz_admin_socket(target, peer):
    seen = {"answered": 0, "closed": 0}

    @fuzz(300)
    @given(admin_lines)
    def run(line):
        replies, probed = admin_exchange(target.socket, line)
        for r in replies:
            for one in r if isinstance(r, list) else [r]:
                assert one.get("jsonrpc") == "2.0" and ("result" in one) != ("error" in one), one
        if probed:
            seen["answered"] += 1
        else:
            # only an oversized line may end the connection, and it is told why first
            assert len(line) > MAX_ADMIN_REQUEST - 2 or b"\n" in line, (line[:100], replies)
            assert replies and "too large" in replies[-1]["error"]["message"], replies
            seen["closed"] += 1

    run()
    print(f"admin fuzz: {seen}")
    assert seen["answered"] > 0
    assert_alive(target)


# --- gossip: generated envelopes from a raw pubsub peer ------------------------------------------

msgpack_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=12) | st.binary(max_size=16)
msgpack_values = st.recursive(msgpack_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=20)
raw_bodies = st.one_of(
    msgpack_values.map(lambda v: msgpack.packb({"v": v}, use_bin_type=True)),
    st.integers(1, 3000).map(lambda d: b"\x81\xa1x" + b"\x91" * d + b"\xc0"),  # nested arrays, past the limit and past msgpack's own
    st.sampled_from([b"\x81\xa1x\xcb" + msgpack.packb(math.nan)[1:], b"\x81\xa1x\xc7\x01\x05\x00", b"\xc1", b"\x81"]),
    st.integers(256 * 1024, 300 * 1024).map(lambda n: b"\x81\xa1x\xc6" + n.to_bytes(4, "big") + bytes(n)),  # over gossip.max_message_size
)


def envelope(account, body_raw: bytes, *, sign: bool, mangle: dict) -> bytes:
    """An envelope with a hand-made body; signed over the decoded body when it decodes."""
    ts = int(time.time() * 1000)
    fields = {"v": 1, "type": "diag", "sender": account.address, "ts": ts, "sig": b"\x00" * 65}
    if sign:
        with contextlib.suppress(Exception):
            body = msgpack.unpackb(body_raw, raw=False, strict_map_key=False)
            payload = signing_payload(TOPIC, 1, "diag", body, account.address, ts)
            fields["sig"] = bytes(account.sign_message(encode_defunct(primitive=payload)).signature)
    fields.update(mangle)
    head = msgpack.packb(fields, use_bin_type=True)
    return bytes([0x80 | (len(fields) + 1)]) + head[1:] + msgpack.packb("body") + body_raw  # fixmap: one more entry


gossip_messages = st.tuples(
    raw_bodies,
    st.booleans(),
    st.dictionaries(st.sampled_from(["v", "type", "ts", "sender", "extra"]), msgpack_scalars, max_size=1),
) | st.binary(max_size=200).map(lambda b: (b, None, None))


async def _publish_from_fresh_peer(addr: str, messages: list[bytes]) -> None:
    async with raw_peer(addr) as pubsub:
        for data in messages:
            await pubsub.publish(TOPIC, data)
        await trio.sleep(0.2)  # let the frames leave before the host closes


def test_fuzz_gossip(target, peer):
    account = Account.create()
    counted = {"sent": 0}

    def totals():
        s = target.rpc("gossip_stats")
        return s["accepted"] + s["rejected"]

    @fuzz(12)  # each example dials from a fresh peer (seconds each); 12 x up to 4 messages
    @given(st.lists(gossip_messages, min_size=1, max_size=4))  # 4 rejections stay above the peer-score cut-off (-50)
    def run(items):
        msgs = [body if sign is None else envelope(account, body, sign=sign, mangle=mangle) for body, sign, mangle in items]
        before = totals()
        trio.run(_publish_from_fresh_peer, target.multiaddr, msgs)
        deadline = time.monotonic() + 15
        while totals() < before + len(msgs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert totals() == before + len(msgs), f"{len(msgs)} sent, {totals() - before} validated:\n{target.log_tail()}"
        counted["sent"] += len(msgs)
        # whatever was accepted is served back as strict JSON
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(target.socket))
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "gossip_recent", "params": {"topic": TOPIC, "limit": 256}}).encode() + b"\n")
            assert "result" in strict_json(s.makefile("rb").readline())

    run()
    print(f"gossip fuzz: {counted['sent']} messages validated")
    assert_alive(target)


# --- request/response: generated frames on /dai/id/1.0.0 -----------------------------------------

def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


frames = st.one_of(
    msgpack_values.map(lambda v: encode_varint_prefixed(msgpack.packb(v, use_bin_type=True))),
    st.integers(1, 3000).map(lambda d: encode_varint_prefixed(b"\x81\xa1x" + b"\x91" * d + b"\xc0")),
    st.binary(max_size=300),  # anything, including a length prefix that lies
    st.integers(1 << 20, 1 << 40).map(lambda n: _uvarint(n) + b"\x80"),  # a huge declared length
)


async def _reqresp_exchange(p: Peer, frame: bytes) -> str:
    """Write `frame`, half-close, read the answer: 'answered', or 'closed' if the daemon reset/closed without one."""
    stream = await p.host.new_stream(p.daemon_id, [TProtocol(ID_PROTOCOL)])
    try:
        with trio.fail_after(20):
            await stream.write(frame)
            await stream.close()  # our side is done: a short frame must not keep the daemon waiting
            data = b""
            try:
                while chunk := await stream.read(65536):
                    data += chunk
            except Exception:
                pass
        if not data:
            return "closed"
        answer = _read_frame(data)
        assert isinstance(answer, dict) and ("ok" in answer or "error" in answer), answer
        return "answered"
    finally:
        with contextlib.suppress(Exception):
            await stream.reset()


def _read_frame(data: bytes):
    length, shift, pos = 0, 0, 0
    while True:
        b = data[pos]
        pos += 1
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    assert len(data) - pos == length, "the daemon's answer frame is truncated"
    return msgpack.unpackb(data[pos:], raw=False)


def test_fuzz_request_response(target, peer):
    outcomes = {"answered": 0, "closed": 0}

    @fuzz(150)
    @given(frames)
    def run(frame):
        outcomes[peer.run(_reqresp_exchange, peer, frame)] += 1

    run()
    print(f"request/response fuzz: {outcomes}")
    assert outcomes["answered"] > 0
    assert_alive(target)


# --- bitswap: malformed messages in, malformed blocks served ---------------------------------------

# random prefixes, and the real ones of CIDv1 raw and dag-pb with sha2-256 (the data then hashes to some CID nobody wanted)
prefixes = st.binary(max_size=8) | st.sampled_from([b"\x01\x55\x12\x20", b"\x01\x70\x12\x20", b"\x00\x70\x12\x20"])
bitswap_payloads = st.one_of(
    st.binary(max_size=400),
    st.tuples(prefixes, st.binary(max_size=300)).map(lambda pb: _block_message(*pb)),
    st.lists(st.binary(max_size=40), max_size=4).map(lambda cids: wire.encode(entries=[wire.WantEntry(c, want_have=True) for c in cids])),
)


def _block_message(prefix: bytes, data: bytes) -> bytes:
    from libp2p.bitswap.pb.bitswap_pb2 import Message

    msg = Message()
    msg.payload.add(prefix=prefix, data=data)
    return msg.SerializeToString()


async def _bitswap_inbound(p: Peer, payloads: list[bytes], raw_tail: bytes) -> None:
    stream = await p.host.new_stream(p.daemon_id, [TProtocol(wire.PROTOCOL_120)])
    try:
        with trio.fail_after(20):
            for payload in payloads:
                await stream.write(wire.frame(payload))
            await stream.write(raw_tail)  # possibly a broken frame
            await stream.close()
    except Exception:
        pass  # the daemon may reset a stream that sends garbage: that is a fine answer
    finally:
        with contextlib.suppress(Exception):
            await stream.reset()


def test_fuzz_bitswap_inbound_messages(target, peer):
    def handled() -> int:
        stat = target.rpc("bitswap_stat")
        return stat["messages_received"] + sum(stat["protocol_errors_by_peer"].values())

    before = handled()

    @fuzz(80)
    @given(st.lists(bitswap_payloads, min_size=1, max_size=4), st.binary(max_size=20))
    def run(payloads, tail):
        peer.run(_bitswap_inbound, peer, payloads, tail)
        assert "blocks_received" in target.rpc("bitswap_stat")

    run()
    print(f"bitswap inbound fuzz: {handled() - before} messages decoded or refused as protocol errors")
    assert handled() > before  # the daemon did read what was thrown at it
    assert_alive(target)


served_dags = st.one_of(
    st.binary(max_size=500).map(lambda b: ("dag-pb", b)),  # hashes right, decodes as whatever it is
    st.integers(0, 300).map(lambda d: ("chain", d)),  # a deep chain of tiny dag-pb nodes
    st.binary(min_size=1, max_size=200).map(lambda b: ("raw", b)),
)


def test_fuzz_blocks_served_to_the_daemon(target, peer):
    outcomes = {"result": 0, "error": 0}

    @fuzz(40)
    @given(served_dags)
    def run(item):
        kind, arg = item
        if kind == "chain":
            root, blocks = deep_chain(arg, leaf=os.urandom(8))
        else:
            root = cid_of(arg, DAG_PB if kind == "dag-pb" else RAW, 1)
            blocks = {root: arg}
        for cid, block in blocks.items():
            peer.blocks[cid.to_bytes()] = block
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(120)
            s.connect(str(target.socket))
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "store_cat", "params": {"cid": str(root)}}).encode() + b"\n")
            reply = strict_json(s.makefile("rb").readline())
        assert ("result" in reply) != ("error" in reply), reply
        outcomes["result" if "result" in reply else "error"] += 1
        if kind == "raw":
            assert reply.get("result"), reply  # a valid raw block is simply its bytes

    run()
    print(f"served-block fuzz: {outcomes}")
    assert outcomes["error"] > 0
    assert_alive(target)
