"""Starting a job's process: forked from the warm zygote, or a fresh subprocess.

:class:`Runner` is the local executor (``--executor local``, the default; the interface is
:mod:`titan.worker.executor`). ``runner: auto`` forks a zygote for a ``.py`` script — the lean
one when everything the script imports is loaded there (:mod:`titan.worker.imports`), else the
full one — and uses a subprocess for anything else; ``fork`` always forks (the file is Python,
whatever its name); ``subprocess`` asks for a fresh interpreter. A fork that cannot happen
(zygote down, fork refused) falls back to a subprocess, so the fast path is never a reason for
a job to fail.

Either way the job's stdout and stderr are the write ends of two pipes created here; the
worker keeps the read ends (non-blocking, for the I/O loop) and closes its copies of the
write ends, so end-of-file on a pipe means every process of the job has closed it.

A job does not outlive its worker, however the worker dies (``kill -9`` included): a forked
job's zygote sees its worker go and kills its jobs; a subprocess gets the kernel's
parent-death signal, SIGKILL. Otherwise it ran on, unseen, while its lease expired and the
master ran the job again elsewhere. A fresh interpreter sets that signal itself, first thing
(:mod:`titan.worker.fresh`), so ``subprocess`` starts it with vfork; anything else gets it
from a pre-exec hook (:func:`_dies_with_worker`), which makes ``subprocess`` fork the whole
worker instead: a shell script or a binary (nothing of Titan's runs in it after exec, and
bash cannot make the call), a job under ``--sandbox`` (whose rules must be in place before
exec) and one under ``--run-as`` (Popen forks to switch users anyway; and the job enters a
Landlock domain of its own before exec, :mod:`titan.worker.isolation`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from titan import errors
from titan.worker import fresh, imports
from titan.worker.assignment import inherited_env
from titan.worker.executor import Executor, Launched, LaunchSpec
from titan.worker.forkserver import ForkedProcess, ForkFailed, ForkServer
from titan.worker.isolation import Isolation
from titan.worker.loop import IOLoop
from titan.worker.process import PopenProcess, Process
from titan.worker.settings import zygote_lean

log = logging.getLogger("titan.worker")

#: After the zygote fails to start, jobs use subprocesses for this long before a retry.
ZYGOTE_RETRY_SECONDS = 30.0
#: A zygote that neither forks nor refuses within this long is taken as hung.
FORK_TIMEOUT = 10.0


#: prctl(2) option: the signal a process gets when the thread that started it ends.
_PR_SET_PDEATHSIG = 1
# Loaded here, in the worker: a subprocess's pre-exec hook runs between fork and exec, where
# loading a library is not safe; calling one already loaded is a system call.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _dies_with_worker(then: Callable[[], None] | None) -> Callable[[], None] | None:
    """A subprocess's pre-exec hook: SIGKILL once the thread that starts it ends, which is
    when this worker process ends (the starter threads live as long as it does:
    :mod:`titan.worker.supervisor`), and
    ``then`` (the sandbox's half). Only the job's own process: what it starts in turn is
    left to its process group's kill on a cancel or timeout (docs/security.md)."""
    libc = _LIBC
    if libc is None:
        return then
    worker = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != worker:  # the worker died before the line above: nobody's job
            os._exit(137)
        if then is not None:
            then()
    return hook


class Runner(Executor):
    """The local executor: starts job processes on this machine; owns the zygote and
    restarts it when it dies."""

    def __init__(self, loop: IOLoop, *, use_zygote: bool = True,
                 python: str = sys.executable, isolation: Isolation | None = None,
                 env: dict[str, str] | None = None, spares: int = 0) -> None:
        #: Checked first: a bad value stops the worker before it starts anything.
        self._lean = zygote_lean()
        self._loop = loop
        self._python = python
        self._use_zygote = use_zygote
        self.isolation = isolation or Isolation()
        self.isolation.warm()  # subprocesses' pre-exec hook then only makes syscalls
        #: The zygote's own environment: already free of credentials (its initial block is
        #: what every forked job reads back from /proc/self/environ).
        self._env = env
        self.base_env = inherited_env(os.environ) if env is None else env
        #: The full zygote (SDK, httpx, recorder preloaded) and the lean one (what a child
        #: itself needs): a script whose imports are all in the lean one is forked from it.
        self._zygotes: dict[bool, ForkServer | None] = {False: None, True: None}
        #: Children each zygote forks ahead while the worker is idle (titan.worker.zygote).
        self._spares = spares
        self._zygote_lock = threading.Lock()
        self._retry_at = {False: 0.0, True: 0.0}

    def start(self) -> None:
        """Start the zygotes now, so the first Python job is already fast."""
        if self._use_zygote:
            self._zygote_or_none(lean=False)
            if self._lean:
                self._zygote_or_none(lean=True)

    @property
    def zygote_pid(self) -> int | None:
        """The running (full) zygote's pid, if there is one."""
        zygote = self._zygotes[False]
        return zygote.pid if zygote is not None and zygote.alive else None

    @property
    def lean_zygote_pid(self) -> int | None:
        """The running lean zygote's pid, if there is one."""
        zygote = self._zygotes[True]
        return zygote.pid if zygote is not None and zygote.alive else None

    def close(self) -> None:
        with self._zygote_lock:
            zygotes = [z for z in self._zygotes.values() if z is not None]
            self._zygotes = {False: None, True: None}
        for zygote in zygotes:
            zygote.close()

    def _zygote_or_none(self, lean: bool) -> ForkServer | None:
        with self._zygote_lock:
            zygote = self._zygotes[lean]
            if zygote is not None and zygote.alive:
                return zygote
            if not self._use_zygote or time.monotonic() < self._retry_at[lean]:
                return None
            kind = "lean zygote" if lean else "zygote"
            if zygote is not None:
                log.warning("%s is gone; starting a new one", kind)
                zygote.close(timeout=1.0)
            zygote = ForkServer(self._loop, self._python, isolation=self.isolation,
                                env=self._env, lean=lean, spares=self._spares)
            try:
                zygote.start()
            except ForkFailed as exc:
                log.warning("%s (%s); Python jobs %s for now", exc, kind,
                            "use the full zygote" if lean else "run as subprocesses")
                self._zygotes[lean] = None
                self._retry_at[lean] = time.monotonic() + ZYGOTE_RETRY_SECONDS
                return None
            self._zygotes[lean] = zygote
            return zygote

    def _zygote_for(self, spec: LaunchSpec, start: bool = True) -> ForkServer | None:
        """The lean zygote when everything the script imports is loaded there, else the full
        one (and the full one when the lean one is down, and the other way round). With
        ``start`` false, only a zygote that is up now (starting one takes a while)."""
        def up(lean: bool) -> ForkServer | None:
            if start:
                return self._zygote_or_none(lean)
            zygote = self._zygotes[lean]
            return zygote if zygote is not None and zygote.alive else None

        lean = up(True) if self._lean else None
        if lean is not None and imports.fits(spec.script, lean.modules, lean.packages):
            return lean
        return up(False) or lean

    def spawn(self, spec: LaunchSpec) -> Launched:
        """Start ``spec``'s process; raises :class:`~titan.errors.TitanError` if it cannot."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            process: Process | None = None
            forked = False
            if spec.wants_fork:
                zygote = self._zygote_for(spec)
                if zygote is not None:
                    try:
                        process = zygote.spawn(_fork_request(spec), out_w, err_w,
                                               timeout=FORK_TIMEOUT)
                        forked = True
                    except ForkFailed as exc:
                        log.warning("%s; running %s as a subprocess", exc, spec.script.name)
            if process is None:
                process = self._popen(spec, out_w, err_w)
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            # The job (or the zygote, which closes them after forking) holds the write ends;
            # the worker's copies would keep the pipes from ever reaching end-of-file.
            os.close(out_w)
            os.close(err_w)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        return Launched(process, out_r, err_r, forked)

    def fork_now(self, spec: LaunchSpec, launched: Callable[[Launched | None], None]) -> bool:
        """Start ``spec`` from a zygote that is already up, without waiting for the fork:
        ``launched`` gets the process on the I/O thread (None if the zygote could not fork
        it: then :meth:`spawn` is the way, with its fallbacks). False, having started
        nothing, when no zygote is up for it or ``spec`` is not Python."""
        if not spec.wants_fork:
            return False
        zygote = self._zygote_for(spec, start=False)
        if zygote is None:
            return False
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()

        def started(proc: ForkedProcess | None, _error: str | None) -> None:
            if proc is None:
                for fd in (out_r, err_r):
                    os.close(fd)
                launched(None)
                return
            launched(Launched(proc, out_r, err_r, forked=True))

        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        try:
            zygote.request(_fork_request(spec), out_w, err_w, started, timeout=FORK_TIMEOUT)
        except ForkFailed:
            for fd in (out_r, err_r):
                os.close(fd)
            return False
        finally:
            os.close(out_w)  # the zygote holds them now (and the child after it)
            os.close(err_w)
        return True

    # The executor's fast path is the fork that does not wait (no wrapper: it is measured).
    start_now = fork_now

    def _popen(self, spec: LaunchSpec, out_w: int, err_w: int) -> PopenProcess:
        env = dict(spec.env)
        script = str(spec.script)
        code_fd = None
        iso = self.isolation
        # A fresh interpreter ties itself to this worker (titan.worker.fresh): no pre-exec
        # hook, so Popen can vfork rather than copy the whole worker (the module docstring).
        tied = (spec.runs_python and _LIBC is not None and not iso.sandboxed
                and iso.uid is None and iso.gid is None)
        parent = os.getpid() if tied else 0
        if spec.runs_python:
            # From the blob it was given when there is one: shared/<name> may hold another
            # project's script of that name by now (titan.worker.fresh).
            code = fresh.read_code(spec.source)
            if code is not None:
                code_fd = fresh.code_pipe(code)
            own = fresh.own_folder(spec.project_dir)
            argv = (fresh.path_argv(self._python, spec.script, spec.args, own, parent)
                    if code_fd is None else
                    fresh.python_argv(self._python, spec.script, code_fd, spec.args, own,
                                      parent))
            if spec.sys_path:
                env["PYTHONPATH"] = os.pathsep.join(
                    filter(None, [*spec.sys_path, env.get("PYTHONPATH")])
                )
        elif spec.script.suffix == ".sh":
            argv = fresh.bash_argv(spec.script, fresh.read_code(spec.source), spec.args)
        else:
            argv = [script, *spec.args]
        try:
            # The user is dropped by Popen itself (in C, thread-safe); the hook makes a few
            # syscalls, in the child before the job's program runs.
            popen = subprocess.Popen(
                argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=out_w,
                stderr=err_w, start_new_session=True, close_fds=True,
                pass_fds=() if code_fd is None else (code_fd,), user=iso.uid, group=iso.gid,
                extra_groups=list(iso.groups) if iso.uid is not None else None,
                preexec_fn=None if tied else
                _dies_with_worker(iso.restrict_only if iso.in_domain else None),
            )
        except OSError as exc:
            raise errors.TitanError(f"cannot start {spec.script.name}: {exc}") from None
        finally:
            if code_fd is not None:
                os.close(code_fd)  # the job holds it now
        return PopenProcess(popen)


def _fork_request(spec: LaunchSpec) -> dict[str, object]:
    return {
        "argv": [str(spec.script), *spec.args],
        "cwd": str(spec.cwd),
        "env": spec.env,
        "script": str(spec.script),
        "source": None if spec.source is None else str(spec.source),
        "sys_path": spec.sys_path,
        "own_folder": fresh.own_folder(spec.project_dir),
    }
