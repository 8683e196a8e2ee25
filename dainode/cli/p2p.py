"""P2P commands: `dainode peers`, `connect`, `disconnect`, `gossip pub|tail|stats`."""

from __future__ import annotations

import argparse
import json
import sys
import time

from dainode.cli.common import CommandFailed, add_data_dir_arg, print_json, rpc_call

TAIL_POLL_S = 0.25


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("peers", help="list connected peers (peer id, address, eth address, latency)")
    add_data_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print the p2p_peers result as JSON")
    p.set_defaults(func=cmd_peers)

    p = sub.add_parser("connect", help="connect to a peer: dainode connect /ip4/HOST/tcp/PORT/p2p/PEER_ID")
    add_data_dir_arg(p)
    p.add_argument("multiaddr")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("disconnect", help="close the connections to a peer")
    add_data_dir_arg(p)
    p.add_argument("peer_id")
    p.set_defaults(func=cmd_disconnect)

    g = sub.add_parser("gossip", help="publish, follow and inspect gossip").add_subparsers(dest="gossip_command", metavar="SUBCOMMAND")
    g.required = True
    p = g.add_parser("pub", help="publish a diagnostic message: dainode gossip pub /dai/1/offers '{\"hello\": 1}'")
    add_data_dir_arg(p)
    p.add_argument("topic")
    p.add_argument("body", help="JSON object")
    p.set_defaults(func=cmd_gossip_pub)

    p = g.add_parser("tail", help="follow a topic, one JSON line per accepted message (Ctrl-C ends)")
    add_data_dir_arg(p)
    p.add_argument("topic")
    p.add_argument("--last", type=int, default=10, help="first print up to this many recent messages (default 10)")
    p.add_argument("--count", type=int, default=0, help="exit after printing this many messages (0: follow forever)")
    p.set_defaults(func=cmd_gossip_tail)

    p = g.add_parser("stats", help="accepted/rejected message counts by reason and peer")
    add_data_dir_arg(p)
    p.set_defaults(func=cmd_gossip_stats)


def cmd_peers(args: argparse.Namespace) -> int:
    peers = rpc_call(args, "p2p_peers")
    if args.json:
        print_json(peers)
        return 0
    if not peers:
        print("no connected peers")
        return 0
    for p in peers:
        latency = f"{p['latency_ms']:.1f} ms" if p.get("latency_ms") is not None else "-"
        print(f"{p['peer_id']}  {p.get('eth_address') or '-':42}  {latency:>10}  {p.get('multiaddr') or '-'}")
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    out = rpc_call(args, "p2p_connect", {"multiaddr": args.multiaddr})
    print(f"connected to {out['peer_id']}")
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    out = rpc_call(args, "p2p_disconnect", {"peer_id": args.peer_id})
    print(f"disconnected from {args.peer_id}" if out["disconnected"] else f"not connected to {args.peer_id}")
    return 0


def cmd_gossip_pub(args: argparse.Namespace) -> int:
    try:
        body = json.loads(args.body)
    except json.JSONDecodeError as exc:
        raise CommandFailed(f"BODY is not valid JSON ({exc}); example: '{{\"hello\": 1}}'", code=2) from None
    if not isinstance(body, dict):
        raise CommandFailed("BODY must be a JSON object, e.g. '{\"hello\": 1}'", code=2)
    msg = rpc_call(args, "gossip_publish", {"topic": args.topic, "body": body})
    print(json.dumps(msg, sort_keys=True))
    return 0


def cmd_gossip_tail(args: argparse.Namespace) -> int:
    printed = 0
    # First the last few messages, then everything received after the newest one shown.
    recent = rpc_call(args, "gossip_recent", {"topic": args.topic, "limit": 256})
    since = recent[-1]["received_at"] if recent else 0.0
    backlog = recent[-args.last:] if args.last > 0 else []
    try:
        while True:
            for m in backlog:
                print(json.dumps(m, sort_keys=True), flush=True)
                printed += 1
                if args.count and printed >= args.count:
                    return 0
            time.sleep(TAIL_POLL_S)
            backlog = rpc_call(args, "gossip_recent", {"topic": args.topic, "limit": 256, "since": since})
            if backlog:
                since = backlog[-1]["received_at"]
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `dainode gossip tail T | head` closes the pipe: not an error
        sys.stderr.close()
        return 0


def cmd_gossip_stats(args: argparse.Namespace) -> int:
    print_json(rpc_call(args, "gossip_stats"))
    return 0
