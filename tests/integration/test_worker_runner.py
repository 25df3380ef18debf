"""Running real job processes: the zygote fast path, the subprocess path, kills and output.

Every test runs real scripts in real processes through the worker's own I/O loop, runner and
attempt; synchronization is on events with timeouts, never on sleeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attempt_sink import Collector
from titan.worker import fresh
from titan.worker.assignment import Assignment
from titan.worker.attempt import CANCELLED, Attempt
from titan.worker.loop import IOLoop
from titan.worker.runner import LaunchSpec, Runner

WAIT = 30.0
BOTH = pytest.mark.parametrize("kind", ["fork", "subprocess"])


@pytest.fixture(scope="module")
def loop() -> Iterator[IOLoop]:
    io_loop = IOLoop()
    io_loop.start()
    yield io_loop
    io_loop.stop()


@pytest.fixture(scope="module")
def runner(loop: IOLoop) -> Iterator[Runner]:
    r = Runner(loop, spares=2)  # jobs that find the zygote idle run in a spare
    r.start()
    assert r.zygote_pid is not None
    yield r
    r.close()


class Job:
    def __init__(self, loop: IOLoop, runner: Runner, workdir: Path) -> None:
        self.loop, self.runner, self.workdir = loop, runner, workdir

    def start(self, source: str, *, kind: str = "fork", args: tuple[str, ...] = (),
              name: str = "job.py", timeout: float | None = None, kill_grace: float = 30.0,
              env: dict[str, str] | None = None, sys_path: tuple[str, ...] = (),
              script: Path | None = None, now: bool = False,
              code_from: Path | None = None,
              project_dir: Path | None = None) -> tuple[Attempt, Collector, bool]:
        if script is None:
            script = self.workdir / name
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(textwrap.dedent(source))
        sink = Collector()
        attempt = Attempt(Assignment(id=1, attempt=1, job_id="j", filename=name,
                                     timeout=timeout),
                          loop=self.loop, sink=sink, kill_grace=kill_grace)
        spec = LaunchSpec(script=script, args=list(args), cwd=self.workdir,
                          env=dict(os.environ if env is None else env), sys_path=list(sys_path),
                          runner=kind, source=code_from, project_dir=project_dir)
        if now:  # the worker's fast path: attached on the I/O thread when the zygote answers
            assert self.runner.fork_now(spec, lambda got: attempt.attach(got) if got else
                                        attempt.fail_to_start("no fork"))
            return attempt, sink, True
        launched = self.runner.spawn(spec)
        self.loop.call(attempt.attach, launched)
        return attempt, sink, launched.forked

    def run(self, source: str, **kw: Any) -> Collector:
        _, sink, forked = self.start(source, **kw)
        _ = sink.outcome
        assert forked == (kw.get("kind", "fork") == "fork" and self.runner.zygote_pid is not None)
        return sink


@pytest.fixture
def job(loop: IOLoop, runner: Runner, tmp_path: Path) -> Job:
    return Job(loop, runner, tmp_path)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` has exited (waited on through a pidfd, no polling).

    End-of-file on the job's pipes comes when the kernel closes a dying process's files,
    a moment before it is marked exited: hence a wait, not a look.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- basics


@BOTH
def test_script_runs_as_main_with_argv_cwd_env(job: Job, tmp_path: Path, kind: str) -> None:
    sink = job.run("""
        import os, sys
        print("name", __name__)
        print("argv", sys.argv[1:])
        print("argv0", sys.argv[0])
        print("cwd", os.getcwd())
        print("env", os.environ["JOB_VAR"])
        print("path", sys.path[-1], sys.path.count(sys.path[-1]))
    """, kind=kind, args=("a b", "--x=1"), env={**os.environ, "JOB_VAR": "v1"})
    out = sink.stream("stdout")
    # A plain script's folder (the shared one) is on its import path last, once.
    assert out == ["name __main__", "argv ['a b', '--x=1']", f"argv0 {tmp_path / 'job.py'}",
                   f"cwd {tmp_path}", "env v1", f"path {tmp_path} 1"]
    ended = sink.outcome.pop("ended_at")  # when the process ended, by the worker's clock
    # and how long after the worker took the attempt, by its steady clock (what the master
    # adds to its own start: a worker's wrong wall clock does not zero a duration)
    elapsed = sink.outcome.pop("elapsed")
    assert sink.outcome == {"id": 1, "attempt": 1, "exit_code": 0, "error": None,
                            "timed_out": False}
    assert abs(time.time() - ended) < 60 and 0 < elapsed < 60



def test_a_stdlib_script_forks_from_the_lean_zygote_and_an_sdk_script_from_the_full(
        job: Job, runner: Runner) -> None:
    # Each child says who forked it: the lean zygote for a script whose imports are all
    # loaded there, the full one (SDK, httpx preloaded) for one that imports the SDK, and for
    # one whose imports cannot be known statically.
    assert runner.lean_zygote_pid is not None and runner.lean_zygote_pid != runner.zygote_pid
    lean = job.run("""
        import json, os
        from collections import deque
        print(os.getppid())
    """, name="lean.py")
    assert lean.stream("stdout") == [str(runner.lean_zygote_pid)]
    for name, source in (("sdk.py", "import os\nfrom titan.client import TitanClient\n"
                                    "print(os.getppid())"),
                         ("dynamic.py", "import importlib, os\n"
                                        "importlib.import_module('json')\nprint(os.getppid())")):
        full = job.run(textwrap.dedent(source), name=name)
        assert full.stream("stdout") == [str(runner.zygote_pid)], name


@BOTH
def test_job_environment_is_exactly_the_one_asked_for(job: Job, kind: str) -> None:
    # The zygote sends each child the difference from its own environment: a variable the
    # worker has and the job is not given must be gone, a changed one replaced, and the
    # next job must not inherit the previous job's variables.
    inherited = next(iter(os.environ))
    env = {k: v for k, v in os.environ.items() if k != inherited}
    env["PATH"] = "/job/bin:" + os.environ.get("PATH", "")
    env["ONLY_FIRST"] = "1"
    source = f"""
        import json, os
        print(json.dumps({{k: os.environ.get(k) for k in ({inherited!r}, "PATH", "ONLY_FIRST")}}))
    """
    first = json.loads(job.run(source, kind=kind, env=env).stream("stdout")[0])
    assert first == {inherited: None, "PATH": env["PATH"], "ONLY_FIRST": "1"}
    second = json.loads(job.run(source, kind=kind, name="again.py").stream("stdout")[0])
    assert second == {inherited: os.environ[inherited], "PATH": os.environ.get("PATH"),
                      "ONLY_FIRST": None}

@BOTH
@pytest.mark.parametrize(("source", "code", "stderr_has"), [
    ("print('ok')", 0, None),
    ("import sys; sys.exit(3)", 3, None),
    ("import sys; sys.exit('bad things')", 1, "bad things"),
    ("exit(4)", 4, None),
    ("raise ValueError('boom')", 1, "ValueError: boom"),
])
def test_exit_codes(job: Job, kind: str, source: str, code: int, stderr_has: str | None) -> None:
    sink = job.run(source, kind=kind)
    result = sink.outcome
    assert result["exit_code"] == code
    assert (result["error"] is None) == (code == 0)
    if stderr_has:
        assert stderr_has in sink.stream("stderr")
        assert stderr_has in result["error"]


def test_uncaught_exception_traceback_starts_at_the_script(job: Job) -> None:
    sink = job.run("""
        def inner():
            raise KeyError("k")
        inner()
    """)
    err = "\n".join(sink.stream("stderr"))
    assert err.startswith("Traceback (most recent call last):")
    assert "KeyError: 'k'" in err
    assert "runpy" not in err and "zygote" not in err
    assert "job.py" in err


def test_threads_are_joined_and_atexit_runs(job: Job) -> None:
    sink = job.run("""
        import atexit, threading
        atexit.register(lambda: print("atexit ran"))
        ev = threading.Event()
        def late():
            ev.wait(5)
            print("thread done")
        threading.Thread(target=late).start()
        print("main done")
        ev.set()
    """)
    assert sink.stream("stdout") == ["main done", "thread done", "atexit ran"]


@BOTH
@pytest.mark.parametrize(("source", "code", "err"), [
    ("def (\n", 1, ["SyntaxError: invalid syntax"]),
    ("raise SystemExit(2**70)\n", 255, []),
    ("raise KeyboardInterrupt\n", -signal.SIGINT, ["KeyboardInterrupt"]),
], ids=["syntax", "huge-exit", "ctrl-c"])
def test_endings_are_those_of_python_script_py(job: Job, kind: str, source: str, code: int,
                                               err: list[str]) -> None:
    # A script that does not compile is shown where it fails, with none of the worker's
    # frames; an exit code past a C long is 255; an uncaught Ctrl-C ends the process by
    # SIGINT. Forked or fresh, the same.
    sink = job.run(source, kind=kind)
    assert sink.outcome["exit_code"] == code
    stderr = sink.stream("stderr")
    assert all(e in stderr for e in err), stderr
    assert not any("child.py" in line or "titan" in line for line in stderr), stderr


@pytest.mark.parametrize(("kind", "now"), [("fork", False), ("fork", True),
                                           ("subprocess", False)],
                         ids=["spawn", "fork_now", "fresh"])
def test_a_job_runs_the_version_it_was_given_whatever_the_path_holds_now(
        job: Job, tmp_path: Path, kind: str, now: bool) -> None:
    # Two projects' main.py, materialized one after the other at the same shared path: the
    # job given the first runs the first (read from its blob), not the one written since;
    # its traceback quotes the code that ran. Forked or in a fresh interpreter, the same;
    # and the script sees itself as python script.py would (argv, __file__), its folder on
    # the import path (last: it is the shared one).
    blob = tmp_path / "blob-a"
    blob.write_text('import sys, os\n'
                    'print("this is project A", sys.argv, __file__ == os.path.abspath(sys.argv[0]),'
                    ' sys.path[-1] == os.path.dirname(__file__), sorted(k for k in globals()'
                    ' if not k.startswith("__")), __name__)\n'
                    'raise SystemExit(undefined_a)\n')
    shared = tmp_path / "shared" / "main.py"
    shared.parent.mkdir()
    shared.write_text('print("this is project B")\n\n')
    attempt, sink, _ = job.start("", script=shared, code_from=blob, now=now, kind=kind,
                                 args=("x", "--y"))
    assert sink.outcome["exit_code"] == 1
    assert sink.stream("stdout") == [
        f"this is project A [{str(shared)!r}, 'x', '--y'] True True ['os', 'sys'] __main__"]
    err = "\n".join(sink.stream("stderr"))
    assert "raise SystemExit(undefined_a)" in err and "NameError" in err
    assert "<string>" not in err and "titan" not in err, err


@pytest.mark.parametrize(("source", "code", "err"), [
    ("def (\n", 1, ["SyntaxError: invalid syntax"]),
    ("raise SystemExit(2**70)\n", 255, []),
    ("raise SystemExit('bye')\n", 1, ["bye"]),
    ("raise KeyboardInterrupt\n", -signal.SIGINT, ["KeyboardInterrupt"]),
], ids=["syntax", "huge-exit", "message", "ctrl-c"])
def test_a_fresh_interpreter_given_a_blob_ends_as_python_script_py(
        job: Job, tmp_path: Path, source: str, code: int, err: list[str]) -> None:
    blob = tmp_path / "blob"
    blob.write_text(source)
    shared = tmp_path / "shared" / "main.py"
    shared.parent.mkdir()
    shared.write_text("print('not this one')\n")
    _, sink, _ = job.start("", script=shared, code_from=blob, kind="subprocess")
    assert sink.outcome["exit_code"] == code
    stderr = sink.stream("stderr")
    assert all(e in stderr for e in err), stderr
    assert not any("<string>" in line or "titan" in line for line in stderr), stderr
    assert sink.stream("stdout") == []


def test_a_script_run_again_comes_compiled_from_the_zygote(job: Job, tmp_path: Path) -> None:
    # The blob a job's code comes from is named by its hash: once a job has run it, the zygote
    # holds it compiled and its later children neither read nor compile it. Seen here by
    # deleting the blob (as the worker's cache eviction may) after two runs: the next runs
    # still run it, and its traceback still quotes the code that ran.
    code = (b'import sys\n'
            b'print("ran", __file__ == sys.argv[0], __name__)\n'
            b'raise SystemExit(undefined_name)\n')
    blob = tmp_path / hashlib.sha256(code).hexdigest()
    blob.write_bytes(code)
    shared = tmp_path / "shared" / "cached_main.py"
    shared.parent.mkdir()
    shared.write_text("print('not this one')\n")
    for run in range(4):
        if run == 2:  # two runs: every spare forked before the first was compiled is used up
            blob.unlink()
        _, sink, forked = job.start("", script=shared, code_from=blob)
        assert forked and sink.outcome["exit_code"] == 1, sink.text()
        assert sink.stream("stdout") == ["ran True __main__"], (run, sink.text())
        err = "\n".join(sink.stream("stderr"))
        assert "raise SystemExit(undefined_name)" in err and "NameError" in err, (run, err)


def test_a_shell_job_runs_the_version_it_was_given(job: Job, tmp_path: Path) -> None:
    blob = tmp_path / "blob.sh"
    blob.write_text('echo "project A: $0 $1 $#"\n')
    shared = tmp_path / "shared" / "run.sh"
    shared.parent.mkdir()
    shared.write_text('echo "project B"\n')
    _, sink, _ = job.start("", script=shared, code_from=blob, kind="auto", args=("one", "two"))
    assert sink.outcome["exit_code"] == 0
    assert sink.stream("stdout") == [f"project A: {shared} one 2"]


def test_a_lean_job_that_imports_threading_late_still_has_its_threads_joined(
        job: Job, runner: Runner) -> None:
    # The lean zygote does not load threading (its after-fork hook cost every child); a job
    # forked from it that brings threading in where the import scan cannot see it still has
    # its non-daemon threads joined before it exits, as `python script.py` would.
    sink = job.run("""
        import os
        exec("import threading")
        ev = threading.Event()
        def late():
            ev.wait(5)
            print("thread done")
        threading.Thread(target=late).start()
        print(os.getppid())
        ev.set()
    """, name="late_threads.py")
    assert sink.stream("stdout") == [str(runner.lean_zygote_pid), "thread done"]


@BOTH
def test_lines_keep_order_and_seq(job: Job, kind: str) -> None:
    sink = job.run("""
        import sys
        for i in range(200):
            print(f"out {i}")
            print(f"err {i}", file=sys.stderr)
    """, kind=kind)
    assert sink.stream("stdout") == [f"out {i}" for i in range(200)]
    assert sink.stream("stderr") == [f"err {i}" for i in range(200)]
    assert [e["seq"] for e in sink.lines] == list(range(1, 401))
    assert all(isinstance(e["ts"], float) for e in sink.lines)


@BOTH
def test_large_output_arrives_complete(job: Job, kind: str) -> None:
    sink = job.run("""
        import sys
        for i in range(5000):
            print(f"line {i} " + "x" * 50)
        sys.stdout.write("y" * 200000 + "\\n")
        sys.stdout.write("no newline at the end")
    """, kind=kind)
    out = sink.stream("stdout")
    assert out[:5000] == [f"line {i} " + "x" * 50 for i in range(5000)]
    assert [len(x) for x in out[5000:-1]] == [65536, 65536, 65536, 200000 - 3 * 65536]
    assert out[-1] == "no newline at the end"
    assert sink.outcome["exit_code"] == 0


def test_lines_stream_while_the_job_runs(job: Job) -> None:
    attempt, sink, _ = job.start("""
        import sys
        print("first")
        sys.stdin.read()  # /dev/null: returns at once
        print("waiting", flush=True)
        import time
        time.sleep(60)
    """)
    sink.wait_line(lambda line: line == "waiting")
    assert not sink.done.is_set()
    job.loop.call(attempt.kill, CANCELLED)
    assert sink.outcome["error"] == "cancelled"


def test_forked_children_reseed_random(job: Job) -> None:
    draws = [job.run("import random; print(random.random())").stream("stdout")[0]
             for _ in range(2)]
    assert draws[0] != draws[1]


@BOTH
def test_sibling_modules_import(job: Job, tmp_path: Path, kind: str) -> None:
    (tmp_path / "etl").mkdir()
    (tmp_path / "etl" / "helpers.py").write_text("VALUE = 42\n")
    sink = job.run("import helpers; print(helpers.VALUE)", kind=kind, name="etl/extract.py")
    assert sink.stream("stdout") == ["42"]
    # Found in the worker's shared folder, where some job left it, not uploaded with this
    # one: said, with what to do (it could be another version than the submitter's).
    [said] = sink.stream("stderr")
    assert said.startswith("titan: module 'helpers' comes from the worker's shared folder")
    assert "is_archive=True" in said
    # Not there at all: the worker says why a plain script cannot import it.
    sink = job.run("import absent_sibling", kind=kind, name="etl/load.py")
    assert sink.outcome["exit_code"] == 1
    assert sink.stream("stderr")[-1] == (
        "titan worker: ModuleNotFoundError: No module named 'absent_sibling': a plain script "
        "is uploaded alone; to import modules from beside it, submit the folder as a project "
        "(is_archive=True, or `titan files upload`) so its files travel with the job")


def test_jobs_forked_while_the_zygote_is_busy_still_say_and_find_shared_modules(
        job: Job, tmp_path: Path) -> None:
    # More jobs at once than spares: the later ones are forked on demand, from a zygote that
    # made the shared folder's finder once (titan.worker.shared_imports.ahead). Each job still
    # says where its module came from, and a module left there afterwards is found.
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "helpers.py").write_text("VALUE = 42\n")
    for module, value in (("helpers", "42"), ("later", "43")):
        if module == "later":
            (tmp_path / "busy" / "later.py").write_text("VALUE = 43\n")
        started = [job.start(f"import time, {module}; time.sleep(0.3); print({module}.VALUE)",
                             name=f"busy/{module}_{i}.py") for i in range(5)]
        for _attempt, sink, forked in started:
            assert forked
            assert sink.outcome["exit_code"] == 0, sink.text()
            assert sink.stream("stdout") == [value], sink.stream("stderr")
            [said] = sink.stream("stderr")
            assert said.startswith(f"titan: module '{module}' comes from the worker's shared "
                                   "folder")


@BOTH
def test_a_file_in_the_shared_folder_shadows_no_installed_module(job: Job, tmp_path: Path,
                                                                 kind: str) -> None:
    # Another project's json.py and signal.py, left in the shared folder by its jobs, ran in
    # place of those modules in every job of the worker (subprocess imports signal: all
    # runner="subprocess" jobs failed to start). A plain script's folder now comes last.
    (tmp_path / "json.py").write_text("raise SystemExit('the shared json.py ran')\n")
    (tmp_path / "signal.py").write_text("raise SystemExit('the shared signal.py ran')\n")
    (tmp_path / "helpers.py").write_text("VALUE = 7\n")
    sink = job.run("import json, signal, subprocess, sys, helpers\n"
                   "print(json.dumps(helpers.VALUE))",
                   kind=kind, name="main.py")
    assert sink.stream("stdout") == ["7"], sink.stream("stderr")
    # Inside a project the folder is the project's own: first, as `python main.py` has it.
    project = tmp_path / "projects" / "p"
    project.mkdir(parents=True)
    (project / "helpers.py").write_text("VALUE = 'the project helpers'\n")
    sink = job.run("import os, sys, helpers\n"
                   "print(helpers.VALUE, sys.path[0] == os.path.dirname(__file__))",
                   kind=kind, name="projects/p/main.py", project_dir=project)
    assert sink.stream("stdout") == ["the project helpers True"], sink.stream("stderr")


def test_extra_sys_path_for_archives(job: Job, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text("NAME = 'from root'\n")
    for kind in ("fork", "subprocess"):
        sink = job.run("from pkg.mod import NAME; print(NAME)", kind=kind,
                       name="proj/app/main.py", sys_path=(str(root),))
        assert sink.stream("stdout") == ["from root"]


# ---------------------------------------------------------------------------- kills


GRANDCHILD = """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print("grandchild", child.pid, flush=True)
    time.sleep(120)
"""


@BOTH
def test_timeout_kills_the_whole_process_group(job: Job, kind: str) -> None:
    _, sink, _ = job.start(GRANDCHILD, kind=kind, timeout=0.5)
    line = sink.wait_line(lambda line: line.startswith("grandchild"))
    result = sink.outcome  # arrives only once the grandchild, which holds stdout, is gone too
    assert result["timed_out"] is True
    assert result["exit_code"] == -signal.SIGTERM
    assert result["error"] == "timed out after 0.5 s"
    assert _gone(int(line.split()[1]))


@BOTH
def test_the_log_says_how_a_process_ended_when_the_job_could_not(job: Job, kind: str) -> None:
    # A crashed job's log ended at its last print: a person, or seed 002's self-healing agent
    # looking for "Segfault" and "OutOfMemory", saw nothing wrong.
    crash = job.run("""
        import os, signal
        print("epoch 3 of 10", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    """, kind=kind)
    assert crash.outcome["error"] == "killed by SIGSEGV"
    assert crash.stream("stderr")[-1] == ("titan worker: Segfault (a crash in native code): "
                                          "the process was killed by SIGSEGV")
    killed = job.run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", kind=kind)
    assert "OutOfMemory killer" in killed.stream("stderr")[-1]
    # Python's MemoryError (numpy's subclass of it too) is said as the agent searches for it;
    # torch's OutOfMemoryError says so itself.
    oom = job.run("class _ArrayMemoryError(MemoryError): pass\n"
                  "raise _ArrayMemoryError('Unable to allocate 7.45 TiB')\n", kind=kind)
    assert oom.stream("stderr")[-1].startswith("titan worker: OutOfMemory: the job ran out of "
                                               "memory (")
    assert oom.stream("stderr")[-1].endswith("_ArrayMemoryError: Unable to allocate 7.45 TiB)")
    cuda = job.run("class OutOfMemoryError(RuntimeError): pass\n"
                   "raise OutOfMemoryError('CUDA out of memory')\n", kind=kind)
    assert cuda.stream("stderr")[-1].endswith("OutOfMemoryError: CUDA out of memory")
    late = job.run("import time\ntime.sleep(30)\n", kind=kind, timeout=0.3)
    assert late.stream("stderr")[-1].startswith("titan worker: timed out after 0.3 s; stopped")
    # An exit code is the job's own saying: nothing is added.
    failed = job.run("import sys\nprint('bad input', file=sys.stderr)\nsys.exit(3)\n",
                     kind=kind)
    assert failed.stream("stderr") == ["bad input"]


@BOTH
def test_cancel_kills_the_whole_process_group(job: Job, kind: str) -> None:
    attempt, sink, _ = job.start(GRANDCHILD, kind=kind)
    line = sink.wait_line(lambda line: line.startswith("grandchild"))
    job.loop.call(attempt.kill, CANCELLED)
    result = sink.outcome
    assert result["timed_out"] is False
    assert result["error"] == "cancelled"
    assert _gone(int(line.split()[1]))


@pytest.mark.parametrize("how", ["blob", "path", "project"])
def test_a_fresh_interpreter_dies_with_the_thread_that_started_it(job: Job, tmp_path: Path,
                                                                  how: str) -> None:
    # What ties a runner="subprocess" job to its worker, killed however: the kernel's
    # parent-death signal, which the interpreter's bootstrap sets itself (titan.worker.fresh),
    # so Popen has no pre-exec hook and uses vfork. The signal comes when the *thread* that
    # started the process ends: the worker's starter threads live as long as the worker, the
    # one here ends once the job is running. From a blob, from its path, an uploaded project.
    source = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    blob = tmp_path / "blob.py"
    blob.write_text(source)
    release = threading.Event()
    started: list[tuple[Attempt, Collector, bool]] = []

    def starter() -> None:
        started.append(job.start(source, kind="subprocess", name="proj/job.py",
                                 code_from=blob if how == "blob" else None,
                                 project_dir=tmp_path / "proj" if how == "project" else None))
        release.wait(WAIT)

    thread = threading.Thread(target=starter)
    thread.start()
    try:
        _until(lambda: started)
        attempt, sink, _ = started[0]
        sink.wait_line(lambda line: line == "up")
        argv = Path(f"/proc/{attempt.process.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[1:3] == [b"-c", fresh.BOOTSTRAP.encode()], argv[:3]
        assert argv[6] == str(os.getpid()).encode()  # the worker it dies with
    finally:
        release.set()
        thread.join()
    assert sink.outcome["exit_code"] == -signal.SIGKILL


def test_a_fresh_interpreter_whose_worker_died_before_it_was_tied_runs_nothing(
        tmp_path: Path) -> None:
    # The worker died between starting the interpreter and the bootstrap's prctl: nothing
    # would kill the job later, so the bootstrap, seeing its parent is no longer the worker,
    # exits before the script runs. Here a shell stays its parent, not this "worker".
    ran = tmp_path / "ran"
    script = tmp_path / "job.py"
    script.write_text(f"open({str(ran)!r}, 'w').close()\n")
    for own in (False, True):
        argv = fresh.path_argv(sys.executable, script, [], own, parent=os.getpid())
        done = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", *argv], timeout=WAIT)
        assert done.returncode == 137
        assert not ran.exists()
    subprocess.run(["sh", "-c", '"$@"; exit $?', "sh",
                    *fresh.path_argv(sys.executable, script, [], False)], timeout=WAIT, check=True)
    assert ran.exists()  # the same, untied (as on a Ray node): it runs


@pytest.mark.parametrize("own", [False, True], ids=["plain", "project"])
def test_a_fresh_interpreter_keeps_python_script_pys_path_and_quotes_under_its_own_encoding(
        tmp_path: Path, own: bool) -> None:
    # The bootstrap took sys.path[0] for the "" that -c puts first: under PYTHONSAFEPATH
    # nothing is put there, and the job's first PYTHONPATH entry (its archive's folder) went.
    # A traceback quoted a latin-1 script's line decoded as UTF-8 (a QA pass).
    script = tmp_path / "job.py"
    script.write_bytes("# -*- coding: latin-1 -*-\nimport sys\nprint(sys.path[0])\n"
                       "raise ValueError('x')  # café\n".encode("latin-1"))
    env = dict(os.environ, PYTHONSAFEPATH="1", PYTHONPATH=str(tmp_path / "first"))
    by_hand = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, timeout=WAIT)
    # Tied to this process (a project's script runs through the bootstrap only when tied).
    argv = fresh.path_argv(sys.executable, script, [], own, parent=os.getpid())
    ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=WAIT)
    assert ran.stdout == by_hand.stdout == f"{tmp_path / 'first'}\n", (ran, by_hand)
    assert ran.returncode == by_hand.returncode == 1
    assert "raise ValueError('x')  # café" in ran.stderr, ran.stderr


def test_sigterm_ignored_escalates_to_sigkill(job: Job) -> None:
    attempt, sink, _ = job.start("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(120)
    """, kill_grace=0.3)
    sink.wait_line(lambda line: line == "ready")
    job.loop.call(attempt.kill, CANCELLED)
    assert sink.outcome["exit_code"] == -signal.SIGKILL


def test_background_process_holding_stdout_does_not_block_the_result(job: Job) -> None:
    sink = job.run("""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print("main exits")
    """, kill_grace=0.3)
    assert sink.outcome["exit_code"] == 0
    assert sink.stream("stdout") == ["main exits"]


@BOTH
def test_what_the_job_left_in_its_group_is_stopped_without_holding_the_result(
        job: Job, kind: str) -> None:
    # Output sent elsewhere, nothing held the job's pipes: both ran on for good (a QA pass).
    # Now SIGTERM when the main process ends, SIGKILL after the grace, the result sent first.
    began = time.monotonic()
    sink = job.run("""
        import subprocess, sys
        quiet = dict(stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                     "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                     "print('ready', flush=True); time.sleep(120)"],
                                    stdout=subprocess.PIPE, **quiet)
        stubborn.stdout.readline()  # it ignores SIGTERM from now on
        polite = subprocess.Popen(["sleep", "120"], stdout=subprocess.DEVNULL, **quiet)
        print(stubborn.pid, polite.pid)
    """, kind=kind, kill_grace=5.0)
    took = time.monotonic() - began
    assert sink.outcome["exit_code"] == 0 and sink.outcome["error"] is None
    stubborn, polite = map(int, sink.stream("stdout")[0].split())
    assert took < 4.0, "the result waited for the grace"
    assert _gone(polite, 3.0), "SIGTERM did not reach what the job left in its group"
    assert not _gone(stubborn, 0.0), "killed before its grace"
    assert _gone(stubborn, 10.0), "what ignored SIGTERM outlived the grace"


# ---------------------------------------------------------------------------- runners


def test_shell_and_executable_scripts(job: Job, tmp_path: Path) -> None:
    sink = job.run('echo "sh $1 $PWD"; exit 5', kind="auto", name="run.sh", args=("arg",))
    assert sink.stream("stdout") == [f"sh arg {tmp_path}"]
    assert sink.outcome["exit_code"] == 5
    exe = tmp_path / "tool"
    exe.write_text(f"#!{sys.executable}\nimport sys; print('exe', sys.argv[1:])\n")
    exe.chmod(0o755)
    sink = job.run("", kind="auto", name="tool", args=("z",), script=exe)
    assert sink.stream("stdout") == ["exe ['z']"]


def test_zygote_is_single_threaded(runner: Runner) -> None:
    pid = runner.zygote_pid
    assert pid is not None
    assert len(os.listdir(f"/proc/{pid}/task")) == 1


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "full"])
def test_zygote_death_fails_its_jobs_and_a_new_one_starts(loop: IOLoop, tmp_path: Path,
                                                          lean: bool) -> None:
    own = Runner(loop)
    own.start()
    # A script importing the SDK is forked from the full zygote, a stdlib one from the lean.
    sdk = "" if lean else "import titan.client\n"
    try:
        job = Job(loop, own, tmp_path)
        _, sink, forked = job.start(sdk + "import os, time\nprint('up', os.getppid(), "
                                    "flush=True)\ntime.sleep(120)")
        assert forked
        line = sink.wait_line(lambda text: text.startswith("up "))
        old = own.lean_zygote_pid if lean else own.zygote_pid
        assert old is not None and line == f"up {old}"
        os.kill(old, signal.SIGKILL)
        result = sink.outcome
        assert result["exit_code"] is None
        assert "zygote died" in result["error"]
        # The next Python job gets a fresh zygote of the same kind.
        sink = job.run(sdk + "print('again')")
        assert sink.stream("stdout") == ["again"]
        assert (own.lean_zygote_pid if lean else own.zygote_pid) not in (None, old)
    finally:
        own.close()


@pytest.mark.parametrize("source, code", [("import sys; print(sys.argv[1:]); sys.exit(3)", 3),
                                          ("print('ok', flush=True)", 0)])
def test_a_fork_started_without_waiting_runs_like_any_other(job: Job, source: str,
                                                             code: int) -> None:
    _, sink, _ = job.start(source, args=("a", "b"), now=True)
    assert sink.outcome["exit_code"] == code
    assert sink.stream("stdout") == (["['a', 'b']"] if code else ["ok"])


def test_a_fork_is_started_without_waiting_only_from_a_zygote_that_is_up(
        loop: IOLoop, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("print('hi')")
    spec = LaunchSpec(script=script, cwd=tmp_path, env=dict(os.environ))
    plain = Runner(loop, use_zygote=False)
    assert not plain.fork_now(spec, lambda _got: None)  # no zygote: the starter thread's job
    shell = tmp_path / "job.sh"
    shell.write_text("echo hi")
    cold = Runner(loop)  # never started: fork_now does not start a zygote (that blocks)
    assert not cold.fork_now(spec, lambda _got: None)
    assert cold.zygote_pid is None and cold.lean_zygote_pid is None
    cold.start()
    try:
        assert not cold.fork_now(LaunchSpec(script=shell, cwd=tmp_path, env={}),
                                 lambda _got: None)  # not Python
    finally:
        cold.close()


def test_a_hung_zygote_times_out_the_fork_and_the_late_child_is_killed(
        loop: IOLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from titan.worker import runner as runner_module

    monkeypatch.setattr(runner_module, "FORK_TIMEOUT", 0.5)
    own = Runner(loop)
    own.start()
    script = tmp_path / "job.py"
    # Were the child to run, it would say its pid over a datagram socket, then sleep.
    path = str(tmp_path / "pid.sock")
    script.write_text("import os, socket, time\n"
                      "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                      f"s.sendto(str(os.getpid()).encode(), {path!r})\n"
                      "time.sleep(60)\n")
    answered: list[object] = []
    done = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(WAIT)
        try:
            zygote = own.lean_zygote_pid
            assert zygote is not None
            os.kill(zygote, signal.SIGSTOP)
            try:
                assert own.fork_now(LaunchSpec(script=script, cwd=tmp_path,
                                               env=dict(os.environ)),
                                    lambda got: (answered.append(got), done.set()))
                assert done.wait(WAIT)
                assert answered == [None]  # the supervisor then takes the slow path
            finally:
                os.kill(zygote, signal.SIGCONT)
            # The zygote forks once it runs again; nobody owns that child: it is killed as
            # the late answer arrives, before its script says anything (or, at worst, in its
            # sleep).
            listener.settimeout(2.0)
            try:
                pid = int(listener.recv(64))
            except TimeoutError:
                pass
            else:
                assert _gone(pid), "the child of a request nobody waits for still runs"
        finally:
            own.close()


def test_fork_timeouts_each_end_at_their_own_deadline(loop: IOLoop, tmp_path: Path) -> None:
    # One timer serves every request's timeout (titan.worker.forkserver): a request due
    # sooner than the one it was armed for still ends on time, and the other at its own.
    from titan.worker.forkserver import ForkServer
    from titan.worker.runner import _fork_request

    script = tmp_path / "job.py"
    script.write_text("import time; time.sleep(60)\n")
    request = _fork_request(LaunchSpec(script=script, cwd=tmp_path, env=dict(os.environ)))
    server = ForkServer(loop, lean=True)
    server.start()
    assert server.pid is not None
    answers: dict[str, tuple[object, str | None, float]] = {}
    ended = {"slow": threading.Event(), "quick": threading.Event()}

    def answer(name: str) -> Callable[[object, str | None], None]:
        def started(proc: object, error: str | None) -> None:
            answers[name] = (proc, error, time.monotonic())
            ended[name].set()
        return started

    try:
        os.kill(server.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            for name, timeout in (("slow", 3.0), ("quick", 0.3)):
                r, w = os.pipe()
                server.request(request, w, w, answer(name), timeout=timeout)
                os.close(r)
                os.close(w)
            assert ended["quick"].wait(WAIT)
            assert not ended["slow"].is_set()
            assert ended["slow"].wait(WAIT)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert answers["quick"][:2] == (None, "the zygote did not answer in time")
        assert answers["slow"][:2] == (None, "the zygote did not answer in time")
        assert answers["quick"][2] - t0 < 2.5 <= answers["slow"][2] - t0 + 0.5
    finally:
        server.close()


def test_without_zygote_python_runs_as_subprocess(loop: IOLoop, tmp_path: Path) -> None:
    plain = Runner(loop, use_zygote=False)
    plain.start()
    job = Job(loop, plain, tmp_path)
    _, sink, forked = job.start("import sys; print(sys.flags.optimize, 'fresh')")
    assert not forked
    assert sink.outcome["exit_code"] == 0
    assert sink.stream("stdout") == ["0 fresh"]


def test_missing_interpreter_or_file_is_a_start_error(job: Job, tmp_path: Path) -> None:
    from titan import errors

    with pytest.raises(errors.TitanError, match="cannot start"):
        job.runner.spawn(LaunchSpec(script=tmp_path / "nope.bin", cwd=tmp_path,
                                    env=dict(os.environ), runner="subprocess"))


# ---------------------------------------------------------------------------- spares


def _zygote_children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            kids |= {int(p) for p in (task / "children").read_text().split()}
    return kids


def _until(what: Callable[[], Any], timeout: float = WAIT) -> Any:
    """``what()`` once it is truthy (the zygote forks spares on its own schedule)."""
    deadline = time.monotonic() + timeout
    while not (got := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return got


def test_a_job_reaching_an_idle_zygote_runs_in_a_spare_forked_ahead(
        loop: IOLoop, tmp_path: Path) -> None:
    own = Runner(loop, spares=1)
    own.start()
    try:
        zygote = own.lean_zygote_pid
        assert zygote is not None
        (spare,) = _until(lambda: _zygote_children(zygote))
        # It waits as a batch task (a burst's hand-off is not preempted by the spares it
        # wakes), and runs its job as any process runs.
        assert _until(lambda: os.sched_getscheduler(spare) == os.SCHED_BATCH)
        job = Job(loop, own, tmp_path)
        sink = job.run("import os, sys; print(os.getpid(), sys.argv[1:], "
                       "os.sched_getscheduler(0) == os.SCHED_OTHER)", args=("x",))
        assert sink.stream("stdout") == [f"{spare} ['x'] True"]
        # Once the job is done and the zygote idle, a new spare waits in its place.
        (again,) = _until(lambda: _zygote_children(zygote) - {spare})
        # A spare that dies waiting is replaced, and the worker never hears of it.
        os.kill(again, signal.SIGKILL)
        (third,) = _until(lambda: _zygote_children(zygote) - {spare, again})
        sink = job.run("import os; print(os.getpid())")
        assert sink.stream("stdout") == [str(third)]
        assert sink.outcome["exit_code"] == 0
        left = _until(lambda: _zygote_children(zygote) - {spare, again, third})
    finally:
        own.close()
    # The zygote's spares leave with it (the one forked after the last job, here).
    assert all(_gone(pid) for pid in left)


SURROUNDINGS = """
    import os, random, sys
    print(os.getpid(), os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid(),
          sys.stdout.seekable(), sys.stdout.isatty(), sys.stderr.seekable(),
          repr(sys.stdin.read()), sys.stdout is sys.__stdout__, random.random())
    print("err", file=sys.stderr)
"""


def test_a_spare_prepared_ahead_gives_its_job_what_a_fork_on_demand_gives(
        loop: IOLoop, tmp_path: Path) -> None:
    """A spare made its session, stdin, random seed and streams before its job came: the job
    sees what a child forked for it sees (pipes, not seekable; its own session; stdin at end)
    and draws numbers of its own."""
    own = Runner(loop, spares=2)
    own.start()
    try:
        zygote = own.lean_zygote_pid
        assert zygote is not None
        spares = _until(lambda: len(_zygote_children(zygote)) == 2 and _zygote_children(zygote))
        job = Job(loop, own, tmp_path)
        seen = []
        for _ in range(2):
            sink = job.run(SURROUNDINGS)
            assert sink.outcome["exit_code"] == 0 and sink.stream("stderr") == ["err"]
            seen.append(sink.stream("stdout")[0].split())
        assert {int(s[0]) for s in seen} <= spares
        assert [s[1:8] for s in seen] == [["True", "True", "False", "False", "False", "''",
                                           "True"]] * 2
        assert seen[0][-1] != seen[1][-1]  # each spare seeded its own generator
    finally:
        own.close()
    plain = Runner(loop, spares=0)
    plain.start()
    try:
        sink = Job(loop, plain, tmp_path).run(SURROUNDINGS)
        assert sink.stream("stdout")[0].split()[1:8] == seen[0][1:8]
    finally:
        plain.close()


def test_spares_are_counted_from_slots_or_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from titan import errors
    from titan.worker.settings import zygote_spares

    monkeypatch.delenv("TITAN_ZYGOTE_SPARES", raising=False)
    assert (zygote_spares(2), zygote_spares(32)) == (2, 8)
    monkeypatch.setenv("TITAN_ZYGOTE_SPARES", "0")
    assert zygote_spares(4) == 0
    for bad in ("-1", "65", "lots"):
        monkeypatch.setenv("TITAN_ZYGOTE_SPARES", bad)
        with pytest.raises(errors.ConfigError, match="TITAN_ZYGOTE_SPARES"):
            zygote_spares(4)
