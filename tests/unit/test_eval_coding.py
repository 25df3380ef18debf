"""Coding tasks: seeding, the final diff, scorers, the sh() transcript and syscall capture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from titan.errors import ValidationFailed
from titan.evals import coding
from titan.evals.coding_job import grade, merge_commands, parse_strace

PY = sys.executable

SPEC = {
    "files": {"src/app.py": "def add(a, b):\n    return a - b\n",
              "README.md": "# demo\n",
              "docs/old.txt": "to be removed\n"},
    # A setup artifact: it exists before the agent starts, so it is not part of the diff.
    "setup": ["mkdir -p build && echo generated > build/artifact.txt"],
}


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, coding.Baseline]:
    root = tmp_path / "ws"
    return root, coding.seed_workspace(SPEC, root)


def _edit(root: Path) -> None:
    (root / "src/app.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "src/new.py").write_text("X = 1")  # no trailing newline
    (root / "docs/old.txt").unlink()
    (root / "src/__pycache__").mkdir()
    (root / "src/__pycache__/app.cpython-311.pyc").write_bytes(b"\0junk")
    (root / "blob.bin").write_bytes(b"\0\1\2")


def test_seed_excludes_setup_artifacts_and_diff_shows_net_change(seeded):
    root, baseline = seeded
    assert (root / "build/artifact.txt").read_text() == "generated\n"
    assert "build/artifact.txt" in baseline.files
    assert not baseline.store.is_relative_to(root)
    assert coding.changed_paths(root, baseline) == []
    assert coding.final_diff(root, baseline) == ""

    _edit(root)
    assert coding.changed_paths(root, baseline) == ["blob.bin", "docs/old.txt", "src/app.py",
                                                    "src/new.py"]
    diff = coding.final_diff(root, baseline)
    assert "build/artifact" not in diff and "__pycache__" not in diff
    assert "--- a/src/app.py\n+++ b/src/app.py\n" in diff
    assert "-    return a - b\n+    return a + b\n" in diff
    assert "new file mode 100644\n--- /dev/null\n+++ b/src/new.py\n" in diff
    assert "+X = 1\n\\ No newline at end of file\n" in diff
    assert "deleted file mode 100644\n--- a/docs/old.txt\n+++ /dev/null\n" in diff
    assert "-to be removed\n" in diff
    assert "Binary file blob.bin differs\n" in diff


@pytest.mark.parametrize("bad", ["/etc/passwd", "../escape.txt", "a/../../b", "", "C:\\x"])
def test_path_traversal_is_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(ValidationFailed):
        coding.seed_workspace({"files": {"ok.txt": "x", bad: "evil"}}, tmp_path / "ws")
    assert not (tmp_path / "ws" / "ok.txt").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_failing_setup_is_a_clear_error(tmp_path):
    with pytest.raises(ValidationFailed, match="exited 3") as info:
        coding.seed_workspace({"files": {}, "setup": ["echo nope; exit 3"]}, tmp_path / "ws")
    assert info.value.details["output"] == "nope"


def test_command_scorers(seeded):
    root, _ = seeded
    result = coding.run_scorers(root, [
        {"type": "command", "name": "tests",
         "command": f"{PY} -c \"import sys; print('boom'); sys.exit(1)\""},
        {"type": "command", "command": "test -f README.md"},
        {"type": "command", "name": "slow", "command": "sleep 5", "timeout_s": 0.2},
    ], [])
    tests, readme, slow = result["scorers"]
    assert (tests["name"], tests["type"], tests["verdict"]) == ("tests", "command", "FAIL")
    assert tests["summary"] == "exit 1: boom" and tests["detail"] == "boom"
    assert (readme["name"], readme["verdict"], readme["summary"]) == (
        "test -f README.md", "PASS", "exit 0")
    assert slow["verdict"] == "FAIL" and slow["summary"] == "timed out after 0.2 s"
    assert result["overall"] == "FAIL" and result["error"] is None


def test_path_scorers(seeded):
    root, _ = seeded
    allowed = {"type": "allowed_paths", "paths": ["src/**", "**/*.md"]}
    forbid = {"type": "forbid_paths", "paths": ["docs/"]}
    none = coding.run_scorers(root, [allowed, forbid], [])
    assert [r["verdict"] for r in none["scorers"]] == ["N/A", "N/A"]
    assert none["overall"] == "N/A"

    ok = coding.run_scorers(root, [allowed, forbid], ["src/a/b.py", "README.md"])
    assert [r["verdict"] for r in ok["scorers"]] == ["PASS", "PASS"]
    assert ok["overall"] == "PASS" and ok["scorers"][0]["name"] == "allowed-paths"

    bad = coding.run_scorers(root, [allowed, forbid], ["src/x.py", "docs/old.txt", "setup.py"])
    a, f = bad["scorers"]
    assert a["verdict"] == "FAIL" and a["detail"] == "docs/old.txt\nsetup.py"
    assert a["summary"] == "2 changed path(s) outside the allowed paths"
    assert f["verdict"] == "FAIL" and f["detail"] == "docs/old.txt"
    assert bad["overall"] == "FAIL"


def test_a_scorer_that_cannot_run_is_reported_not_passed(seeded):
    root, _ = seeded
    result = coding.run_scorers(root, [{"type": "lint"},
                                       {"type": "command", "command": "true"}], [])
    assert result["scorers"][0]["verdict"] == "N/A"
    assert result["overall"] == "N/A" and "unknown scorer type" in result["error"]


def test_sh_appends_to_the_transcript(tmp_path, monkeypatch):
    log = tmp_path / "commands.jsonl"
    monkeypatch.setenv("TITAN_EVAL_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("TITAN_EVAL_COMMANDS", str(log))
    (tmp_path / "f.txt").write_text("hello\n")
    done = coding.sh("cat f.txt; echo err >&2; exit 2")
    assert done.returncode == 2 and done.stdout == "hello\nerr\n"
    assert coding.sh("sleep 5", timeout=0.2).returncode == 124
    entries = coding.load_transcript(log)
    assert [(e["command"], e["exit_code"]) for e in entries] == [
        ("cat f.txt; echo err >&2; exit 2", 2), ("sleep 5", 124)]
    assert entries[0]["output"] == "hello\nerr\n" and entries[0]["source"] == "transcript"
    assert "timed out after 0.2 s" in entries[1]["output"]


STRACE_SAMPLE = """\
100  1700000000.000001 execve("/usr/bin/python3", ["python3", "agent.py"], 0x7ffe /* 35 vars */) = 0
100  1700000000.100000 vfork( <unfinished ...>
101  1700000000.100100 execve("/bin/sh", ["/bin/sh", "-c", "echo hi | tr a-z A-Z"], 0x7ffe /* 38 vars */ <unfinished ...>
100  1700000000.100200 <... vfork resumed>) = 101
101  1700000000.100300 <... execve resumed>) = 0
101  1700000000.100400 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x7f1d) = 102
102  1700000000.100500 execve("/usr/bin/tr", ["tr", "a-z", "A-Z"], 0x55c8 /* 38 vars */) = 0
102  1700000000.100600 +++ exited with 0 +++
101  1700000000.100700 +++ exited with 0 +++
100  1700000000.200000 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88) = 103
103  1700000000.200100 execve("/root/bin/git", ["git", "commit", "-m", "fix: caf\\303\\251 \\"x\\""], 0x7ffe /* 38 vars */) = -1 ENOENT (No such file or directory)
103  1700000000.200200 execve("/usr/bin/git", ["git", "commit", "-m", "fix: caf\\303\\251 \\"x\\""], 0x7ffe /* 38 vars */) = 0
103  1700000000.200300 +++ exited with 1 +++
100  1700000000.300000 fork() = 104
104  1700000000.300100 execve("/usr/bin/bash", ["bash", "-lc", "sleep 100"], 0x7ffe /* 38 vars */) = 0
104  1700000000.300200 +++ killed by SIGKILL +++
100  1700000000.400000 +++ exited with 0 +++
"""


def test_parse_strace_sample():
    commands = parse_strace(STRACE_SAMPLE.splitlines())
    assert [(c["command"], c["exit_code"], c["at"]) for c in commands] == [
        ("echo hi | tr a-z A-Z", 0, 1700000000.1001),
        ("git commit -m 'fix: café \"x\"'", 1, 1700000000.2002),
        ("sleep 100", -9, 1700000000.3001),
    ]
    assert all(c["output"] is None and c["source"] == "syscall" for c in commands)


def test_merge_prefers_transcript_and_trajectory_orders_steps():
    transcript = [{"command": "echo hi | tr a-z A-Z", "exit_code": 0, "output": "HI\n",
                   "at": 1700000000.1, "source": "transcript"}]
    merged = merge_commands(transcript, parse_strace(STRACE_SAMPLE.splitlines()))
    assert [(c["command"], c["output"]) for c in merged] == [
        ("echo hi | tr a-z A-Z", "HI\n"), ("git commit -m 'fix: café \"x\"'", None),
        ("sleep 100", None)]
    steps = coding.reconstruct_trajectory(merged, ["src/app.py"])
    assert [s["kind"] for s in steps] == ["command", "command", "command", "edit"]
    assert steps[1] == {"kind": "command", "command": "git commit -m 'fix: café \"x\"'",
                        "exit_code": 1, "output": None, "at": 1700000000.2002,
                        "source": "syscall"}
    assert steps[-1] == {"kind": "edit", "path": "src/app.py"}


AGENT = """\
import json, os, sys
from pathlib import Path
from titan.evals.coding import sh
task = json.loads(os.environ["TITAN_EVAL_TASK"])
assert "scorers" not in task and Path.cwd() == Path(os.environ["TITAN_EVAL_WORKSPACE"])
Path("src/app.py").write_text("def add(a, b):\\n    return a + b\\n")
sh("ls src")
print("agent done")
sys.exit(int(sys.argv[1]))
"""


def test_grade_runs_the_agent_and_reports(tmp_path):
    task = {"id": "t1", "user_instruction": "fix add", "workspace": SPEC, "scorers": [
        {"type": "command", "name": "tests",
         "command": f"{PY} -c \"import sys; sys.path.insert(0, 'src'); import app; "
                    "sys.exit(app.add(2, 2) != 4)\""},
        {"type": "allowed_paths", "paths": ["src/**"]}]}
    agent = {"script_sha256": "abc", "filename": "agent.py", "args": ["3"], "timeout_s": 30}
    report, code = grade(task, agent, tmp_path, lambda sha: AGENT.encode())
    assert code == 3 and report["agent_exit_code"] == 3
    assert "agent done" in report["agent_output_tail"]
    assert report["changed_paths"] == ["src/app.py"] and "+    return a + b" in report["diff"]
    assert [s["verdict"] for s in report["scorers"]] == ["PASS", "PASS"]
    assert report["overall"] == "PASS" and report["eval_error"] is None
    commands = [s for s in report["trajectory"] if s["kind"] == "command"]
    assert [(c["command"], c["output"]) for c in commands] == [("ls src", "app.py\n")]
    assert report["trajectory"][-1] == {"kind": "edit", "path": "src/app.py"}
    json.dumps(report)


def test_grade_reports_a_failed_setup_as_eval_error(tmp_path):
    task = {"id": "t2", "user_instruction": "x", "scorers": [{"type": "command",
                                                              "command": "true"}],
            "workspace": {"files": {"a.txt": "a\n"}, "setup": ["exit 7"]}}
    agent = {"script_sha256": "abc", "filename": "agent.py", "args": [], "timeout_s": 30}
    script = "from pathlib import Path\nPath('a.txt').write_text('b\\n')\n"
    report, code = grade(task, agent, tmp_path, lambda sha: script.encode())
    assert code == 0 and report["changed_paths"] == ["a.txt"]
    assert report["scorers"] == [] and report["overall"] == "N/A"
    assert "seeding the workspace failed" in report["eval_error"]


def test_an_agent_past_its_timeout_is_killed_with_its_children(tmp_path):
    from titan.evals.coding_job import run_agent
    argv = [PY, "-c", "import subprocess; print('start', flush=True); "
            "subprocess.run('sleep 30', shell=True)"]
    code, tail, timed_out = run_agent(argv, tmp_path, {"PATH": "/usr/bin:/bin"}, 1.0)
    assert (code, timed_out) == (124, True) and tail == "start\n"


LEAVES_WRITERS = """\
import os, subprocess, sys
# One in its own process group, as the agent's children are; one that leaves the group and its
# parent (setsid, double fork), as a daemon does. Both write into the workspace a moment later,
# while the scorers would be reading it.
subprocess.Popen(["sh", "-c", "sleep 1; echo late > in_group.txt"])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sh", ["sh", "-c", "sleep 1; echo late > escaped.txt"])
    os._exit(0)
os.wait()
print("left", flush=True)
"""


def test_what_an_agent_leaves_running_is_ended_before_the_workspace_is_graded(tmp_path):
    # The harness grades the workspace once the agent exits: a process the agent left could
    # still change it under the scorers (or write a passing file after a failing run). In a
    # process of its own, as the coding job is: run_agent makes it the subreaper of what the
    # agent leaves.
    (tmp_path / "agent.py").write_text(LEAVES_WRITERS)
    probe = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from titan.evals.coding_job import run_agent\n"
        f"root = Path({str(tmp_path)!r})\n"
        f"code, tail, timed_out = run_agent([{PY!r}, 'agent.py'], root, "
        "{'PATH': '/usr/bin:/bin'}, 30.0)\n"
        "time.sleep(2.5)\n"
        "print(code, tail.strip(), sorted(p.name for p in root.glob('*.txt')))\n")
    done = subprocess.run([PY, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 left []", done.stdout


def test_ending_the_leftovers_spares_what_was_there_before_the_agent(tmp_path):
    # run_agent in a process that has children of its own (a test's clusters, here a sleep)
    # ends only what the agent left, and leaves the process a subreaper only if it was one.
    import ctypes

    from titan.evals.coding_job import run_agent

    def subreaper() -> int:
        flag = ctypes.c_int(-1)
        assert ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0) == 0
        return flag.value

    was = subreaper()
    mine = subprocess.Popen(["sleep", "30"])
    try:
        code, _tail, _ = run_agent([PY, "-c", "print('done')"], tmp_path,
                                   {"PATH": "/usr/bin:/bin"}, 30.0)
        assert code == 0 and mine.poll() is None
        assert subreaper() == was
    finally:
        mine.kill()
        mine.wait()


SESSION_AGENT = """\
import json, os, sys
from pathlib import Path
from titan.evals.coding import sh
task = json.loads(os.environ["TITAN_EVAL_TASK"])
turn, turns = os.environ["TITAN_EVAL_TURN"], os.environ["TITAN_EVAL_TURNS"]
assert "turns" not in task and "scorers" not in task
if turn == "1":
    Path("calc.py").write_text("def add(a, b):\\n    return a + b\\n")
else:
    Path("test_calc.py").write_text("from calc import add\\nassert add(1, 2) == 3\\n")
    sh("python test_calc.py")
print(f"turn {turn}/{turns}: {task['user_instruction']}")
sys.exit(int(sys.argv[1]) if turn == sys.argv[2] else 0)
"""


def _session_task() -> dict[str, Any]:
    return {"id": "s", "user_instruction": "Write add", "workspace": {
        "files": {"calc.py": "def add(a, b):\n    return 0\n"}},
        "turns": [{"user_instruction": "Write add", "scorers": []},
                  {"user_instruction": "Now test it", "scorers": [
                      {"type": "allowed_paths", "paths": ["test_*.py"]}]}],
        "scorers": [{"type": "command", "name": "tests", "command": f"{PY} test_calc.py"}]}


def test_a_session_runs_one_agent_per_turn_with_turn_and_cumulative_diffs(tmp_path):
    agent = {"script_sha256": "abc", "filename": "agent.py", "args": ["0", "0"],
             "timeout_s": 30}
    report, code = grade(_session_task(), agent, tmp_path, lambda sha: SESSION_AGENT.encode())
    assert code == 0 and report["eval_error"] is None, report
    first, second = report["turns"]
    assert report["turns_planned"] == 2
    assert (first["turn"], first["user_instruction"], first["changed_paths"]) == (
        1, "Write add", ["calc.py"])
    assert "+    return a + b" in first["diff"] and "test_calc.py" not in first["diff"]
    assert "scorers" not in first  # the turn declared none
    assert second["changed_paths"] == ["test_calc.py"] and "a/calc.py" not in second["diff"]
    assert [s["verdict"] for s in second["scorers"]] == ["PASS"] and second["overall"] == "PASS"
    assert [(s["kind"], s.get("command") or s.get("path"), s["turn"])
            for s in report["trajectory"]] == [
        ("edit", "calc.py", 1), ("command", "python test_calc.py", 2),
        ("edit", "test_calc.py", 2)]
    # The session's own result: the cumulative change, graded by the task's scorers.
    assert report["changed_paths"] == ["calc.py", "test_calc.py"]
    assert report["overall"] == "PASS" and report["scorers"][0]["name"] == "tests"


def test_a_failed_turn_ends_the_session(tmp_path):
    agent = {"script_sha256": "abc", "filename": "agent.py", "args": ["3", "1"],
             "timeout_s": 30}
    report, code = grade(_session_task(), agent, tmp_path, lambda sha: SESSION_AGENT.encode())
    assert code == 3 and report["agent_exit_code"] == 3
    assert [t["turn"] for t in report["turns"]] == [1] and report["turns_planned"] == 2
    assert report["changed_paths"] == ["calc.py"]
    # The session's tests fail: the test file of turn 2 was never written.
    assert report["overall"] == "FAIL"
