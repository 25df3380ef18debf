"""Where an action belongs: the current agent run, actor path and parent action.

Inside a Titan job the run comes from ``TITAN_AGENT_RUN_ID`` and the actor from the job
(``<stage>/<job id>``); ``titan.trace.run(...)`` opens a run anywhere else; ``titan.trace.actor``
nests a sub-agent's path. All three are context variables: asyncio tasks started inside a run
inherit them, and threads and thread-pool tasks do too (:mod:`titan.trace.threads`). A process
that drives a run from outside (``submit_dag(..., agent_run_id=...)``) records its own calls
into it from its first stage on, as ``DRIVER/driver``, the actor of its replay's DRIVER job.

A process forked inside a run (``multiprocessing``'s fork, ``os.fork``) records into it as an
actor of its own, ``<actor>/fork-<n>`` (the parent's n-th fork): it counts its calls on its
own copy of the run's ordinals, so under its parent's actor its calls would take the
parent's and its siblings' keys again (0, 0, 1, 1, ...), which a replay cannot tell apart. A
process started by ``spawn`` or ``forkserver`` in a job, where it records into the job's run
too, is ``<job actor>/<its multiprocessing name>`` for the same reason.

A process started inside a run as a fresh interpreter — a ``subprocess`` helper, a
multiprocessing child started by ``spawn`` — is told by its parent which run it belongs to and
which actor it is (:class:`Started`, made by :mod:`titan.trace.processes`), and records as that
actor: ``<actor>/proc-<n>`` or ``<actor>/<its multiprocessing name>``.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

from titan.trace.naming import job_actor


@dataclass(eq=False)
class RunHandle:
    """This process's view of one agent run."""

    id: str
    agent_id: str | None = None
    default_actor: str = "main"
    # Budget state: from the master's replies, plus what this process spent since.
    budget_usd: float | None = None
    cost_usd: float = 0.0  # the master's total at its last reply
    unsent_cost: float = 0.0  # recorded here, not yet acknowledged
    blocked: bool = False
    known_at: float = 0.0  # when the budget state was last learned from the master (0: never)
    endpoint: Any = None  # the master to report to (None: the SDK's default one)
    #: How many forks deep the process that made this handle was: a process further down
    #: records into it under fork-<n> segments of its own (see current_actor).
    born: int = field(default_factory=lambda: len(_fork_path))
    #: In a replay, a ``titan.trace.run`` block of the script other than the replayed run:
    #: the run it was in the original, whose recording answers its calls ("" for a block the
    #: original did not open). Nothing of it is recorded (see titan.trace.runs).
    shadow_of: str | None = None
    #: The master refused to open it (a run id that names a run already ended): nothing more
    #: of it is sent, or it would be appended to that other execution.
    refused: bool = False
    #: In a replay, where the calls made outside any run are recorded (:func:`outside_run`):
    #: nothing of the recording answers them.
    outside: bool = False
    _ordinals: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_ordinal(self, actor: str, channel: str, name: str) -> int:
        key = (actor, channel, name)
        with self._lock:
            n = self._ordinals.get(key, 0)
            self._ordinals[key] = n + 1
        return n

    def skip_ordinals(self, actor: str, channel: str, name: str, past: int) -> bool:
        """Count the calls of that key up to ``past`` as made (a replay passing over calls
        recorded inside one it served); whether any was not made yet."""
        key = (actor, channel, name)
        with self._lock:
            if self._ordinals.get(key, 0) > past:
                return False
            self._ordinals[key] = past + 1
        return True

    @property
    def over_budget(self) -> bool:
        return self.blocked or (self.budget_usd is not None
                                and self.cost_usd + self.unsent_cost > self.budget_usd)


#: Where a process started inside a run finds what its parent told it (:class:`Started`): in
#: its environment (a subprocess), or on its multiprocessing Process object (a child started
#: without a fork, which multiprocessing hands the object; unpickling it loads titan.trace).
PROCESS_ENV = "TITAN_TRACE_PROCESS"
PROCESS_ATTR = "_titan_started"


@dataclass(frozen=True)
class Started:
    """What a process started inside a run is told of it: the run and the actor it records
    as, and, in a replay, the run a ``titan.trace.run`` block that is not the replayed one was
    in the original (see :attr:`RunHandle.shadow_of`)."""

    run: str
    actor: str
    agent_id: str | None = None
    shadow_of: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, raw: Any) -> Started | None:
        """From the environment's JSON (or a Process object's value); None when it is not one
        (a value set by hand, damaged, or too long to be an actor path)."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if len(raw) <= 4096 else None
            except ValueError:
                return None
        if isinstance(raw, Started):
            raw = asdict(raw)
        if not isinstance(raw, dict):
            return None
        run, actor = raw.get("run"), raw.get("actor")
        agent, shadow = raw.get("agent_id"), raw.get("shadow_of")
        if not (isinstance(run, str) and run and isinstance(actor, str) and actor
                and "" not in actor.split("/")):
            return None
        return cls(run, actor, agent if isinstance(agent, str) else None,
                   shadow if isinstance(shadow, str) else None)


_run: ContextVar[RunHandle | None] = ContextVar("titan_run", default=None)
_actor: ContextVar[str | None] = ContextVar("titan_actor", default=None)
_parent: ContextVar[str | None] = ContextVar("titan_parent_action", default=None)
_env_run: RunHandle | None = None
_env_lock = threading.Lock()
#: The run this process drives from outside, if any: the one its latest
#: ``submit_dag(..., agent_run_id=...)`` went to (:func:`titan.trace.runs.drive`). Its own
#: calls outside any ``trace.run`` block are recorded there, as the actor DRIVER_ACTOR.
_driven: RunHandle | None = None
#: Set in a replay's DRIVER job (titan.trace.replay_driver), and read from the environment by
#: the processes it spawns; see current_run().
REPLAYED_DRIVER_ENV = "TITAN_REPLAYED_DRIVER"
_replayed_driver = os.environ.get(REPLAYED_DRIVER_ENV) == "1"
_replay_driving = False  # ...and whether the replayed driver has submitted its first stage
_prefix = secrets.token_hex(4)
_counter = itertools.count(1)
_pid = os.getpid()
#: This process's fork segments below the process it was forked from, outermost first; and
#: how many processes it forked itself (the next child's number).
_fork_path: list[str] = []
_forks = 0
#: The run this process was started in, as its parent told it (:func:`_started_run`).
_started: RunHandle | None = None


def _before_fork() -> None:
    global _forks
    _forks += 1
    _started_run()  # made here, so a child records into it as a fork of this process
    if os.environ.get("TITAN_AGENT_RUN_ID"):
        _job_run()  # made here, so a child records into it as a fork, not as the job itself


def _after_fork_in_child() -> None:
    global _forks
    _fork_path.append(f"fork-{_forks}")
    _forks = 0


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def new_action_id() -> str:
    """Unique per action without a syscall: a per-process random prefix and a counter
    (re-drawn after a fork, so a forked job never repeats its parent's ids)."""
    global _prefix, _counter, _pid
    if os.getpid() != _pid:
        _prefix, _counter, _pid = secrets.token_hex(4), itertools.count(1), os.getpid()
    return f"{_prefix}-{next(_counter)}"


def current_run() -> RunHandle | None:
    """The run actions go to now: the innermost ``trace.run``, else the job's agent run, else
    the run this process drives from outside (from its first stage on).

    A replay's DRIVER job runs in the replay's run from its start, but the driver it
    re-executes ran outside any run until it submitted its first stage: nothing it called
    before was recorded (it did not know its run yet), so nothing is looked up in the
    recording either, or each such call would be an extra one and take the ordinals of the
    recorded calls after it. Until then its calls run as they ran, live and unrecorded."""
    run = _run.get()
    if run is not None:
        return run
    started = _started_run()
    if started is not None:  # a helper process: the run and actor its parent gave it
        return started
    if _replayed_driver:
        return _job_run() if _replay_driving else None
    return _job_run() or _driven


def _started_run() -> RunHandle | None:
    """The run this process was started in as a helper, and its actor there, as the process
    that started it said (:class:`Started`); None when it was not started inside a run.

    Kept once found: a process forked from this one copies the handle, and records below it
    as ``fork-<n>``."""
    global _started
    if _started is not None:
        return _started
    said: Any = None
    process = sys.modules.get("multiprocessing.process")
    if process is not None and not _fork_path:
        current = process.current_process()
        if getattr(current, "_inheriting", False):
            # A spawned child importing the main script again, before multiprocessing has
            # unpickled its Process object: what it is is not known yet.
            return None
        if process.parent_process() is not None:
            said = getattr(current, PROCESS_ATTR, None)
    found = Started.parse(said if said is not None else os.environ.get(PROCESS_ENV))
    if found is None:
        return None
    with _env_lock:
        if _started is None:
            _started = RunHandle(id=found.run, agent_id=found.agent_id,
                                 default_actor=found.actor, shadow_of=found.shadow_of)
    return _started


def driven_run_id() -> str | None:
    """The run this process drives from outside, if any (in a replay, the id the replayed
    driver made up for it, an alias of the replay's run)."""
    return _driven.id if _driven is not None else None


def drives(run: RunHandle) -> None:
    """This process submitted a stage of ``run`` from outside it: its own calls from now on
    are the run's (those of the run it submitted to last, when it drives several)."""
    global _driven
    _driven = run


def replaying_driver() -> None:
    """Mark this process as the DRIVER job of a replay (see :func:`current_run`)."""
    global _replayed_driver
    _replayed_driver = True
    os.environ[REPLAYED_DRIVER_ENV] = "1"  # for the processes it spawns (fresh interpreters)


def replayed_driver_drives() -> None:
    """The replayed driver submitted a stage of its run, where the original began to drive
    it (see :func:`current_run`); a no-op in any other process."""
    global _replay_driving
    if _replayed_driver:
        _replay_driving = True


def outside_replayed_run() -> bool:
    """Whether this is a replay's driver running outside any run, as its original did before
    its first stage: its calls run live and unrecorded, their connections included."""
    return _replayed_driver and current_run() is None


#: The actor segment of the calls a replay's process makes outside any run (:func:`outside_run`).
OUTSIDE_RUN = "outside-run"
_outside: RunHandle | None = None
_outside_pid = 0


def outside_run() -> RunHandle | None:
    """In a replay's process, the handle that records the calls it makes outside any run; None
    in any other process.

    The original made such calls where nothing recorded them: a driver before its first stage
    (it did not know its run yet), a helper process it started that sees no run of its own (a
    replay's DRIVER job runs with ``TITAN_AGENT_RUN_ID``, which a script may read, branch on or
    hand on). The recording cannot answer them, so they run live, as they did; recorded here,
    in the replay's run (the id the master gave the replay, whatever the environment says now),
    as ``<job actor>/outside-run-<pid>`` with what they cost, they are counted as live calls
    (``unrecorded``: no divergence, the original made them unrecorded too) instead of passing
    for free."""
    global _outside, _outside_pid
    raw = os.environ.get("TITAN_REPLAY")
    if not raw:
        return None
    if _outside is not None and _outside_pid == os.getpid():
        return _outside
    try:
        settings = json.loads(raw)
    except ValueError:
        settings = {}
    settings = settings if isinstance(settings, dict) else {}
    run_id = settings.get("run") or os.environ.get("TITAN_AGENT_RUN_ID")
    if not isinstance(run_id, str) or not run_id:
        return None
    with _env_lock:
        if _outside is None or _outside_pid != os.getpid():
            actor = job_actor(os.environ.get("TITAN_DAG", ""),
                              os.environ.get("TITAN_JOB_ID", "main"), run_id,
                              settings.get("aliases") or ())
            # The pid tells apart the processes of one job (a helper it started counts its
            # calls from 0 too): under one actor their calls would take each other's keys.
            _outside = RunHandle(id=run_id, default_actor=f"{actor}/{OUTSIDE_RUN}-{os.getpid()}",
                                 outside=True)
            _outside_pid = os.getpid()
    return _outside


def _job_run() -> RunHandle | None:
    global _env_run
    run_id = os.environ.get("TITAN_AGENT_RUN_ID")
    if not run_id:
        return None
    if _env_run is None or _env_run.id != run_id:
        with _env_lock:
            if _env_run is None or _env_run.id != run_id:
                replay = json.loads(os.environ.get("TITAN_REPLAY") or "{}")
                actor = job_actor(os.environ.get("TITAN_DAG", ""),
                                  os.environ.get("TITAN_JOB_ID", "main"), run_id,
                                  replay.get("aliases") or ())
                process = _spawned_name()
                if process is not None:
                    actor = f"{actor}/{process}"
                _env_run = RunHandle(id=run_id, default_actor=actor)
    return _env_run


def in_scope() -> bool:
    """Whether this context sits inside a ``trace.run``, a ``trace.actor`` or an action
    (what a thread started here must carry: :mod:`titan.trace.threads`)."""
    return _run.get() is not None or _actor.get() is not None or _parent.get() is not None


def _spawned_name() -> str | None:
    """This process's multiprocessing name when multiprocessing started it without a fork
    (``spawn``, ``forkserver``: it inherited the job's environment, not its run handle)."""
    process = sys.modules.get("multiprocessing.process")
    if process is None or process.parent_process() is None or _fork_path:
        return None
    return process.current_process().name.replace("/", "-").lower() or None


def current_actor(run: RunHandle) -> str:
    actor = _actor.get() or run.default_actor
    if len(_fork_path) > run.born:  # a process forked below the one that opened the run
        actor = "/".join((actor, *_fork_path[run.born:]))
    return actor


def current_parent() -> str | None:
    return _parent.get()


@contextmanager
def actor(name: str) -> Iterator[str]:
    """Record the actions inside the block as made by sub-agent ``name`` (nested under the
    current actor: ``ITER1/researcher-1-0/summariser``)."""
    if not name or "/" in name:
        raise ValueError("an actor name is a non-empty string without '/'")
    run = current_run()
    base = _actor.get() or (run.default_actor if run else "main")
    path = f"{base}/{name}"
    token = _actor.set(path)
    try:
        yield path
    finally:
        _actor.reset(token)


def enter_run(run: RunHandle) -> object:
    return _run.set(run)


def leave_run(token: object) -> None:
    _run.reset(token)  # type: ignore[arg-type]


def set_parent(action_id: str | None) -> object:
    return _parent.set(action_id)


def reset_parent(token: object) -> None:
    _parent.reset(token)  # type: ignore[arg-type]
