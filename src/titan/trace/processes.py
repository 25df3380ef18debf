"""Helper processes started inside a run record into it, each as an actor of its own.

A process started as a fresh interpreter — ``subprocess.run([sys.executable, "helper.py"])``,
a ``Popen``, ``asyncio.create_subprocess_exec``, a multiprocessing child started by ``spawn``
(a ``Pool``'s or a ``ProcessPoolExecutor``'s worker) — inherits its parent's environment but
not its run, its actor or its count of calls. A job's helper recorded under the job's own
actor, counting its calls from 0 again: its keys were the job's and its siblings' (two
helpers and the job each made call #0), which no replay can tell apart. A driver's helper
had no run at all (the driver learns its run at its first stage; its environment does not
name it): nothing recorded its calls, and its replay made them again, live and at a cost.

So the parent tells each process it starts inside a run which run it is in and which actor it
is (:class:`~titan.trace.context.Started`):

- a subprocess is ``<actor>/proc-<n>``, the n-th process its parent's actor started (counted
  as they start, per actor like its calls), in ``TITAN_TRACE_PROCESS`` of its environment —
  when that environment is the parent's, or a copy that keeps its replay settings
  (``TITAN_REPLAY``) and names no other run (``TITAN_AGENT_RUN_ID``). An environment stripped
  of them is a process Titan cannot follow, recording or replaying;
- a multiprocessing child is ``<actor>/<its multiprocessing name>`` (``spawnpoolworker-1``,
  numbered by multiprocessing in the order they start), on its Process object, which
  multiprocessing hands it. (A forked child needs none of this: it copies its parent's run
  and records as ``fork-<n>``, :mod:`titan.trace.context`.)

A replay re-executes the same code and numbers its processes the same way, so each helper
finds its calls under the key the original recorded. Two processes started side by side
(from two threads) may take each other's numbers in the replay: a helper's call its own key
does not answer is matched to a call with the same inputs by any process its actor started
(:func:`titan.trace.forks.pooled`), as a pool's tasks are.
"""

from __future__ import annotations

import functools
import multiprocessing.process
import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from titan.llm.recording import asking
from titan.trace import context, forks

_installed = False


def _told(segment: Callable[[context.RunHandle, str], str]) -> context.Started | None:
    """What a process started here and now is told: the current run, and the current actor
    with ``segment`` below it; None outside any run (nothing recorded the process's calls in
    the original either: it is on its own, as it was), or inside a model's live request."""
    if asking.get():
        return None
    run = context.current_run()
    if run is None or run.refused or run.outside:
        return None
    actor = context.current_actor(run)
    return context.Started(run.id, f"{actor}/{segment(run, actor)}", run.agent_id,
                           run.shadow_of)


def _numbered(run: context.RunHandle, actor: str) -> str:
    return f"proc-{run.next_ordinal(actor, 'process', 'start') + 1}"


def _keeps_ours(env: Mapping[Any, Any], started: context.Started) -> bool:
    """Whether a subprocess given ``env`` is one of this process's helpers: the environment
    keeps this replay's settings (or, recording, has none either) and names no other run."""
    if not all(isinstance(k, str) for k in env):
        return False
    if env.get("TITAN_REPLAY") != os.environ.get("TITAN_REPLAY"):
        return False
    named = env.get("TITAN_AGENT_RUN_ID")
    return not named or named in (os.environ.get("TITAN_AGENT_RUN_ID"), started.run,
                                  context.driven_run_id())


def child_env(env: Mapping[Any, Any] | None) -> Mapping[Any, Any] | None:
    """The environment a subprocess starting now gets: ``env`` (None: this process's own)
    telling it the run and actor it is in (:data:`~titan.trace.context.PROCESS_ENV`)."""
    started = _told(_numbered)
    base = os.environ if env is None else env
    if started is not None and _keeps_ours(base, started):
        return {**base, context.PROCESS_ENV: started.dumps()}
    if context.PROCESS_ENV in base:
        # What this process was told is its own: a process it starts outside any run is
        # not this process, and must not record as it.
        return {k: v for k, v in base.items() if k != context.PROCESS_ENV}
    return env


def install() -> None:
    """Patch ``subprocess.Popen`` and multiprocessing's ``Process.start`` once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    execute: Any = subprocess.Popen._execute_child  # type: ignore[attr-defined]
    start = multiprocessing.process.BaseProcess.start

    # Every Popen (subprocess.run, check_output, asyncio's subprocesses) starts its child
    # here, with the environment as given or None (this process's own), in this position
    # since Python 3.3.
    @functools.wraps(execute)
    def execute_child(self: subprocess.Popen[Any], args: Any, executable: Any,
                      preexec_fn: Any, close_fds: Any, pass_fds: Any, cwd: Any, env: Any,
                      *rest: Any, **kw: Any) -> Any:
        return execute(self, args, executable, preexec_fn, close_fds, pass_fds, cwd,
                       child_env(env), *rest, **kw)

    @functools.wraps(start)
    def start_told(self: multiprocessing.process.BaseProcess) -> None:
        started = _told(lambda run, actor: self.name.replace("/", "-").lower())
        if started is not None:
            # Pickled with the object for a child started by spawn or forkserver (a forked
            # child ignores it: it has its parent's run already).
            setattr(self, context.PROCESS_ATTR, started)
        # A replay's strict stop in the child ends the replay in this process too (a pool
        # waits for ever on a worker that died of it: titan.trace.forks).
        forks.arm()
        start(self)

    subprocess.Popen._execute_child = execute_child  # type: ignore[attr-defined]
    multiprocessing.process.BaseProcess.start = start_told  # type: ignore[method-assign]
