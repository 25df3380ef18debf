"""The executors a worker can use, by name, and how each is built from the worker's options.

``local`` (the default) runs each job as a process on this host, forked from a warm zygote
(:mod:`titan.worker.runner`); ``ray`` hands each job to a Ray cluster as a task
(:mod:`titan.worker.ray_executor`). Kept apart from the interface (:mod:`titan.worker.executor`)
so that the interface imports no implementation.
"""

from __future__ import annotations

import os
from pathlib import Path

from titan import errors
from titan.worker.assignment import inherited_env
from titan.worker.executor import Executor
from titan.worker.isolation import prepare as prepare_isolation
from titan.worker.loop import IOLoop
from titan.worker.ray_executor import RayExecutor
from titan.worker.runner import Runner
from titan.worker.settings import zygote_spares

#: Where jobs run: ``local`` processes (the default) or tasks of a Ray cluster.
EXECUTORS = ("local", "ray")


def open_executor(kind: str, loop: IOLoop, *, workspace: Path, slots: int | None,
                  use_zygote: bool = True, sandbox: bool = False, run_as: str | None = None,
                  ray_address: str | None = None) -> tuple[Executor, int]:
    """The executor named ``kind`` and the slots the worker offers (``slots``, else the
    executor's own count: the host's CPUs, or the Ray cluster's)."""
    if kind not in EXECUTORS:
        raise errors.ConfigError(f"the executor must be one of {', '.join(EXECUTORS)}"
                                 f" (got {kind!r})")
    if kind == "ray":
        if sandbox or run_as:
            raise errors.ConfigError("--sandbox and --run-as isolate local processes; "
                                     "they do not apply to --executor ray")
        ray = RayExecutor(loop, address=ray_address)
        return ray, slots or ray.default_slots()
    slots = slots or os.cpu_count() or 1
    # Decided once (ruleset built, user looked up); a ConfigError if it cannot be had.
    isolation = prepare_isolation(workspace, sandbox=sandbox, run_as=run_as)
    base_env = {**inherited_env(os.environ), **isolation.env}
    return Runner(loop, use_zygote=use_zygote, isolation=isolation, env=base_env,
                  spares=zygote_spares(slots)), slots
