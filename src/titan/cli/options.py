"""Option values checked as the command line is read, so that the error names the option.

``titan status --limit 0`` said "invalid request: the query parameter 'limit' must be ...",
the master's words for its own parameter, and ``titan stop --grace -1`` "grace must be ..."
(a CLI QA pass). Each is an argparse ``type``: a bad value is a usage error (exit 2) that
reads ``argument --limit: must be a whole number from 1 to 1000, got '0'``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def aliased(actions: Any, name: str, aliases: list[str], dest: str,
            **kwargs: Any) -> argparse.ArgumentParser:
    """An action that answers to other words too (``ls`` for ``list``, as shells and other
    CLIs have taught): whichever was typed, ``dest`` holds ``name`` (a subparser's defaults
    are applied after its own name)."""
    s: argparse.ArgumentParser = actions.add_parser(name, aliases=aliases, **kwargs)
    s.set_defaults(**{dest: name})
    return s


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from ``low`` (to ``high``, the most the master takes)."""
    bounds = f"from {low} to {high}" if high is not None else f"{low} or more"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, got {text!r}")
        return value
    return parse


def seconds(most: float, *, why: str = "") -> Callable[[str], float]:
    """A number of seconds more than 0 and at most ``most`` (``why``: a word on 0 itself)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 < value <= most:  # nan too
            raise argparse.ArgumentTypeError(
                f"must be more than 0 and at most {most:g} seconds{why}, got {text!r}")
        return value
    return parse
