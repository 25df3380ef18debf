"""The ``titan store`` commands: get, put (set), delete (rm, del) and keys (ls, list) on
TitanStore."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from titan.cli.options import aliased


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """The ``titan store`` actions and their options (``titan.cli`` wires the command in)."""
    store = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    s = store.add_parser("get", help="print a value", parents=common)
    s.add_argument("key")
    # Aliases for the words other stores' CLIs use (redis-cli's set/del, ls): `store set`
    # was answered "did you mean 'get'?".
    s = aliased(store, "put", ["set"], "store_command", help="set a value ('-' reads stdin)",
                parents=common)
    s.add_argument("key")
    s.add_argument("value")
    s = aliased(store, "delete", ["rm", "del"], "store_command", help="delete a value or set",
                parents=common)
    s.add_argument("key")
    s = aliased(store, "keys", ["ls", "list"], "store_command", help="list keys",
                parents=common)
    s.add_argument("prefix", nargs="?", default="")


def run(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import cell, for_terminal, print_json
    from titan.errors import NotFound

    action = args.store_command  # its name, whichever alias was typed (options.aliased)
    with client:
        if action == "get":
            value = client.store_get(args.key)
            if value is None:
                raise NotFound(f"no value for store key {args.key!r}")
            print_json({"key": args.key, "value": value}) if args.json \
                else print(for_terminal(value, sys.stdout.isatty()))
        elif action == "put":
            value = sys.stdin.read() if args.value == "-" else args.value
            client.store_put(args.key, value)
            if args.json:
                print_json({"key": args.key, "ok": True})
        elif action == "delete":
            if not client.store_delete(args.key):
                raise NotFound(f"no store key {args.key!r}")
            if args.json:
                print_json({"key": args.key, "deleted": True})
        elif action == "keys":
            keys = client.store_keys(args.prefix, limit=None)
            # One key a line, with any control character a key may hold shown escaped.
            print_json(keys) if args.json else print("\n".join(map(cell, keys))) if keys \
                else None
    return 0
