"""Idempotent sending against a real anvil behind a proxy that loses the first eth_sendRawTransaction reply."""

from __future__ import annotations

import json

import httpx
import trio

from dainode.chain.rpc import RpcClient, to_int
from tests.integration.chain_env import anvil, deployed  # noqa: F401 (module-scoped fixtures)
from tests.integration.chain_env import cid, make_client


class DroppingProxy:
    """HTTP proxy to anvil; forwards the first eth_sendRawTransaction, then closes the connection unanswered."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.dropped = 0
        self.sends = 0
        self.port = 0

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED):
        async with httpx.AsyncClient(timeout=10) as client:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started()
            await trio.serve_listeners(lambda s: self._handle(s, client), listeners)

    async def _handle(self, stream: trio.SocketStream, client: httpx.AsyncClient):
        async with stream:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
                while len(rest) < length:
                    rest += await stream.receive_some(65536)
                body, buf = rest[:length], rest[length:]
                reply = await client.post(self.upstream, content=body, headers={"content-type": "application/json"})
                if b"eth_sendRawTransaction" in body:
                    self.sends += 1
                    if self.dropped == 0:
                        self.dropped += 1
                        return  # anvil has the tx; the client never hears so
                out = reply.content
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(out) + out
                )


async def test_a_lost_send_reply_lands_the_transaction_once(anvil, deployed):
    proxy = DroppingProxy(anvil.url)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        c = make_client(f"http://127.0.0.1:{proxy.port}", contracts=deployed)
        c.rpc = RpcClient(c.rpc.url, backoff_s=0.05)
        c.nonces.rpc = c.tx.rpc = c.rpc
        try:
            address = c.signer.address
            nonce_before = to_int(anvil.rpc("eth_getTransactionCount", address, "latest"))
            next_before = to_int(anvil.rpc("eth_call", {"to": deployed["Registry"].address, "data": "0x" + deployed["Registry"].encode_call("nextOfferId").hex()}, "latest"))
            reg = deployed["Registry"]
            receipt = await c.tx.send(reg.address, reg.encode_call("registerOffer", 0, cid(4242), 0x55, 1), what="Registry.registerOffer")
            assert to_int(receipt["status"]) == 1
            assert proxy.dropped == 1 and proxy.sends >= 2  # the reply was lost and the bytes went out again
            # exactly one transaction from the account, one offer registered
            assert to_int(anvil.rpc("eth_getTransactionCount", address, "latest")) == nonce_before + 1
            next_after = to_int(anvil.rpc("eth_call", {"to": reg.address, "data": "0x" + reg.encode_call("nextOfferId").hex()}, "latest"))
            assert next_after == next_before + 1
        finally:
            await c.rpc.aclose()
            nursery.cancel_scope.cancel()
