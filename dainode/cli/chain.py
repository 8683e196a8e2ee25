"""`dainode account` and `dainode chain info`: the node's Ethereum account and chain connection."""

from __future__ import annotations

import argparse

from dainode.cli.common import CommandFailed, add_data_dir_arg, print_json, print_table, rpc_call


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("account", help="the node's Ethereum address and balance")
    add_data_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print the chain_balance result as JSON")
    p.set_defaults(func=cmd_account)

    p = sub.add_parser("chain", help="chain connection commands")
    chain_sub = p.add_subparsers(dest="chain_command", metavar="SUBCOMMAND", required=True)
    info = chain_sub.add_parser("info", help="chain id, head block, endpoint and contract addresses")
    add_data_dir_arg(info)
    info.add_argument("--json", action="store_true", help="print the chain_info result as JSON")
    info.set_defaults(func=cmd_chain_info)
    fund = chain_sub.add_parser("fund", help="give ADDRESS ether on this node's dev chain (anvil_setBalance)")
    add_data_dir_arg(fund)
    fund.add_argument("address", metavar="ADDRESS")
    fund.add_argument("--eth", default="100", metavar="N", help="balance to set, in ether (default 100)")
    fund.add_argument("--json", action="store_true")
    fund.set_defaults(func=cmd_chain_fund)


def _chain_call(args: argparse.Namespace, method: str):
    try:
        return rpc_call(args, method)
    except CommandFailed as exc:
        if "code -32601" in str(exc):
            raise CommandFailed(
                "the running node has no chain service (it was started with --chain none); restart it with --chain dev or an RPC URL"
            ) from None
        raise


def cmd_account(args: argparse.Namespace) -> int:
    bal = _chain_call(args, "chain_balance")
    if args.json:
        print_json(bal)
        return 0
    print_table([("address", bal["address"]), ("balance", f"{bal['eth']} ETH ({bal['wei']} wei)")])
    return 0


def cmd_chain_info(args: argparse.Namespace) -> int:
    info = _chain_call(args, "chain_info")
    if args.json:
        print_json(info)
        return 0
    rows = [
        ("chain id", info["chain_id"]),
        ("head", info["head"]),
        ("endpoint", info["endpoint"] + (" (dev anvil)" if info.get("dev") else "")),
        ("account", info["account"]),
    ]
    rows += [(name, addr) for name, addr in sorted(info["contracts"].items())]
    print_table(rows)
    return 0


def cmd_chain_fund(args: argparse.Namespace) -> int:
    try:
        out = rpc_call(args, "chain_fund", {"address": args.address, "eth": args.eth})
    except CommandFailed as exc:
        if "code -32601" in str(exc):
            raise CommandFailed("the running node has no chain service (--chain none); start it with --chain dev") from None
        raise
    if args.json:
        print_json(out)
    else:
        print(f"{out['address']} now has {out['eth']} ETH")
    return 0
