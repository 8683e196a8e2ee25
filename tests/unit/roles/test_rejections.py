"""Per-peer rate limit of /dai/negotiate/1.0.0 and the counters of refusals by reason."""

from types import SimpleNamespace

import trio

from dainode.roles import negotiate as neg
from dainode.roles.rejections import NEGOTIATION, RateLimit, rejections
from tests.unit.roles.test_negotiate import FakeReqResp


def test_rate_limit_allows_a_burst_then_refills_per_peer():
    now = [0.0]
    rl = RateLimit(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [rl.allow("a") for _ in range(4)] == [True, True, True, False]
    assert rl.allow("b"), "another peer has its own bucket"
    now[0] += 0.5  # one token back at 2/s
    assert rl.allow("a") and not rl.allow("a")


def test_a_flood_is_refused_and_counted_but_other_peers_and_the_node_itself_are_served():
    ctx = SimpleNamespace(reqresp=FakeReqResp(), keys=SimpleNamespace(peer_id="me"))
    ctx.reqresp.bad_frames = lambda protocol: 2 if protocol == neg.PROTOCOL else 0
    n = neg.Negotiator(ctx, rate_per_s=0.0, burst=5)

    async def ping(msg, peer):
        return neg.reply("ping")

    n.add("ping", ping)

    async def main():
        serve = ctx.reqresp.handlers[neg.PROTOCOL]
        out = [await serve("flooder", {"v": 1, "type": "ping"}) for _ in range(50)]
        assert [o["ok"] for o in out].count(True) == 5
        assert {o.get("reason") for o in out if not o["ok"]} == {"rate_limited"}
        assert (await serve("other", {"v": 1, "type": "ping"}))["ok"]
        assert all([(await serve("me", {"v": 1, "type": "ping"}))["ok"] for _ in range(20)])
        assert (await serve("other", {"v": 1, "type": "nope"}))["reason"] == "malformed"

    trio.run(main)
    assert rejections(ctx).counts[NEGOTIATION] == {"rate_limited": 45, "malformed": 1}
    assert n.stats() == {"malformed": 1, "malformed_frame": 2, "rate_limited": 45}
