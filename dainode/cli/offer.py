"""`dainode offer data|compute|list|show|withdraw`: clients of the offer_* admin RPC methods."""

from __future__ import annotations

import argparse
import os

from dainode.cli.common import CommandFailed, add_data_dir_arg, data_dir_of, print_json, print_table

BUILTIN_DATASETS = ("digits", "breast_cancer", "iris", "wine")  # as dainode.ml.datasets.BUILTIN (not imported: numpy)
BAD_INPUT_TYPES = ("DatasetError", "ConfigError")
ROLE_OF = {"offer_create_data": "data", "offer_create_compute": "compute"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("offer", help="sell data or compute, and see the offers on the network")
    osub = p.add_subparsers(dest="offer_command", metavar="SUBCOMMAND", required=True)

    d = osub.add_parser("data", help="pre-process a dataset locally and offer it (needs --roles data)")
    add_data_dir_arg(d)
    d.add_argument("--dataset", required=True, metavar="SPEC", help=f"{', '.join(BUILTIN_DATASETS)}, or a .csv, .npz or .parquet file")
    d.add_argument("--label", metavar="COLUMN", help="the label column of a CSV file")
    d.add_argument("--price", required=True, metavar="WEI", help="price in wei (whole number)")
    d.add_argument("--shards", type=int, default=1, metavar="N", help="number of shards (default 1)")
    d.add_argument("--json", action="store_true", help="print {offer_id, cid, tx} as JSON")
    d.set_defaults(func=cmd_offer_data)

    c = osub.add_parser("compute", help="offer this machine's compute (needs --roles compute)")
    add_data_dir_arg(c)
    c.add_argument("--price", required=True, metavar="WEI", help="price in wei (whole number)")
    c.add_argument("--capacity", type=int, default=1, metavar="N", help="concurrent jobs (default 1)")
    c.add_argument("--json", action="store_true", help="print {offer_id, cid, tx} as JSON")
    c.set_defaults(func=cmd_offer_compute)

    ls = osub.add_parser("list", help="offers this node has seen and checked")
    add_data_dir_arg(ls)
    ls.add_argument("--kind", choices=("data", "compute"))
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    ls.set_defaults(func=cmd_offer_list)

    sh = osub.add_parser("show", help="one offer with its document")
    add_data_dir_arg(sh)
    sh.add_argument("offer_id", type=int, metavar="ID")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_offer_show)

    w = osub.add_parser("withdraw", help="take one of this node's offers off the market")
    add_data_dir_arg(w)
    w.add_argument("offer_id", type=int, metavar="ID")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_offer_withdraw)


def _call(args: argparse.Namespace, method: str, params: dict, timeout: float = 60.0):
    from dainode.admin import client as admin_client
    from dainode.errors import NodeNotRunningError, RpcError

    try:
        return admin_client.call(data_dir_of(args), method, params, timeout=timeout)
    except NodeNotRunningError as exc:
        raise CommandFailed(str(exc)) from None
    except RpcError as exc:
        if exc.code == RpcError.METHOD_NOT_FOUND and method in ROLE_OF:
            raise CommandFailed(f"the running node does not play the {ROLE_OF[method]} role; restart it with --roles {ROLE_OF[method]}") from None
        kind = exc.data.get("type") if isinstance(exc.data, dict) else None
        code = 2 if kind in BAD_INPUT_TYPES or exc.code == RpcError.INVALID_PARAMS else 1
        raise CommandFailed(exc.message if code == 2 else f"{method} failed: {exc.message}", code) from None
    except TimeoutError:
        raise CommandFailed(f"{method}: the daemon did not answer within {timeout:g} s") from None


def _print_created(args, out: dict) -> int:
    if args.json:
        print_json({"offer_id": out["offer_id"], "cid": out["cid"], "tx": out["tx"]})
    else:
        print_table([("offer id", out["offer_id"]), ("kind", out["kind"]), ("cid", out["cid"]), ("tx", out["tx"])])
    return 0


def cmd_offer_data(args: argparse.Namespace) -> int:
    spec = args.dataset
    if spec not in BUILTIN_DATASETS:
        spec = os.path.abspath(os.path.expanduser(spec))  # the daemon reads it; it has another working directory
    params = {"dataset": spec, "price_wei": args.price, "label": args.label, "shards": args.shards}
    return _print_created(args, _call(args, "offer_create_data", params, timeout=600.0))


def cmd_offer_compute(args: argparse.Namespace) -> int:
    return _print_created(args, _call(args, "offer_create_compute", {"price_wei": args.price, "capacity": args.capacity}, timeout=600.0))


def cmd_offer_list(args: argparse.Namespace) -> int:
    offers = _call(args, "offer_list", {"kind": args.kind})
    if args.json:
        print_json(offers)
        return 0
    if not offers:
        print("no offers seen yet")
        return 0
    for o in offers:
        if o["kind"] == "data":
            what = f"rows {o.get('rows')} features {o.get('features')} shards {o.get('shards')} quality {o.get('quality')}"
        else:
            what = f"capacity {o.get('capacity')} backend {o.get('backend')}"
        state = "active" if o["active"] else "withdrawn"
        print(f"{o['offer_id']:>4}  {o['kind']:<7}  {state:<9}  {o['price_wei']:>22} wei  {o['owner']}  {what if o['verified'] else '(document not fetched yet)'}")
    return 0


def cmd_offer_show(args: argparse.Namespace) -> int:
    o = _call(args, "offer_get", {"offer_id": args.offer_id})
    if args.json:
        print_json(o)
        return 0
    rows = [(k, o[k]) for k in ("offer_id", "kind", "active", "owner", "peer_id", "price_wei", "cid", "block") if k in o]
    rows += [(k, o[k]) for k in ("rows", "features", "shards", "quality", "capacity", "backend") if k in o]
    print_table(rows)
    return 0


def cmd_offer_withdraw(args: argparse.Namespace) -> int:
    out = _call(args, "offer_withdraw", {"offer_id": args.offer_id})
    if args.json:
        print_json(out)
    else:
        print(f"offer {out['offer_id']} withdrawn" + (f" (tx {out['tx']})" if out.get("tx") else " (it already was)"))
    return 0
