"""Where a job's process runs: the seam between the worker and what executes its jobs.

The worker decides *what* runs — the supervisor turns an assignment into a :class:`LaunchSpec`
(script, arguments, environment) — and watches it run — the attempt reads its output, arms its
deadline, kills it and reports its exit, all on the I/O thread. An :class:`Executor` decides
*where*: in a process forked from the worker's zygote or a fresh subprocess
(:class:`~titan.worker.runner.Runner`, ``--executor local``), or as a task on a Ray cluster
(:class:`~titan.worker.ray_executor.RayExecutor`, ``--executor ray``). Like httpx's transport
base class, the seam is a handful of documented methods; one contract suite
(``tests/contract/test_executors.py``) runs every implementation through the same attempt.

The contract
============

:meth:`Executor.spawn` starts a job and returns a :class:`Launched`, or raises
:class:`~titan.errors.TitanError` when the job cannot start (a missing script or interpreter);
it may block (it runs on a starter thread). What it returns, and what a job owes the attempt:

* **Output** — ``stdout`` and ``stderr`` are the read ends of two pipes, non-blocking, owned by
  the caller from now on (it reads them on the I/O loop and closes them). Everything the job
  writes arrives there in the order it was written, as it is written (no waiting for the end);
  end-of-file comes once nothing of the job can write any more. The attempt cuts it into log
  lines (:mod:`titan.worker.output`).
* **Stop** — ``process.kill_group(sig)``, called on the I/O thread and never blocking, signals
  the job *and every process it started*: ``SIGTERM`` lets the job clean up (its handler runs),
  ``SIGKILL`` ends it. The attempt sends ``SIGTERM`` on cancel and timeout and ``SIGKILL`` after
  the worker's kill grace, and ``SIGKILL`` again to a group whose main process has exited but
  whose children still hold its pipes. A signal to a job that has ended is harmless.
  Once the main process has ended, ``process.kill_leftovers(sig)`` signals what is left in its
  group (``SIGTERM`` at once, ``SIGKILL`` after the grace) and says whether anything was; an
  executor whose jobs run elsewhere may decline (False).
* **Exit** — ``process.watch(loop, on_exit)``: ``on_exit(code, error)`` is called once, on the
  I/O thread, when the job's main process has ended: its exit status (negative: killed by that
  signal), or ``None`` with ``error`` saying why there is none (the zygote died, Ray lost the
  task).
* ``process.pid`` names the job in the worker's log (on Ray, the process on its node, 0 until
  it runs there); nothing else may use it.

Besides :meth:`~Executor.spawn`, an executor says what it offers: :attr:`~Executor.base_env`
(what a job's environment is built on, before its own variables and Titan's),
:meth:`~Executor.capabilities` (what the worker advertises when ``--capabilities`` is not
given), :meth:`~Executor.default_slots` (the slots it registers with when ``--slots`` is not
given) and :meth:`~Executor.capacity` (how many jobs it could run now, for an executor whose
room changes while the worker runs; ``None``: the slots are fixed). :meth:`~Executor.start_now`
is an optional fast path that starts a job without blocking the calling thread (the zygote
fork, measured by ``bench/``); :meth:`~Executor.start` gets ready before the first job and
:meth:`~Executor.close` releases everything.

A job is *lost*, not failed, when what ran it died under it (a Ray node): the executor sets
``process.lost`` before its exit, and the attempt hands the job back, spending no retry, as
when a worker dies. An executor that can run nothing more (its cluster is gone) says why in
:meth:`~Executor.broken`, and its :meth:`~Executor.spawn` raises
:class:`~titan.errors.ExecutorGone` (the job is handed back too).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from titan.worker.process import Process

GENERAL = "GENERAL"


@dataclass
class LaunchSpec:
    """What to run, where, and how."""

    script: Path
    args: list[str] = field(default_factory=list)
    cwd: Path = Path(".")
    env: dict[str, str] = field(default_factory=dict)
    #: Extra ``sys.path`` entries after the script's directory (an archive's project root).
    sys_path: list[str] = field(default_factory=list)
    #: ``auto``, ``fork`` or ``subprocess`` (the assignment's ``runner``).
    runner: str = "auto"
    #: The extracted project root of an archive job (the script is inside it), else None: an
    #: executor that runs the job on another machine ships it.
    project_dir: Path | None = None
    #: The capability the job asked for (``GENERAL``, ``GPU``, a custom tag): an executor
    #: that schedules by resources (Ray) asks for the matching one.
    requirement: str = GENERAL
    #: Where a forked job reads its code (:attr:`Script.source`), when not from ``script``.
    source: Path | None = None

    @property
    def wants_fork(self) -> bool:
        return self.runner == "fork" or (self.runner == "auto" and self.script.suffix == ".py")

    @property
    def runs_python(self) -> bool:
        """Whether the script is run by a Python interpreter (``fork`` means "it is Python,
        whatever its name")."""
        return self.script.suffix == ".py" or self.runner == "fork"


@dataclass
class Launched:
    """A started job: its process and the read ends of its stdout and stderr pipes."""

    process: Process
    stdout: int
    stderr: int
    forked: bool


class Executor(ABC):
    """Starts jobs somewhere; see the module docstring for the contract."""

    #: What every job's environment is built on (no credentials): the job's own variables
    #: and Titan's go on top (:func:`titan.worker.assignment.job_env`).
    base_env: dict[str, str]
    #: Whether it can run more jobs than the worker's slots while some of them wait on the
    #: master, which then lends their slots (master/scheduling/lending.py): true where a job
    #: is a process of this machine's, false where the room is a cluster's CPUs.
    lends_waiting_slots: bool = True

    def start(self) -> None:  # noqa: B027 - a hook: most executors have nothing to warm up
        """Get ready before the first job (warm a zygote, ...); by default nothing."""

    @abstractmethod
    def spawn(self, spec: LaunchSpec) -> Launched:
        """Start ``spec``'s job (may block); raises :class:`~titan.errors.TitanError` if it
        cannot start."""

    def start_now(self, spec: LaunchSpec, launched: Callable[[Launched | None], None]) -> bool:
        """Start ``spec`` without blocking the calling thread: ``launched`` gets the job on
        the I/O thread, or None when it could not start this way (the caller then uses
        :meth:`spawn`). False, having started nothing, when there is no such way now; the
        default, for executors without a fast path."""
        return False

    def capabilities(self) -> list[str]:
        """What the worker advertises when no ``--capabilities`` are given."""
        return [GENERAL]

    def default_slots(self) -> int:
        """The jobs the worker runs at once when no ``--slots`` are given."""
        return os.cpu_count() or 1

    def capacity(self) -> int | None:
        """How many jobs this executor could run now, counting those it runs; None when that
        does not change (the worker's slots are its capacity). Asked at every heartbeat."""
        return None

    def broken(self) -> str | None:
        """Why this executor can run no more jobs (the cluster it drives is gone), else None;
        asked at every heartbeat: the worker then hands its jobs back and stops, rather than
        lease job after job only to fail each. A local executor never is."""
        return None

    def close(self) -> None:  # noqa: B027 - a hook, like start()
        """Release what the executor holds (zygotes, a cluster connection)."""
