"""Titan: run DAGs of Python jobs and agent loops, and record what every agent did.

The public API, re-exported: ``from titan import TitanClient, TitanJob`` (the same objects
as ``from titan_sdk import ...``). They are imported lazily, on first use, so that importing
a submodule (the worker's zygote imports ``titan.worker.zygote``) does not pay for the SDK.
"""

from __future__ import annotations

import os

from titan.version import __version__

# Not typing's: `titan` starts by importing this package, and what it imports before the
# command line's own code runs is where a Ctrl-C cannot be caught (titan/cli/__init__.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from titan import errors, llm, trace
    from titan.client import (
        TitanClient,
        TitanJob,
        get_artifact,
        load_pipeline,
        publish_artifact,
        wait_for_signal,
        wait_for_signals,
    )
    from titan.trace import tool

__all__ = ["TitanClient", "TitanJob", "__version__", "errors", "get_artifact", "llm",
           "load_pipeline", "publish_artifact", "tool", "trace", "wait_for_signal",
           "wait_for_signals"]


def __getattr__(name: str) -> Any:
    if name == "llm":
        # A job forked from the lean zygote imported this package before its environment
        # named its agent run, so the block below did not run there: `titan.llm.complete()`
        # answered and the run recorded nothing. Hook titan.llm before handing it out.
        _record_agent_run()
    if name in ("errors", "llm", "trace"):
        import importlib

        return importlib.import_module(f"titan.{name}")
    if name == "tool":
        import titan.trace

        return titan.trace.tool
    if name in __all__:
        import titan.client

        return getattr(titan.client, name)
    raise AttributeError(f"module 'titan' has no attribute {name!r}")


def _record_agent_run() -> None:
    """In a job of an agent run (or of its replay), or a helper process started inside a run
    (``TITAN_TRACE_PROCESS``: titan.trace.processes), record its titan.llm calls (loading
    titan.trace hooks them) and, in a replay, guard its sockets."""
    if os.environ.get("TITAN_AGENT_RUN_ID") or os.environ.get("TITAN_REPLAY") \
            or os.environ.get("TITAN_TRACE_PROCESS"):
        from titan.trace import replay

        replay.active()


# A job started as a fresh interpreter: as soon as it imports Titan. A job forked from the
# full zygote has titan.trace loaded already; one forked from the lean zygote, which loads
# no more than it needs, gets it when it reaches for titan.llm (``__getattr__``).
_record_agent_run()
