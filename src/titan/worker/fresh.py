"""How a fresh interpreter runs a script from the blob it was given, as ``python script.py``.

A script in ``shared/`` may be rewritten by the time a new interpreter opens it: two projects'
``main.py`` share that path (see :mod:`titan.worker.workspace`). A forked job reads its code
from the content-addressed blob (:mod:`titan.worker.child`); a job run by a fresh interpreter
(``runner="subprocess"``, or any Python job while the zygote is down) is started as
``python -c BOOTSTRAP <script> <fd> <own> <parent> <args...>``, the blob's bytes waiting in a
pipe it inherits as ``<fd>`` (a pipe, not the blob's path: a job under ``--sandbox`` or
``--run-as`` need not be able to read the worker's cache; ``-`` when the script is read from
its path). The bootstrap reads them, closes the pipe and runs them as ``__main__`` with
``__file__`` and ``sys.argv`` those of the script, and ends as ``python script.py`` does
(tracebacks without its own frame, quoting the code that ran; an uncaught Ctrl-C by SIGINT).

The import path starts with the script's folder only when that folder is its own (an uploaded
project's, :func:`own_folder`). A plain script's is ``shared/``, where any project's files land:
first on the path, a job's ``json.py`` or ``signal.py`` stood in for that module in every other
job of the worker, so there it comes last, after the standard library and installed packages
(sibling helpers still import; nothing installed is shadowed).

A job started by the worker dies with it (``kill -9`` included). The kernel's parent-death
signal does it, and the bootstrap sets it itself, as its first act, given the worker's pid
(``<parent>``; 0: not asked, or set already). Set by a pre-exec hook instead, it made
``subprocess`` fork the whole worker and run Python between fork and exec, where without a
hook it uses vfork: trivial ``runner="subprocess"`` jobs went from ~29 to ~22 ms (p50, submit
to result) and from ~66 to ~102 jobs/s (bench/side_by_side.py, 2-core VM; issue 17). A worker that died before the ``prctl`` is seen at once (the interpreter's parent
is no longer the worker) and the job exits 137 before running anything. The signal comes when
the *thread* that started the process ends, as with the hook: the worker starts jobs on
starter threads that live as long as it does (:mod:`titan.worker.supervisor`). It is reached
through ``_ctypes``, not ``ctypes``: importing ``ctypes`` costs a fresh job ~2 ms of CPU.

Beyond that, the bootstrap imports nothing the interpreter has not loaded at start-up
(``sys``, ``os``) but, on its error path, what prints a traceback, so a fresh job costs
about what ``python script.py`` costs. A shell script is handed to bash as its command string
(:func:`bash_argv`), with ``$0`` the script's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from titan.worker import shared_imports

#: Linux refuses one argument longer than this (MAX_ARG_STRLEN): a longer shell script is
#: run from its path, as before.
_MAX_ARG = 128 * 1024 - 1

BOOTSTRAP = r"""
import sys, os
def _titan_main(sys=sys, os=os):  # its own names: __main__'s are cleared for the script
    script, fd, own, parent = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
    if parent:  # die with the worker: prctl(PR_SET_PDEATHSIG, SIGKILL), first of all
        try:
            import _ctypes
        except ImportError:  # a job interpreter built without ctypes: run, untied
            _ctypes = None
        if _ctypes is not None:
            class prctl(_ctypes.CFuncPtr):
                _flags_ = _ctypes.FUNCFLAG_CDECL
            libc = type("libc", (), {"_handle": _ctypes.dlopen(None, os.RTLD_NOW)})
            prctl(("prctl", libc))(1, 9, 0, 0, 0)
            if os.getppid() != parent:  # the worker died before that: nobody's job any more
                os._exit(137)
    sys.argv[:5] = [script]
    if not sys.flags.safe_path:  # -c put "" first (under -P / PYTHONSAFEPATH, nothing)
        sys.path[0:1] = [os.path.dirname(script)] if own else []
    # importlib.machinery's loader, from the module loaded at start-up (importing that: 0.5 ms)
    SourceFileLoader = sys.modules["_frozen_importlib_external"].SourceFileLoader
    if not own:
        sys.path.append(os.path.dirname(script))
        said = {}  # imports found there named on stderr (titan/worker/shared_imports.py)
        exec(SourceFileLoader("titan_shared_imports", @WATCH@).get_code(None), said)
        said["watch"](os.path.dirname(script))
    with open(script if fd == "-" else int(fd), "rb") as fh:
        code = fh.read()
    main = sys.modules["__main__"]
    for name in [n for n in vars(main) if n not in ("__name__", "__builtins__")]:
        delattr(main, name)
    main.__dict__.update(__file__=script, __cached__=None, __doc__=None, __package__=None,
                         __spec__=None, __loader__=SourceFileLoader("__main__", script))
    try:
        compiled = compile(code, script, "exec", dont_inherit=True)
        exec(compiled, main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        import linecache, signal, traceback
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        if isinstance(exc, SyntaxError) and exc.filename == script:
            tb = None
        import io, tokenize
        try:  # quoted in the script's own encoding (its coding cookie), as python does
            encoding = tokenize.detect_encoding(io.BytesIO(code).readline)[0]
        except SyntaxError:
            encoding = "utf-8"
        lines = code.decode(encoding, "replace").splitlines(keepends=True)
        linecache.cache[script] = (len(code), None, lines, script)
        hook = sys.excepthook
        (traceback.print_exception if hook is sys.__excepthook__ else hook)(
            type(exc), exc.with_traceback(tb), tb)
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        raise SystemExit(1) from None
_titan_main()
""".replace("@WATCH@", repr(shared_imports.__file__))


def own_folder(project_dir: object) -> bool:
    """Whether a script's folder goes first on its import path, as ``python script.py`` puts
    it: inside an uploaded project (``project_dir`` set), whose folder holds that project's
    files only. A plain script's folder goes last."""
    return project_dir is not None


def python_argv(python: str, script: Path, code_fd: int, args: list[str], own: bool,
                parent: int = 0) -> list[str]:
    """The command line that runs the code waiting in pipe ``code_fd`` (:func:`code_pipe`) as
    ``script`` in a fresh interpreter; ``own``: its folder is importable (:func:`own_folder`);
    ``parent``: the pid of the worker it dies with (0: none, or set by a pre-exec hook)."""
    return _bootstrap(python, script, str(code_fd), args, own, parent)


def path_argv(python: str, script: Path, args: list[str], own: bool,
              parent: int = 0) -> list[str]:
    """The command line that runs ``script`` from its path (a script too large for a pipe, or
    in an uploaded project): ``python script.py``, its folder last on the import path when it
    is not its own; ``parent`` as for :func:`python_argv`."""
    if own and not parent:
        return [python, str(script), *args]
    return _bootstrap(python, script, "-", args, own, parent)


def _bootstrap(python: str, script: Path, code: str, args: list[str], own: bool,
               parent: int) -> list[str]:
    return [python, "-c", BOOTSTRAP, str(script.absolute()), code, "1" if own else "0",
            str(parent), *args]


def read_code(source: Path | None) -> bytes | None:
    """The bytes of the blob a script was written from; None if there is none to read."""
    if source is None:
        return None
    try:
        return source.read_bytes()
    except OSError:
        return None


def code_pipe(data: bytes) -> int | None:
    """The read end of a pipe holding all of ``data`` (its write end closed), or None when it
    does not fit in a pipe's buffer (up to ``/proc/sys/fs/pipe-max-size``, 1 MiB by
    default): then the script is run from its path."""
    read, write = os.pipe()
    try:
        if len(data) > 65536:
            fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, len(data))
        os.set_blocking(write, False)
        view = memoryview(data)
        while view:
            view = view[os.write(write, view):]
    except OSError:  # too big for a pipe (EPERM, EAGAIN): the path it is
        os.close(read)
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(write)
    return read


def bash_argv(script: Path, code: bytes | None, args: list[str]) -> list[str]:
    """The command line that runs a shell script: ``code`` when there is some and it can be
    one argument (``bash -c CODE SCRIPT ARGS``: ``$0`` is the script's path), else the path."""
    if code is not None and len(code) <= _MAX_ARG and b"\0" not in code:
        return ["bash", "-c", code.decode("utf-8", "surrogateescape"), str(script), *args]
    return ["bash", str(script), *args]
