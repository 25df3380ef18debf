"""What the agent under test of a coding run is handed, and what it is kept from.

The coding job (:mod:`titan.evals.coding_job`, the harness) grades the agent it runs, and
holds a job token that can do what an operator can. With that token the agent could read the
task's scorers, post its own grade, submit jobs and read the store: an evaluation whose subject
can grade itself measures nothing. So:

- the harness asks the master for its agent's own token (``ta.``, ``POST
  /runs/<run>/eval/agent-token``), which the run's tool proxy takes for that run's tools,
  answer and events, and which every other route refuses. It is the only Titan credential in
  the agent's environment (``TITAN_TOOL_TOKEN``, where :func:`titan.evals.proxy_client
  .default_proxy` finds it);
- the harness takes its own token out of its environment (:func:`forget_credentials`) once
  its client has it: setup, the agent and the scorers inherit none;
- the harness is made not dumpable first (:func:`undumpable`): ``/proc/<pid>/environ`` (still
  the environment it was started with, token included: unsetting a variable does not erase
  that copy) and ``/proc/<pid>/mem`` are then refused to every process of its user that lacks
  ``CAP_SYS_PTRACE``, the agent included, and so is ``ptrace``. No Yama needed: it is the
  kernel's ptrace access check. ``exec`` makes the agent dumpable again, a process of its own.

What this does not close — whatever else the worker's OS user can reach (the worker's and
other jobs' ``/proc/<pid>/environ``, the data dir, ``~/.titan``), or anything at all when the
agent runs as root — is the worker's isolation's to close (docs/security.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from titan.redaction import TITAN_TOKEN

#: prctl(2) options.
_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
#: The harness's credentials: its job token (and a proxy token, were it ever given one).
CREDENTIALS = ("TITAN_TOKEN", "TITAN_TOOL_TOKEN")
#: What makes a process Titan's job: the SDK would record into the job's run as the job, with
#: a token the agent does not hold. The agent is a program under test, not the job.
JOB_IDENTITY = ("TITAN_AGENT_RUN_ID", "TITAN_JOB_ID", "TITAN_JOB_REF", "TITAN_JOB_UID",
                "TITAN_ATTEMPT", "TITAN_DAG", "TITAN_DAG_RUN", "TITAN_SERVICE_PORT")
_TOKEN_VALUE = re.compile(TITAN_TOKEN)


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result: int = libc.prctl(option, arg, 0, 0, 0)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def undumpable() -> str | None:
    """Make this process not dumpable; None when done, else why not (not Linux, no prctl)."""
    if not sys.platform.startswith("linux"):
        return f"not on Linux ({sys.platform})"
    try:
        _prctl(_PR_SET_DUMPABLE, 0)
    except (OSError, AttributeError) as exc:
        return f"prctl(PR_SET_DUMPABLE) failed: {exc}"
    return None


def dumpable() -> int | None:
    """This process's ``PR_GET_DUMPABLE`` (0: not dumpable), None where it cannot be asked."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _prctl(_PR_GET_DUMPABLE)
    except (OSError, AttributeError):
        return None


def forget_credentials(environ: MutableMapping[str, str] | None = None) -> None:
    """Take the harness's credentials out of its environment (its client holds its token)."""
    environ = os.environ if environ is None else environ
    for name in CREDENTIALS:
        environ.pop(name, None)


def agent_environ(task: dict[str, Any], root: Path, transcript: Path, harness: Path,
                  turn: tuple[int, int] | None, token: str | None) -> dict[str, str]:
    """The agent's environment: this process's, less every Titan credential and the job's
    identity, plus its task (never how it is graded), workspace, transcript paths and, when
    given, its run's agent token."""
    env = {k: v for k, v in os.environ.items()
           if k not in CREDENTIALS and k not in JOB_IDENTITY and not _TOKEN_VALUE.search(v)}
    # The agent sees its instruction and workspace, never how it will be graded.
    env["TITAN_EVAL_TASK"] = json.dumps({k: v for k, v in task.items()
                                         if k not in ("scorers", "turns")})
    env["TITAN_EVAL_WORKSPACE"] = str(root)
    env["TITAN_EVAL_COMMANDS"] = str(transcript)
    env["TITAN_EVAL_TRANSCRIPTS"] = str(harness)
    if token:
        env["TITAN_TOOL_TOKEN"] = token
    if turn is not None:  # a session: which turn this is, of how many
        env["TITAN_EVAL_TURN"], env["TITAN_EVAL_TURNS"] = str(turn[0]), str(turn[1])
    return env


def adopt_leftovers() -> tuple[bool | None, frozenset[int]]:
    """Make this harness the subreaper of what its agent starts (``PR_SET_CHILD_SUBREAPER``):
    a process the agent leaves outside its group (``setsid`` and a double fork) is reparented
    here, not to init, where :func:`end_leftovers` finds it. Returns what :func:`end_leftovers`
    needs to put things back: whether this process was a subreaper before (None where that
    cannot be asked), and the children it has already, which are not the agent's."""
    before: bool | None = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            flag = ctypes.c_int(0)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0:
                before = bool(flag.value)
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    return before, frozenset(_children())


def end_leftovers(group: int, adopted: tuple[bool | None, frozenset[int]]) -> int:
    """Kill what the agent left running once it has exited — its process ``group``, and every
    child this process has then that it did not have before the agent (``adopted``, from
    :func:`adopt_leftovers`), each with its own group — so nothing changes the workspace while
    the scorers read it; how many processes were found. Then this process is a subreaper again
    only if it was one before."""
    before, spared = adopted
    own = os.getpgrp()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    found = 0
    for _ in range(50):  # each round reaps what the last killed; their orphans come here next
        leftovers = [pid for pid in _children() if pid not in spared]
        if not leftovers:
            break
        found += len(leftovers)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                their = os.getpgid(pid)
                if their != own:  # never this harness's own group
                    os.killpg(their, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in leftovers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    if before is False:
        with contextlib.suppress(OSError, AttributeError):
            _prctl(_PR_SET_CHILD_SUBREAPER, 0)
    return found


def _children() -> list[int]:
    """This process's children, from every thread's ``/proc/self/task/<tid>/children``."""
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError, ValueError), \
                    open(f"/proc/self/task/{task}/children") as fh:
                kids += [int(pid) for pid in fh.read().split()]
    return kids
