"""A forked job's side of the zygote: from fork to ``os._exit``, running the script as
``python script.py`` would.

Everything here runs in the child, after :func:`os.fork` in :mod:`titan.worker.zygote`, but
:func:`premake`, which the zygote runs once before it forks anything (the job's streams, made
ahead for every child). In the child: first :func:`leave_zygote` (the zygote's descriptors and
signal handlers are not the job's), then :func:`prepare` (what every job's process does before
it knows its job: its own session, stdin on /dev/null, line-buffered streams on descriptors 1
and 2), then :func:`run_job` (stdout/stderr on the job's pipes, isolation, the script as
``__main__``, the interpreter's shutdown replayed). A spare child — forked ahead of time,
while the worker is idle — runs the first two at once and the last when its job arrives, so a
job handed to it pays only for what depends on the job.
"""

from __future__ import annotations

import _signal
import contextlib
import io
import os
import signal
import stat
import sys
import traceback
from types import CodeType
from typing import Any

from titan.worker import script_cache, shared_imports


def exit_code_of(exc: SystemExit) -> int:
    """The process exit code Python gives a SystemExit (``None`` → 0, a message → 1)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        # Past a C long, Python's own exit code is -1, i.e. 255; within one, its low byte.
        return code & 0xFF if -2**63 <= code < 2**63 else 255
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _user_traceback(exc: BaseException, script: str) -> Any:
    """The traceback from the script's first frame on: the zygote's frames mean nothing to
    users (``python script.py`` would not show them)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    if tb is None and isinstance(exc, SyntaxError) and exc.filename == script:
        return None  # the script did not compile: Python shows where, with no traceback
    return tb or exc.__traceback__


def _text_stream(fd: int) -> io.TextIOWrapper:
    # Line-buffered, so each line reaches the pipe (and the master) as it is printed.
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


def _apply_environ(unset: list[str], changed: dict[str, str]) -> None:
    # The worker sends only what differs from the zygote's environment (it learned that from
    # "ready"): reading every variable here would touch, and so copy, the pages of os.environ
    # and its strings (~0.25 ms a job); most of a job's environment is the zygote's own.
    current = os.environ
    for name in unset:
        current.pop(name, None)
    for name, value in changed.items():
        current[name] = value


def _run_main(script: str, source: bytes | None = None, code: CodeType | None = None) -> None:
    """Execute ``script`` as the ``__main__`` module, as ``python script.py`` does;
    ``source``: its code, when read already (from the blob it was written from); ``code``:
    that source compiled already (by the zygote, :mod:`titan.worker.script_cache`).

    Not ``runpy.run_path``: it probes import hooks for the path (a zip? a directory?) and
    swaps ``__main__`` back afterwards, which costs several ms per fork in page copies and
    leaves pickling of ``__main__`` classes broken for the job's own threads at exit.
    """
    import builtins
    import types
    from importlib.machinery import SourceFileLoader

    if code is None:
        if source is None:
            with open(script, "rb") as fh:
                source = fh.read()
        code = compile(source, script, "exec", dont_inherit=True)
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=script, __builtins__=builtins, __cached__=None,
                           __loader__=SourceFileLoader("__main__", script), __spec__=None,
                           __package__=None)
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def run_script(request: dict[str, Any], source: bytes | None = None,
               compiled: CodeType | None = None) -> int:
    """Run the request's script as ``__main__`` the way ``python script.py`` would.

    Called in the forked child after its file descriptors are in place; returns the exit
    code. The interpreter's own shutdown is replayed (non-daemon threads joined, ``atexit``
    handlers run, streams flushed) because the child leaves with ``os._exit``.
    """
    os.chdir(request["cwd"])
    _apply_environ(request["env_unset"], request["env_set"])
    script = os.path.abspath(request["script"])
    sys.argv = [str(a) for a in request["argv"]]
    extra = list(request.get("sys_path") or [])
    # Not the --run-as jobsite/ folder: it is there for the interpreters the job starts.
    extra += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
              if p and p != shared_imports.site_dir()]
    # The script's folder first only when it is its own (a project's): shared/ holds any
    # project's files, and first a job's json.py stood in for that module in the others
    # (titan.worker.fresh). There it comes last, after everything installed.
    own = [os.path.dirname(script)] if request.get("own_folder") else []
    sys.path[0:1] = own
    for i, entry in enumerate(p for p in extra if p not in sys.path):
        sys.path.insert(len(own) + i, entry)
    if not own and os.path.dirname(script) not in sys.path:
        sys.path.append(os.path.dirname(script))
        shared_imports.watch(os.path.dirname(script))
    if os.environ.get("TITAN_REPLAY"):
        # A replay's job: its sockets are guarded before its own code runs (leaks).
        from titan.trace import replay

        replay.active()
    code = 0
    try:
        _run_main(script, source,
                  compiled if compiled is not None and compiled.co_filename == script else None)
    except SystemExit as exc:
        code = exit_code_of(exc)
    except BaseException as exc:  # noqa: BLE001 - the interpreter reports anything uncaught
        tb = _user_traceback(exc, script)
        exc = exc.with_traceback(tb)  # the default hook prints exc.__traceback__: trim both
        hook = sys.excepthook
        if source is not None and hook is sys.__excepthook__:
            # The traceback quotes the code that ran, whatever the path holds now: the default
            # hook (in C) reads the file, traceback's reads linecache, primed with the code.
            import linecache

            lines = source.decode("utf-8", "replace").splitlines(keepends=True)
            linecache.cache[script] = (len(source), None, lines, script)
            hook = traceback.print_exception
        hook(type(exc), exc, tb)
        # Python leaves on an uncaught Ctrl-C by that signal (its parent sees -2), else 1.
        code = -signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 1
    # Only a job that imported threading can have threads to join: the lean zygote does not
    # load it (its after-fork hook would cost every child ~0.3 ms of copy-on-write faults).
    threading = sys.modules.get("threading")
    shutdown = getattr(threading, "_shutdown", None)
    # With no other thread and nothing registered to run at threading's exit there is
    # nothing to join (what the interpreter's exit would do costs a job ~50 us in faults).
    if shutdown is not None and (threading.active_count() > 1  # type: ignore[union-attr]
                                 or getattr(threading, "_threading_atexits", True)):
        with contextlib.suppress(BaseException):
            shutdown()  # join non-daemon threads, as interpreter exit does
    import atexit

    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    return code


_PR_SET_CHILD_SUBREAPER = 36
_libc: Any = None  # loaded by the zygote (it is a subreaper too): its children find it ready


def become_subreaper() -> None:
    """Orphaned descendants of this process's children are reparented to it, not to init or
    to a subreaper above it (``prctl(PR_SET_CHILD_SUBREAPER)``; not inherited)."""
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def leave_zygote(own_fds: list[int]) -> None:
    """Drop what belongs to the zygote: its descriptors and its signal handlers."""
    # Unhook the wakeup fd before closing it: a signal in between would be written to
    # whatever file reuses that descriptor number.
    signal.set_wakeup_fd(-1)
    for fd in own_fds:
        os.close(fd)
    # The C functions under ``signal.signal``: its Python wrapper turns the handlers into
    # enum members, whose lookups cost a child ~25 copy-on-write faults (~0.1 ms of CPU).
    _signal.signal(_SIGCHLD, _signal.SIG_DFL)
    _signal.signal(_SIGTERM, _signal.SIG_DFL)
    _signal.signal(_SIGINT, _signal.default_int_handler)


_SIGCHLD, _SIGTERM, _SIGINT = int(signal.SIGCHLD), int(signal.SIGTERM), int(signal.SIGINT)


#: A job's streams, made once in the zygote (:func:`premake`) for every child it forks: stdin
#: (the zygote's own, when that reads /dev/null, as a job's must), and stdout and stderr over
#: descriptors 1 and 2 made while a pipe stood there, so they hold what they would had the
#: child made them over its job's pipes (not seekable). A child only puts its pipes on 1 and 2.
#: Making them in each child cost it ~0.3 ms of CPU, mostly in copy-on-write faults.
_premade: tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper] | None = None
#: The zygote's own sys.stdout and stderr (and the ``__stdout__`` pair), held in the zygote.
_zygote_streams: tuple[Any, ...] = ()


def premake() -> None:
    """Make the job streams ahead, in the zygote, before it forks anything (see ``_premade``);
    the zygote's own descriptors 1 and 2 are as they were afterwards. Without a stdin on
    /dev/null, nothing is made and each child makes its own (as before)."""
    global _premade, _zygote_streams
    # The zygote's own streams live on in it: a child that replaced them (prepare) dropped
    # their last reference and so freed them, ~30 copy-on-write faults of deallocation.
    _zygote_streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    stdin = sys.stdin
    try:
        null, zero = os.stat(os.devnull), os.fstat(0)
        if stdin is None or stdin.fileno() != 0 or not stat.S_ISCHR(zero.st_mode) \
                or zero.st_rdev != null.st_rdev:
            return
        saved = os.dup(1), os.dup(2)
    except (OSError, ValueError, AttributeError):
        return
    r, w = os.pipe()
    try:
        os.dup2(w, 1)
        os.dup2(w, 2)
        out, err = _text_stream(1), _text_stream(2)
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, r, w):
            os.close(fd)
    _premade = (stdin, out, err)  # type: ignore[assignment]


def waiting(on: bool) -> None:
    """A spare waits as SCHED_BATCH and runs its job as SCHED_OTHER. The zygote hands a burst
    of jobs to spares one by one; a spare it wakes that may preempt it (the kernel favours a
    task just woken) held up the hand-off of the next job while it started its own, on a
    machine with no core to spare. A batch task is not favoured so on waking. Same nice, same
    share of the CPU; only the wake-up differs."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: nothing to change
        os.sched_setscheduler(0, os.SCHED_BATCH if on else os.SCHED_OTHER, os.sched_param(0))


def prepare(out_fd: int | None = None, err_fd: int | None = None) -> None:
    """What a job's process does before it knows its job (a spare does it while it waits):
    with ``out_fd``/``err_fd``, the job's pipes go on descriptors 1 and 2 first; without
    (a spare), a pipe of its own holds their place until :func:`run_job` puts the job's there,
    so the streams made now see a pipe (not seekable, not a tty) as the job's will be.

    Its random numbers are its own already: the ``random`` module reseeds a forked child
    (``os.register_at_fork``), spares included."""
    # A process group of its own: cancel and timeout kill the whole group, grandchildren
    # included, and the zygote's group is never hit.
    os.setsid()
    # And the subreaper of what it starts: a process that leaves the group (setsid, a double
    # fork) is reparented to the job while it runs, and to the zygote only once it has ended,
    # so whatever the zygote finds among its children is a finished job's (titan.worker.
    # zygote: it killed those only while no job ran, and a busy zygote kept them for good).
    with contextlib.suppress(OSError, AttributeError):
        become_subreaper()
    if out_fd is None or err_fd is None:
        r, w = os.pipe()
        os.dup2(w, 1)
        os.dup2(w, 2)
        os.close(r)
        os.close(w)
    else:
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
    if _premade is not None:
        sys.stdin, sys.stdout, sys.stderr = _premade
    else:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the child's stdin, for its life
        sys.stdout = _text_stream(1)
        sys.stderr = _text_stream(2)
    # Code that writes to the "original" streams (faulthandler users, pdb) must stream too.
    setattr(sys, "__stdout__", sys.stdout)  # noqa: B010 - typeshed marks them Final
    setattr(sys, "__stderr__", sys.stderr)  # noqa: B010


#: ``run_job(held=...)`` not given: the child looks its script up itself (a spare).
_LOOK_UP: Any = object()


def run_job(request: dict[str, Any], out_fd: int, err_fd: int, isolation: Any = None, *,
            prepared: bool = False, held: Any = _LOOK_UP) -> None:
    """The job's life once it is known: never returns (the process leaves with its code).
    ``prepared``: :func:`prepare` ran already (a spare). ``held``: the zygote's compiled
    script for this request as it found it before the fork (:func:`script_cache.take`: the
    ``(source, code)`` pair, or None when it holds none)."""
    code = 1
    try:
        if prepared:
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
        else:
            prepare(out_fd, err_fd)
        # The code to run, from the blob it was written from (read while the worker's own
        # files are still readable): the shared path may hold another job's version by now.
        # Compiled by the zygote already, when an earlier job ran the same blob; else read
        # here, while the worker's own files are still readable.
        if held is _LOOK_UP:
            held = script_cache.lookup(request)
        source, compiled = held or (None, None)
        if source is None and request.get("source"):
            with open(request["source"], "rb") as fh:
                source = fh.read()
        if isolation is not None:
            # Before any of the job's code: a failure here fails the job rather than running
            # it less isolated than asked.
            isolation.apply()
        # Nothing of the zygote's may leak into the job (a fresh interpreter has fds 0-2).
        os.closerange(3, 65536)
        code = run_script(request, source, compiled)
    except BaseException:  # noqa: BLE001 - a failure here is the job's failure, not the zygote's
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
    finally:
        if code < 0:  # killed by a signal, as `python script.py` would be (run_script)
            with contextlib.suppress(BaseException):
                signal.signal(-code, signal.SIG_DFL)
                os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)
