"""Recording what an agent did: runs, actions, tools, and values that must replay.

::

    import titan

    with titan.trace.run(agent_id="support-bot", agent_version="1.4", budget_usd=2.0):
        with titan.trace.action("retrieve", inputs={"query": q}) as a:
            a.outputs = search(q)
        reply = titan.llm.complete(prompt)          # recorded as call_llm

    @titan.tool
    def web_search(query: str, k: int = 5) -> list[str]: ...

Inside a Titan job there is nothing to open: actions go to the job's agent run, made by the
actor ``<stage>/<job id>``. Recording never waits on the network (see
:mod:`titan.trace.recorder`); outside any run nothing is recorded and the code runs as is.
"""

from __future__ import annotations

from titan.trace import llm_hooks as _llm_hooks
from titan.trace import processes as _processes
from titan.trace import threads as _threads
from titan.trace.actions import Action, action, tool
from titan.trace.ambient import now, random, uuid
from titan.trace.context import actor, current_run
from titan.trace.recorder import RECORDER
from titan.trace.runs import Run, drive, run

# Recording hooks itself into titan.llm (which knows nothing of runs): once this package is
# loaded, every titan.llm call of a process with a current run is recorded and budget-guarded.
# Loaded by whatever opens a run: titan.trace.run, and `import titan` in a job of an agent
# run or a replay (see titan/__init__.py; the worker's zygote preloads it for forked jobs).
_llm_hooks.install()
# Threads and thread-pool tasks started inside a run record into it (Python 3.11's threads
# start with an empty context).
_threads.install()
# Processes started inside a run (a subprocess helper, a spawned pool worker) record into it,
# each as an actor of its own.
_processes.install()

__all__ = ["Action", "Run", "action", "actor", "current_run_id", "drive", "flush", "now",
           "random", "run", "tool", "uuid"]


def current_run_id() -> str | None:
    """The id of the agent run actions are recorded into here, or None."""
    found = current_run()
    return found.id if found else None


def flush(timeout: float = 30.0) -> bool:
    """Wait until every action recorded so far reached the master; False on timeout."""
    return RECORDER.flush(timeout)
