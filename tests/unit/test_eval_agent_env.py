"""What a coding run's agent under test is handed (titan/evals/agent_env.py): no credential of
the harness's, and no way into the harness's process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from titan.evals import agent_env

JOB_TOKEN = "tj.70.2." + "a" * 32
API_TOKEN = "tt_" + "b" * 43


def test_the_agent_gets_its_own_token_and_no_other(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_TOKEN", JOB_TOKEN)
    monkeypatch.setenv("TITAN_TOOL_TOKEN", "tr_" + "c" * 32)
    monkeypatch.setenv("TITAN_AGENT_RUN_ID", "eval.task.1234abcd")
    monkeypatch.setenv("TITAN_JOB_ID", "agent")
    monkeypatch.setenv("SOME_URL", f"http://127.0.0.1:1/?token={API_TOKEN}")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # an LLM key the agent may need
    task = {"id": "t", "user_instruction": "fix it", "scorers": [{"type": "command"}],
            "turns": [{"user_instruction": "fix it"}]}
    env = agent_env.agent_environ(task, tmp_path, tmp_path / "c.jsonl", tmp_path / "t",
                                  (1, 2), "ta.70.2." + "d" * 32)
    assert env["TITAN_TOOL_TOKEN"] == "ta.70.2." + "d" * 32
    for name in ("TITAN_TOKEN", "TITAN_AGENT_RUN_ID", "TITAN_JOB_ID", "SOME_URL"):
        assert name not in env, name
    assert env["OPENAI_API_KEY"] == "sk-test"
    assert json.loads(env["TITAN_EVAL_TASK"]) == {"id": "t", "user_instruction": "fix it"}
    assert (env["TITAN_EVAL_TURN"], env["TITAN_EVAL_TURNS"]) == ("1", "2")
    # Without a token of its own (grade() called directly), no Titan credential at all.
    bare = agent_env.agent_environ(task, tmp_path, tmp_path / "c", tmp_path / "t", None, None)
    assert "TITAN_TOOL_TOKEN" not in bare and "TITAN_TOKEN" not in bare


def test_the_harness_forgets_its_token() -> None:
    environ = {"TITAN_TOKEN": JOB_TOKEN, "TITAN_TOOL_TOKEN": "x", "PATH": "/bin"}
    agent_env.forget_credentials(environ)
    assert environ == {"PATH": "/bin"}


def _held_by_nobody(undumpable: bool) -> tuple[int, int, int]:
    """A process of uid 65534 (made not dumpable or not) and another of that uid that tries
    to read its /proc/<pid>/environ and /proc/<pid>/mem; ``(the owner of the first's
    /proc/<pid>/environ, what it said of PR_GET_DUMPABLE, what the second got: a bit per file
    read)``. Forked, not exec'd: the
    interpreter may live where uid 65534 cannot read it."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    target = os.fork()
    if target == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            os.setgid(65534)
            os.setuid(65534)
            if undumpable:
                assert agent_env.undumpable() is None
            else:  # as exec would make it: setuid() left it not dumpable (suid_dumpable)
                agent_env._prctl(agent_env._PR_SET_DUMPABLE, 1)
            os.write(ready_w, bytes([agent_env.dumpable() or 0]))
            os.read(done_r, 1)  # held until the reader is done
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    result_r, result_w = os.pipe()
    try:
        said = os.read(ready_r, 1)[0]
        reader = os.fork()
        if reader == 0:  # pragma: no cover - the child
            got = 0
            try:
                os.setgid(65534)
                os.setuid(65534)
                for bit, name in ((1, "environ"), (2, "mem")):
                    try:
                        with open(f"/proc/{target}/{name}", "rb") as fh:
                            if name == "environ":
                                fh.read()
                            got |= bit
                    except PermissionError:
                        pass
                os.write(result_w, bytes([got]))
            finally:
                os._exit(0)
        os.close(result_w)
        got = os.read(result_r, 1)[0]
        owner = os.stat(f"/proc/{target}/environ").st_uid
        os.waitpid(reader, 0)
        return owner, said, got
    finally:
        os.write(done_w, b"x")
        os.waitpid(target, 0)
        for fd in (ready_r, done_w, result_r):
            os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                    reason="needs Linux and root (to be two processes of another uid)")
def test_a_process_of_the_same_user_cannot_read_an_undumpable_one() -> None:
    # The control first: a dumpable process of uid 65534 is read by another of that uid
    # (nothing like Yama's ptrace_scope stops it here), its /proc files its own.
    owner, said, got = _held_by_nobody(undumpable=False)
    assert (owner, said, got) == (65534, 1, 3)
    # Not dumpable (what the coding job makes itself before it starts the agent): its
    # environment and memory are refused, and its /proc files are root's.
    owner, said, got = _held_by_nobody(undumpable=True)
    assert (owner, said, got) == (0, 0, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_exec_makes_the_agent_dumpable_again() -> None:
    # The harness is not dumpable; what it starts by exec is a process of its own again.
    import subprocess

    probe = ("import titan.evals.agent_env as a, sys; sys.stdout.write(str(a.dumpable()))")
    child = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE,
                             preexec_fn=lambda: agent_env.undumpable() and os._exit(3))
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and out == b"1", (child.returncode, out)
    assert agent_env.dumpable() == 1  # and pytest's own process was never changed
