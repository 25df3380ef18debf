"""Running assignments: prepare the script, start the process, watch it, report it.

:meth:`Supervisor.start` returns at once: preparing a job (fetching its script or archive,
which may take a network round trip the first time) happens on a small pool of starter
threads, so the long-poll that delivered the job goes straight back to the master and a
cancel is never stuck behind a download. From the moment its process exists, an attempt
belongs to the I/O thread (:mod:`titan.worker.attempt`). A service's attempt
(:mod:`titan.worker.service`) comes back here for each restart, and is stopped or released
through :meth:`Supervisor.stop` and :meth:`Supervisor.release_services`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from titan import errors, services
from titan.worker.assignment import Assignment, Key, inherited_env, job_env
from titan.worker.attempt import CANCELLED, Attempt
from titan.worker.executor import Executor, Launched, LaunchSpec
from titan.worker.loop import IOLoop
from titan.worker.reporter import Reporter
from titan.worker.service import RELEASED, STOP_REQUESTED, ServiceAttempt
from titan.worker.service_network import advertised_host
from titan.worker.workspace import Workspace

log = logging.getLogger("titan.worker")


class Supervisor:
    """The worker's running attempts."""

    def __init__(self, *, loop: IOLoop, runner: Executor, workspace: Workspace,
                 reporter: Reporter, master_url: str | Callable[[], Sequence[str]],
                 kill_grace: float, starters: int,
                 on_finished: Callable[[Key], None],
                 base_env: dict[str, str] | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self._loop = loop
        #: What every job inherits of the worker's environment (no credentials), once.
        self._base_env = inherited_env(os.environ) if base_env is None else base_env
        self._runner = runner
        self._workspace = workspace
        self._reporter = reporter
        #: Every master, the one in use first (asked per job: the leader may have changed).
        self._masters: Callable[[], Sequence[str]] = \
            master_url if callable(master_url) else lambda: [master_url]
        self._kill_grace = kill_grace
        self._on_finished = on_finished
        #: Told when no job can start here any more (the executor is gone): the worker stops.
        self._on_fatal = on_fatal
        self._lock = threading.Lock()
        self._attempts: dict[Key, Attempt] = {}
        #: Attempts the master ended (a cancel): it names them again with every heartbeat
        #: until their results arrive, which is a kill grace for a job ignoring SIGTERM.
        self._ended: set[Key] = set()
        self._pool = ThreadPoolExecutor(max_workers=max(1, starters),
                                        thread_name_prefix="titan-start")

    # ------------------------------------------------------------------ Sink (I/O thread)

    def log(self, entry: dict[str, Any]) -> None:
        self._reporter.log(entry)

    def result(self, entry: dict[str, Any]) -> None:
        self._reporter.result(entry)

    def pressure(self, key: Key, _paused: bool) -> None:
        """Pause reading attempt ``key``'s output, or go on (any thread; the reporter says
        when)."""
        self._loop.call(self._pause_output, key)

    def _pause_output(self, key: Key) -> None:
        # The reporter's state now, not the one it announced: a pause and a resume told from
        # two threads may be queued here in either order, and the last one to run must be
        # right (a resume run before its pause left a job paused for good).
        with self._lock:
            attempt = self._attempts.get(key)
        if attempt is not None:
            attempt.pause_output(self._reporter.output_paused(key))

    def finished(self, attempt: Attempt) -> None:
        with self._lock:
            self._attempts.pop(attempt.key, None)
            self._ended.discard(attempt.key)
        self._on_finished(attempt.key)

    # ------------------------------------------------------------------ any thread

    def running(self) -> list[Key]:
        """The (id, attempt) of every attempt not finished yet, starting ones included."""
        with self._lock:
            return list(self._attempts)

    def __contains__(self, key: Key) -> bool:
        with self._lock:
            return key in self._attempts

    def start(self, assignment: Assignment) -> bool:
        """Begin running ``assignment``; False if that attempt is already running here."""
        attempt: Attempt
        if services.is_service(assignment.job_type):
            attempt = ServiceAttempt(
                assignment, loop=self._loop, sink=self, kill_grace=self._kill_grace,
                host=advertised_host(self._masters()[0]), report=self._reporter.service,
                relaunch=self._relaunch)
        else:
            attempt = Attempt(assignment, loop=self._loop, sink=self, kill_grace=self._kill_grace)
        with self._lock:
            if attempt.key in self._attempts:
                return False
            self._attempts[attempt.key] = attempt
        if not self._start_now(attempt):
            self._pool.submit(self._launch, attempt)
        return True

    def cancel(self, key: Key, reason: str = CANCELLED, why: str = "cancelled") -> bool:
        """Kill attempt ``key`` (its result is still reported); False if it is not here.
        ``why``: the master's words, for the log."""
        with self._lock:
            attempt = self._attempts.get(key)
            again = key in self._ended
            if attempt is not None:
                self._ended.add(key)
        if attempt is None:
            return False
        if again:  # being killed already: said once, signalled once (Attempt.kill)
            return True
        # A warning: at the default level the worker said nothing when it killed a process
        # the master had given to another worker after a network cut (a fleet QA pass).
        log.warning("the master ended job %s attempt %d (%s): killing it",
                    attempt.assignment.ref or key[0], key[1], why)
        self._loop.call(attempt.kill, reason)
        return True

    def stop(self, key: Key, grace: float) -> bool:
        """Stop service attempt ``key`` gracefully: SIGTERM, SIGKILL ``grace`` seconds later
        (a repeat changes nothing); False if it is not here."""
        with self._lock:
            attempt = self._attempts.get(key)
        if attempt is None:
            return False
        if attempt.kill_reason is None:
            log.info("stopping service %s attempt %d (grace %g s)",
                     attempt.assignment.ref or key[0], key[1], grace)
        self._loop.call(attempt.kill, STOP_REQUESTED, grace)
        return True

    def release_services(self) -> None:
        """The worker drains: its services are stopped like on request and reported
        released, so the master starts them on another worker (a service never ends by
        itself: a drain would otherwise wait for it for ever)."""
        with self._lock:
            held = [a for a in self._attempts.values() if isinstance(a, ServiceAttempt)]
        for attempt in held:
            grace = float(attempt.settings["stop_grace"])
            self._loop.call(attempt.kill, RELEASED, grace)

    def stop_all(self, reason: str) -> None:
        """Kill every attempt as a cancel does (SIGTERM to its group, SIGKILL after the
        grace), including those still starting."""
        with self._lock:
            attempts = list(self._attempts.values())
        for attempt in attempts:
            self._loop.call(attempt.kill, reason)

    def kill_all(self) -> None:
        """SIGKILL every attempt's process group (the worker is stopping hard)."""
        with self._lock:
            attempts = list(self._attempts.values())
        for attempt in attempts:
            self._loop.call(attempt.kill_now)

    def close(self) -> None:
        # A start under way ends (the worker's calls give up once it stops) before the I/O
        # loop it hands the process to is closed: left running, it met a closed loop and
        # its job was dropped without a word until its lease ran out.
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ the fast path

    def _env(self, attempt: Attempt, project_dir: Path | None) -> dict[str, str]:
        masters = list(self._masters())
        env = job_env(attempt.assignment, master_url=masters[0], master_urls=masters,
                      workspace=self._workspace.shared, project_dir=project_dir,
                      base=self._base_env)
        env.update(attempt.extra_env())
        return env

    def _start_now(self, attempt: Attempt) -> bool:
        """Start a Python job whose script is already here from a zygote that is up, on the
        calling thread and without waiting for the fork (the job's process is attached on
        the I/O thread when the zygote answers). False for anything else — archives, a script
        to fetch, no zygote — which the starter threads prepare (they may block)."""
        a = attempt.assignment
        if a.is_archive or not a.script_sha256 or attempt.kill_reason is not None:
            return False
        try:
            script = self._workspace.cached(a.filename, a.script_sha256)
            if script is None:
                return False
            env = self._env(attempt, script.project_dir)
            spec = LaunchSpec(script=script.path, args=list(a.args), cwd=self._workspace.shared,
                              env=env, sys_path=list(script.sys_path), runner=a.runner,
                              project_dir=script.project_dir, requirement=a.requirement,
                              source=script.source)

            def launched(result: Launched | None) -> None:  # I/O thread
                if result is None:  # the zygote refused or died: the slow path decides
                    try:
                        self._pool.submit(self._launch, attempt)
                    except RuntimeError:  # the pool is shut: the worker is going away
                        attempt.fail_to_start("the worker stopped before the job started", True)
                else:
                    attempt.attach(result)

            return self._runner.start_now(spec, launched)
        except (errors.TitanError, OSError):
            return False  # the starter thread meets it again and reports it properly

    # ------------------------------------------------------------------ starter threads

    def _relaunch(self, attempt: ServiceAttempt) -> None:
        """Start a service's next incarnation (I/O thread): prepared like a first start."""
        try:
            self._pool.submit(self._launch, attempt)
        except RuntimeError:  # the pool is shut: the worker is going away
            attempt.fail_to_start("the worker stopped before the service started again")

    def _launch(self, attempt: Attempt) -> None:
        a = attempt.assignment
        try:
            if attempt.kill_reason is not None:
                raise errors.TitanError("cancelled before it started")
            if a.is_archive:
                script = self._workspace.archive(a.filename, a.script_sha256)
            elif not a.script_sha256:
                raise errors.ValidationFailed("the assignment names no script_sha256")
            else:
                script = self._workspace.materialize(a.filename, a.script_sha256)
            env = self._env(attempt, script.project_dir)
            spec = LaunchSpec(script=script.path, args=list(a.args), cwd=self._workspace.shared,
                              env=env, sys_path=list(script.sys_path), runner=a.runner,
                              project_dir=script.project_dir, requirement=a.requirement,
                              source=script.source)
            launched = self._runner.spawn(spec)
        except errors.NotFound as exc:
            self._loop.call(attempt.fail_to_start, f"script not found on the master: {exc}")
        except errors.ExecutorGone as exc:
            # Its Ray cluster is gone (the worker stops at its next heartbeat): not the job's
            # failure either. Handed back, spending nothing.
            self._loop.call(attempt.fail_to_start, str(exc), True)
            # At once, not at the next heartbeat: a job handed back is queued again, and this
            # worker took it again and again (a thousand attempts in a few seconds).
            if self._on_fatal is not None:
                self._on_fatal(exc)
        except (errors.Unauthorized, errors.Forbidden) as exc:
            # The worker's own credential was refused (its token revoked): not the job's
            # failure. Handed back, it runs elsewhere without spending an attempt.
            self._loop.call(attempt.fail_to_start, f"this worker may not fetch the script: {exc}",
                            True)
        except (errors.TitanError, OSError) as exc:
            self._loop.call(attempt.fail_to_start, str(exc))
        except Exception as exc:  # a bug here must still end as a reported failure
            log.exception("starting job %s failed", a.ref or a.id)
            self._loop.call(attempt.fail_to_start, f"{type(exc).__name__}: {exc}")
        else:
            self._loop.call(attempt.attach, launched)
