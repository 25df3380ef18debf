"""Regenerate docs/cli.md from the CLI's own --help (run: make docs).

tests/unit/test_docs.py fails when docs/cli.md no longer matches, so the reference cannot
drift from the behaviour."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from titan.cli import build_parser

COMMANDS = ["up", "master", "worker", "submit", "status", "logs", "store", "cancel", "retry",
            "workers", "token"]
SUBCOMMANDS = {"store": ["get", "put", "delete", "keys"], "token": ["create", "list", "revoke"]}


def help_text(argv: list[str]) -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix it for stable docs
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return out.getvalue().rstrip()


def render() -> str:
    parts = ["# `titan` command reference\n",
             "Generated from `titan COMMAND --help` by `make docs`; do not edit by hand.\n",
             "```text", help_text([]), "```\n"]
    for cmd in COMMANDS:
        parts += [f"## `titan {cmd}`\n", "```text", help_text([cmd]), "```\n"]
        for sub in SUBCOMMANDS.get(cmd, []):
            parts += [f"### `titan {cmd} {sub}`\n", "```text", help_text([cmd, sub]), "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    if "--check" in sys.argv:
        sys.exit(0 if target.read_text() == render() else 1)
    target.write_text(render())
    print(f"wrote {target}")
