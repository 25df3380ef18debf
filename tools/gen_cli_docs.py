"""Regenerate docs/cli.md from the CLI's own --help (run: make docs).

tests/unit/test_docs.py fails when docs/cli.md no longer matches, so the reference cannot
drift from the behaviour."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

from titan.cli import build_parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's sub-commands in the order they were added (every one, so none goes
    undocumented), each once: an alias (``files download`` of ``files get``) is in its
    command's help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: dict[str, argparse.ArgumentParser] = {}
            for name, sub in action.choices.items():
                if all(sub is not other for other in found.values()):
                    found[name] = sub
            return found
    return {}


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
    for cmd, parser in subcommands(build_parser()).items():
        parts += _section([cmd], parser)
    return "\n".join(parts)


def _section(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """A command's help, then each of its sub-commands' at any depth (``titan admin blobs
    gc``), a heading level deeper."""
    parts = [f"{'#' * (len(argv) + 1)} `titan {' '.join(argv)}`\n", "```text",
             help_text(argv), "```\n"]
    for sub, child in subcommands(parser).items():
        parts += _section([*argv, sub], child)
    return parts


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    if "--check" in sys.argv:
        sys.exit(0 if target.read_text() == render() else 1)
    target.write_text(render())
    print(f"wrote {target}")
