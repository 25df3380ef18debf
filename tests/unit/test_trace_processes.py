"""What a process started inside a run is told of it (titan.trace.processes): a subprocess's
number and environment, a spawned child's name, and what a child makes of what it is told."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from titan.trace import context, forks, processes


@pytest.fixture
def in_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[context.RunHandle]:
    for name in ("TITAN_AGENT_RUN_ID", "TITAN_REPLAY", context.PROCESS_ENV):
        monkeypatch.delenv(name, raising=False)
    run = context.RunHandle(id="R-1", agent_id="support", default_actor="support")
    token = context.enter_run(run)
    try:
        yield run
    finally:
        context.leave_run(token)


def told(env: object) -> dict[str, object]:
    assert isinstance(env, dict)
    return dict(json.loads(env[context.PROCESS_ENV]))


def test_each_subprocess_of_an_actor_is_numbered_as_it_starts(in_run: context.RunHandle) -> None:
    assert told(processes.child_env(None))["actor"] == "support/proc-1"
    with context.actor("critic"):
        assert told(processes.child_env(None))["actor"] == "support/critic/proc-1"
    second = told(processes.child_env(dict(os.environ, EXTRA="1")))
    assert second == {"run": "R-1", "actor": "support/proc-2", "agent_id": "support",
                      "shadow_of": None}


def test_an_environment_that_is_not_the_runs_is_left_as_it_is(
        in_run: context.RunHandle) -> None:
    other = dict(os.environ, TITAN_AGENT_RUN_ID="another-run")
    assert processes.child_env(other) is other
    replaying = dict(os.environ, TITAN_REPLAY='{"of": "X"}')  # not this process's settings
    assert processes.child_env(replaying) is replaying
    named = told(processes.child_env(dict(os.environ, TITAN_AGENT_RUN_ID="R-1")))
    assert named["actor"] == "support/proc-3"  # numbered all the same: the count is the code's


def test_outside_any_run_a_child_is_told_nothing_and_loses_what_its_parent_was_told(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TITAN_AGENT_RUN_ID", raising=False)
    monkeypatch.delenv("TITAN_REPLAY", raising=False)
    assert processes.child_env(None) is None
    env = {"PATH": "/bin", context.PROCESS_ENV: '{"run": "R", "actor": "a/proc-1"}'}
    assert processes.child_env(env) == {"PATH": "/bin"}


def test_a_real_subprocess_and_a_spawned_child_record_as_their_parents_helpers(
        in_run: context.RunHandle) -> None:
    out = subprocess.run([sys.executable, "-c", "import titan.trace as t; "
                          "r = t.current_run(); from titan.trace.context import current_actor;"
                          " print(r.id, current_actor(r))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["R-1", "support/proc-1"]
    proc = multiprocessing.get_context("spawn").Process(target=print, name="Worker/A")
    proc.start()
    proc.join()
    started = getattr(proc, context.PROCESS_ATTR)
    assert (started.run, started.actor) == ("R-1", "support/worker-a")


@pytest.mark.parametrize("raw", ["", "{", "[]", '{"run": "R"}', '{"run": "R", "actor": "a//b"}',
                                 '{"run": 1, "actor": "a"}', '{"run": "R", "actor": "' +
                                 "a" * 5000 + '"}'])
def test_what_a_child_is_told_is_checked(raw: str) -> None:
    assert context.Started.parse(raw) is None


def test_helpers_pool_with_the_processes_of_their_actor() -> None:
    assert forks.pooled("S1/w0/proc-2") == forks.pooled("S1/w0/fork-1") == "S1/w0/fork-*"
    assert forks.pooled("DRIVER/driver/spawnpoolworker-3") == "DRIVER/driver/fork-*"
    assert forks.above("support/proc-1/fork-2") == "support"
    assert forks.pooled("S1/w0/proc-x") is None and forks.pooled("S1/w0") is None
