"""How a fresh interpreter runs a script from the blob it was given, as ``python script.py``.

A script in ``shared/`` may be rewritten by the time a new interpreter opens it: two projects'
``main.py`` share that path (see :mod:`titan.worker.workspace`). A forked job reads its code
from the content-addressed blob (:mod:`titan.worker.child`); a job run by a fresh interpreter
(``runner="subprocess"``, or any Python job while the zygote is down) is started as
``python -c BOOTSTRAP <script> <fd> <args...>``, the blob's bytes waiting in a pipe it
inherits as ``<fd>`` (a pipe, not the blob's path: a job under ``--sandbox`` or ``--run-as``
need not be able to read the worker's cache). The bootstrap reads them, closes the pipe and
runs them
as ``__main__`` with ``__file__`` and ``sys.argv`` those of the script, and ends as ``python
script.py`` does (tracebacks without its own frame, quoting the code that ran; an uncaught
Ctrl-C by SIGINT).

The import path starts with the script's folder only when that folder is its own (an uploaded
project's, :func:`own_folder`). A plain script's is ``shared/``, where any project's files land:
first on the path, a job's ``json.py`` or ``signal.py`` stood in for that module in every other
job of the worker, so there it comes last, after the standard library and installed packages
(sibling helpers still import; nothing installed is shadowed).

The bootstrap imports nothing the interpreter has not loaded at start-up (``sys``, ``os``),
but on its error path, so a fresh job costs what ``python script.py`` costs. A shell script
is handed to bash as its command string (:func:`bash_argv`), with ``$0`` the script's path.
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
    script, fd, own = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    sys.argv[:4] = [script]
    sys.path[0:1] = [os.path.dirname(script)] if own else []
    if not own:
        sys.path.append(os.path.dirname(script))
        said = {}  # imports found there named on stderr (titan/worker/shared_imports.py)
        with open(@WATCH@, "rb") as fh:
            exec(compile(fh.read(), @WATCH@, "exec", dont_inherit=True), said)
        said["watch"](os.path.dirname(script))
    with open(fd, "rb") as fh:
        code = fh.read()
    main = sys.modules["__main__"]
    for name in [n for n in vars(main) if n not in ("__name__", "__builtins__")]:
        delattr(main, name)
    from importlib.machinery import SourceFileLoader
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
        lines = code.decode("utf-8", "replace").splitlines(keepends=True)
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


#: ``python script.py`` with the script's folder last on the import path (a plain script
#: too large for a pipe): run by runpy, from its path.
_RUN_PATH = ("import os, runpy, sys; sys.argv = sys.argv[1:]; sys.path[0:1] = []; "
             "sys.path.append(os.path.dirname(sys.argv[0])); said = {}; "
             "exec(open(@WATCH@, 'rb').read(), said); "
             "said['watch'](os.path.dirname(sys.argv[0])); del said; "
             "runpy.run_path(sys.argv[0], run_name='__main__')"
             ).replace("@WATCH@", repr(shared_imports.__file__))


def own_folder(project_dir: object) -> bool:
    """Whether a script's folder goes first on its import path, as ``python script.py`` puts
    it: inside an uploaded project (``project_dir`` set), whose folder holds that project's
    files only. A plain script's folder goes last."""
    return project_dir is not None


def python_argv(python: str, script: Path, code_fd: int, args: list[str],
                own: bool) -> list[str]:
    """The command line that runs the code waiting in pipe ``code_fd`` (:func:`code_pipe`) as
    ``script`` in a fresh interpreter; ``own``: its folder is importable (:func:`own_folder`)."""
    return [python, "-c", BOOTSTRAP, str(script.absolute()), str(code_fd), "1" if own else "0",
            *args]


def path_argv(python: str, script: Path, args: list[str], own: bool) -> list[str]:
    """The command line that runs ``script`` from its path (a script too large for a pipe):
    ``python script.py``, its folder last on the import path when it is not its own."""
    if own:
        return [python, str(script), *args]
    return [python, "-c", _RUN_PATH, str(script), *args]


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
