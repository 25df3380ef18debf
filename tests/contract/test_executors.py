"""The executor contract (:mod:`titan.worker.executor`), run on every executor: a zygote fork
and a fresh subprocess (the local executor) and a task on a real Ray head started here.

Each test starts a real job through the executor and follows it with the worker's own
:class:`~titan.worker.attempt.Attempt` on its own I/O loop, exactly as a worker does; waits
are on events with timeouts, never on sleeps.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attempt_sink import Collector
from tests.integration.processes import wait_dead
from tests.ray_cluster import ray_client_env, ray_head
from titan import errors
from titan.worker.assignment import Assignment
from titan.worker.attempt import CANCELLED, Attempt
from titan.worker.executor import Executor, LaunchSpec
from titan.worker.loop import IOLoop
from titan.worker.runner import Runner

WAIT = 60.0
KINDS = ["fork", "subprocess", pytest.param("ray", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def loop() -> Iterator[IOLoop]:
    io_loop = IOLoop()
    io_loop.start()
    yield io_loop
    io_loop.stop()


@pytest.fixture(scope="module")
def local(loop: IOLoop) -> Iterator[Runner]:
    runner = Runner(loop)
    runner.start()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def ray_executor(loop: IOLoop) -> Iterator[Executor]:
    from titan.worker.ray_executor import RayExecutor

    with ray_head() as address, ray_client_env():
        executor = RayExecutor(loop, address=address)
        try:
            yield executor
        finally:
            executor.close()


class Jobs:
    """Starts jobs of one kind through its executor and follows each with an attempt."""

    def __init__(self, kind: str, executor: Executor, loop: IOLoop, workdir: Path) -> None:
        self.kind, self.executor, self.loop, self.workdir = kind, executor, loop, workdir

    def start(self, source: str, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None,
              timeout: float | None = None, kill_grace: float = 30.0,
              name: str = "job.py") -> tuple[Attempt, Collector]:
        script = self.workdir / name
        script.write_text(textwrap.dedent(source))
        sink = Collector(WAIT)
        attempt = Attempt(Assignment(id=1, attempt=1, job_id="j", filename=name,
                                     timeout=timeout),
                          loop=self.loop, sink=sink, kill_grace=kill_grace)
        # Ray's executor runs jobs on a node with its own environment: the spec's is the job's.
        spec = LaunchSpec(script=script, args=list(args), cwd=self.workdir,
                          env={**self.executor.base_env, "PYTHONUNBUFFERED": "1", **(env or {})},
                          runner="subprocess" if self.kind == "subprocess" else "auto")
        launched = self.executor.spawn(spec)
        assert launched.forked == (self.kind == "fork")
        self.loop.call(attempt.attach, launched)
        return attempt, sink

    def cancel(self, attempt: Attempt) -> None:
        self.loop.call(attempt.kill, CANCELLED)


@pytest.fixture(params=KINDS)
def jobs(request: pytest.FixtureRequest, loop: IOLoop, tmp_path: Path) -> Jobs:
    kind = request.param
    executor = request.getfixturevalue("ray_executor" if kind == "ray" else "local")
    return Jobs(kind, executor, loop, tmp_path)


# ---------------------------------------------------------------------------- output


def test_output_arrives_line_by_line_in_order_while_the_job_runs(jobs: Jobs,
                                                                 tmp_path: Path) -> None:
    go = tmp_path / "go"
    attempt, sink = jobs.start("""
        import os, sys, time
        print("first")
        print("err 1", file=sys.stderr)
        while not os.path.exists(sys.argv[1]):  # the test reads "first" before it says go
            time.sleep(0.01)
        for i in range(200):
            print(i)
        print("err 2", file=sys.stderr)
        sys.stdout.write("no newline at the end")
    """, args=(str(go),))
    sink.wait_line(lambda line: line == "first")
    assert not sink.done.is_set()
    go.touch()
    assert sink.outcome["exit_code"] == 0
    assert sink.stream("stdout") == ["first", *map(str, range(200)), "no newline at the end"]
    assert sink.stream("stderr") == ["err 1", "err 2"]
    assert [e["seq"] for e in sink.lines] == list(range(1, len(sink.lines) + 1))


# ---------------------------------------------------------------------------- exit


@pytest.mark.parametrize("source, code, error", [
    ("print('ok')", 0, None),
    ("import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)", 3, "exit code 3: boom"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", -9, "killed by SIGKILL"),
    # A message of several lines: the error names the exception, not the message's last line.
    ("raise ValueError('the model is unknown\\n  Pass model as E.g. For x')", 1,
     "exit code 1: ValueError: the model is unknown"),
], ids=["success", "failure", "signal", "multi-line exception"])
def test_the_exit_status_is_reported(jobs: Jobs, source: str, code: int,
                                     error: str | None) -> None:
    _, sink = jobs.start(source)
    ended = sink.outcome.pop("ended_at")  # when the process ended, by the worker's clock
    elapsed = sink.outcome.pop("elapsed")  # since the worker took it, by its steady clock
    assert sink.outcome == {"id": 1, "attempt": 1, "exit_code": code, "error": error,
                            "timed_out": False}
    assert abs(time.time() - ended) < 60 and 0 < elapsed < 60


def test_environment_and_arguments_reach_the_job(jobs: Jobs) -> None:
    _, sink = jobs.start("""
        import json, os, sys
        print(json.dumps([sys.argv[1:], os.environ["JOB_VAR"], os.environ["TITAN_TOKEN"]]))
    """, args=("a b", "--x=1", ""), env={"JOB_VAR": "v 1", "TITAN_TOKEN": "job-token"})
    assert sink.outcome["exit_code"] == 0
    assert sink.stream("stdout") == ['[["a b", "--x=1", ""], "v 1", "job-token"]']


def test_a_missing_script_is_a_reported_start_failure(jobs: Jobs, tmp_path: Path) -> None:
    spec = LaunchSpec(script=tmp_path / "gone.py", cwd=tmp_path, env=dict(jobs.executor.base_env),
                      runner="subprocess" if jobs.kind == "subprocess" else "auto")
    # Raised by spawn, or (a fork, an interpreter that looks for the file itself) the job's
    # failure: either way the worker reports it, naming the script.
    try:
        launched = jobs.executor.spawn(spec)
    except errors.TitanError as exc:
        assert "gone.py" in str(exc)
        return
    sink = Collector(WAIT)
    attempt = Attempt(Assignment(id=1, attempt=1, job_id="j", filename="gone.py"),
                      loop=jobs.loop, sink=sink, kill_grace=30.0)
    jobs.loop.call(attempt.attach, launched)
    assert sink.outcome["exit_code"] != 0
    assert "gone.py" in f"{sink.outcome['error']} {sink.stream('stderr')}"


# ---------------------------------------------------------------------------- stopping


CHILD_AND_WAIT = """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print("pids", os.getpid(), child.pid)
    time.sleep(300)
"""


def test_cancel_kills_the_job_and_its_children_promptly(jobs: Jobs) -> None:
    attempt, sink = jobs.start(CHILD_AND_WAIT)
    pids = [int(p) for p in sink.wait_line(lambda line: line.startswith("pids")).split()[1:]]
    cancelled = time.monotonic()
    jobs.cancel(attempt)
    outcome = sink.outcome
    assert time.monotonic() - cancelled < 15.0
    assert outcome["error"] == "cancelled" and outcome["exit_code"] == -15
    assert all(wait_dead(pid) for pid in pids), "the job or its child outlived the cancel"


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(jobs: Jobs) -> None:
    attempt, sink = jobs.start("""
        import signal, time
        signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM, ignored", flush=True))
        print("ready", flush=True)
        time.sleep(300)
    """, kill_grace=1.0)
    sink.wait_line(lambda line: line == "ready")
    cancelled = time.monotonic()
    jobs.cancel(attempt)
    outcome = sink.outcome
    assert 1.0 <= time.monotonic() - cancelled < 15.0
    assert outcome["error"] == "cancelled" and outcome["exit_code"] == -9
    assert "SIGTERM, ignored" in sink.stream("stdout")  # asked first, killed after the grace


def test_children_left_holding_the_pipes_are_killed_after_the_grace(jobs: Jobs) -> None:
    _, sink = jobs.start("""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print("child", child.pid)
    """, kill_grace=1.0)
    assert sink.outcome["exit_code"] == 0 and sink.outcome["error"] is None
    child = int(sink.stream("stdout")[0].split()[1])
    assert wait_dead(child), "a child holding the job's output outlived the grace"


def test_a_timeout_kills_the_job(jobs: Jobs) -> None:
    _, sink = jobs.start("import time\nprint('up', flush=True)\ntime.sleep(300)", timeout=1.0)
    outcome = sink.outcome
    assert outcome["timed_out"] is True and outcome["error"] == "timed out after 1 s"


# ---------------------------------------------------------------------------- what it offers


def test_it_says_what_it_offers(jobs: Jobs) -> None:
    executor = jobs.executor
    assert "GENERAL" in executor.capabilities()
    assert executor.default_slots() >= 1
    capacity = executor.capacity()
    assert capacity is None or capacity >= 0
