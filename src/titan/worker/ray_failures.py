"""Why a job's Ray task ended without an exit status: lost with the cluster, or failed.

A job's process runs on a Ray node under a Ray worker; the task that runs it can end with an
exception instead of the job's exit status. Some say the cluster lost it — a node, a raylet
or a Ray worker died under it, or its output went with one (:func:`lost_why`): the attempt is
then lost, as one on a local worker that dies is, and spends no retry. The rest are the job's
attempt failing (:func:`task_failure`: cancelled, its task could not run...). Both answer
in one line, for the job's log and its error.
"""

from __future__ import annotations

import re
from typing import Any


def lost_why(ray: Any, exc: BaseException) -> str | None:
    """Why a job's task ended with ``exc`` when that is the cluster's doing, not the job's: a
    node, a raylet or a Ray worker died under it, or its output went with one (None for
    anything else). Such an attempt is lost, as a dead local worker's is: it spends no retry.
    A task Ray's memory monitor killed (``OutOfMemoryError``) is the job's, as a local
    process the kernel's OOM killer ends is."""
    exceptions = ray.exceptions
    if isinstance(exc, exceptions.LocalRayletDiedError):
        return "lost on Ray: this worker's own Ray node (its raylet) died"
    if isinstance(exc, exceptions.NodeDiedError):
        node = re.search(r"node ID: ([0-9a-f]{12})", str(exc))
        return f"lost on Ray: the node running it{f' ({node[1]})' if node else ''} died"
    if isinstance(exc, exceptions.WorkerCrashedError):
        return "lost on Ray: the Ray worker running it died"
    if isinstance(exc, (exceptions.ObjectLostError, exceptions.RaySystemError)):
        return f"lost on Ray: {type(exc).__name__}: {exc}".split("\n")[0][:300]
    return None


def task_failure(ray: Any, exc: BaseException) -> str:
    """Why a job's task ended without an exit status, in one line."""
    exceptions = ray.exceptions
    if isinstance(exc, exceptions.TaskCancelledError):
        return "cancelled on the Ray cluster"
    if isinstance(exc, exceptions.RayTaskError):
        cause = getattr(exc, "cause", None) or exc
        return f"the job's Ray task failed: {type(cause).__name__}: {cause}".split("\n")[0]
    return f"Ray: {type(exc).__name__}: {exc}".split("\n")[0]
