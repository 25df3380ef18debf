"""The ``titan`` command, one module per group of subcommands.

* :mod:`~titan.cli.parser` — the parser and the entry point :func:`main`
* :mod:`~titan.cli.commands` — the commands on jobs, DAGs, the store, workers and tokens,
  and the handlers that hand the other groups to their modules
* :mod:`~titan.cli.submit` — ``titan submit``: a pipeline or a script, and ``--wait``
* :mod:`~titan.cli.serve` — ``titan up``, ``titan master`` and ``titan worker``
* :mod:`~titan.cli.down` — ``titan down``: stop the ``titan up`` of a data dir running
  elsewhere (found by its lock file, checked before it is signalled)
* :mod:`~titan.cli.runs` — ``titan runs``: agent runs and their actions
* :mod:`~titan.cli.schedules` — ``titan schedule``: cron schedules of pipelines
* :mod:`~titan.cli.dashboard` — ``titan dashboard``: the sign-in link, for a token that can
  sign in
* :mod:`~titan.cli.files` — ``titan files``: upload a file or a project folder, list, get, rm
* :mod:`~titan.cli.replay` — ``titan replay`` and ``titan determinism``
* :mod:`~titan.cli.evals` — ``titan eval``: evaluations from a spec, their runs and verdicts
* :mod:`~titan.cli.llm` — ``titan llm``: the local model's install and a quick completion
* :mod:`~titan.cli.mcp` — ``titan mcp``: Titan's MCP server on stdin/stdout
* :mod:`~titan.cli.options` — option values checked as the command line is read (a
  count, seconds), so that a bad one is a usage error naming the option
* :mod:`~titan.cli.output` — how every command prints for people (tables, times, jobs and
  DAGs) and for programs (``--json``); its helpers are public, for all of the above

The subcommand modules' heavy parts (the SDK and httpx, the master, the ledger and orjson)
are imported only when their command runs, so ``titan --help`` and ``titan status`` stay
fast, and a Ctrl-C while ``titan`` starts ends it with 130, quietly: orjson crashed
(SIGSEGV) when interrupted while it loaded, which every command did at its start.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's is not imported before main() can catch a Ctrl-C
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``titan``'s entry point (:func:`titan.cli.parser.main`); a Ctrl-C while its modules
    load is exit status 130, without a traceback."""
    try:
        from titan.cli.parser import main as run
    except KeyboardInterrupt:
        return 130  # parser.INTERRUPTED (not imported: that is what was interrupted)
    return run(argv)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``titan`` (:func:`titan.cli.parser.build_parser`)."""
    from titan.cli.parser import build_parser as build

    return build()


__all__ = ["build_parser", "main"]
