"""`/dai/id/1.0.0`: peers prove which Ethereum address they sign with, bound to their libp2p peer id."""

from __future__ import annotations

import logging
import time

import trio
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from libp2p.peer.id import ID

from dainode.errors import P2PError
from dainode.p2p.reqresp import ReqResp

log = logging.getLogger("dainode.p2p")

PROTOCOL = "/dai/id/1.0.0"
DOMAIN = b"dai-id/1:"
CHECK_INTERVAL_S = 1.0
RETRY_AFTER_S = 300.0  # a peer that does not speak the protocol (e.g. a plain libp2p node) is asked again later


def binding(peer_id: ID) -> bytes:
    return DOMAIN + peer_id.to_bytes()


class IdExchange:
    """Answers who-are-you requests and asks every newly connected peer once.

    The answer is `{address, sig}` with `sig` = EIP-191 signature over `dai-id/1:` + the
    *answering* peer's id bytes; the channel is Noise-authenticated to that peer id, so the
    pair (peer id, address) is proven without trusting anyone else. Results land in `proven`.
    (Addresses learned from gossip are weaker: a peer can re-publish someone else's fresh
    envelope as its own before we see the original, so the proof wins.)
    """

    def __init__(self, reqresp: ReqResp, account):
        self.reqresp = reqresp
        self.account = account
        self.proven: dict[str, str] = {}
        self._tried: dict[str, float] = {}
        reqresp.set_handler(PROTOCOL, self._answer)

    async def _answer(self, peer_id: str, request: dict) -> dict:
        me = self.reqresp.host.get_id()
        sig = self.account.sign_message(encode_defunct(primitive=binding(me))).signature
        return {"address": self.account.address, "sig": bytes(sig)}

    async def ask(self, peer_id: ID, timeout: float = 5.0) -> str:
        """The verified Ethereum address of `peer_id`; P2PError if it cannot prove one."""
        reply = await self.reqresp.request(peer_id, PROTOCOL, {}, timeout=timeout)
        address, sig = reply.get("address"), reply.get("sig")
        if not isinstance(address, str) or not isinstance(sig, bytes):
            raise P2PError(f"{peer_id} sent a malformed {PROTOCOL} answer")
        try:
            signer = Account.recover_message(encode_defunct(primitive=binding(peer_id)), signature=sig)
            claimed = to_checksum_address(address)
        except Exception as exc:
            raise P2PError(f"{peer_id} sent an unverifiable {PROTOCOL} answer: {exc}") from None
        if signer != claimed:
            raise P2PError(f"{peer_id} claims {claimed} but signed as {signer}")
        self.proven[peer_id.to_base58()] = claimed
        return claimed

    async def run(self, connected) -> None:
        """Ask each connected peer whose address we do not know yet (`connected()` -> list[ID])."""
        async with trio.open_nursery() as nursery:
            while True:
                now = time.monotonic()
                for peer_id in connected():
                    text = peer_id.to_base58()
                    if text in self.proven or self._tried.get(text, 0) > now:
                        continue
                    self._tried[text] = now + RETRY_AFTER_S
                    nursery.start_soon(self._ask_quietly, peer_id)
                await trio.sleep(CHECK_INTERVAL_S)

    async def _ask_quietly(self, peer_id: ID) -> None:
        try:
            address = await self.ask(peer_id)
            log.debug("peer %s is account %s", peer_id, address)
        except P2PError as exc:
            log.debug("no verified address for %s: %s", peer_id, exc)
