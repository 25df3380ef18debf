"""The ``titan token`` commands (admin): create, list (ls) and revoke API tokens."""

from __future__ import annotations

import argparse
from typing import Any

from titan.cli.options import aliased

#: The roles a token is made for (the master's ``titan.master.auth.tokens.ROLES``), in the
#: order from least to most it may do.
ROLES = ("worker", "operator", "viewer", "admin")


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """The ``titan token`` actions and their options (``titan.cli`` wires the command in)."""
    tokens = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    t = tokens.add_parser("create", help="create a token and print it", parents=common)
    t.add_argument("--role", required=True, choices=ROLES)
    t.add_argument("--name", default=None)
    aliased(tokens, "list", ["ls"], "token_command", help="list tokens", parents=common)
    t = tokens.add_parser("revoke", help="revoke a token", parents=common)
    t.add_argument("id")


def run(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json, table, when

    with client:
        if args.token_command == "create":
            created = client.create_token(args.role, args.name)
            print_json(created) if args.json else print(created["token"])
        elif args.token_command == "list":
            tokens = client.list_tokens()
            if args.json:
                print_json(tokens)
            else:
                table(["ID", "ROLE", "NAME", "CREATED", "BY", "REVOKED"],
                      [[t.get("id"), t.get("role"), t.get("name") or "-",
                        when(t.get("created_at")), t.get("created_by") or "-",
                        when(t["revoked_at"]) if t.get("revoked_at") else "-"]
                       for t in tokens])
        elif args.token_command == "revoke":
            revoked = client.revoke_token(args.id)
            if args.json:
                print_json({"id": args.id, "revoked": revoked})
            else:
                print(f"revoked {args.id}")
    return 0
