"""The agent under test of a coding evaluation cannot grade itself.

The coding job (the harness: titan/evals/coding_job.py) holds a job token, which can do what an
operator can. The agent it runs is the subject of the evaluation: if it could use that token it
could read the task's scorers, post its own grade, submit jobs and read the store. Here the
agent is an attacker: it tries every Titan credential in its environment against the master's
API, looks for one in the files around its workspace, and (run as another user than root,
where that is possible) in the environment, command line and memory of the processes above it.
It must find one credential only, its run's agent token, which calls its run's tools and
records its answer and events, and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import nobody_python
from tests.integration.harness import Cluster, isolated_cluster

ATTACKER = r'''
import json, os, re, sys
from pathlib import Path

import httpx

from titan import evals

TOKEN = re.compile(r"tt_[A-Za-z0-9_-]{20,}|tr_[A-Za-z0-9_-]{20,}"
                   r"|t[jaw]\.[A-Za-z0-9_.-]+\.[0-9a-f]{32,40}")
evaluation, mode = sys.argv[1], sys.argv[2]
run = os.environ["TITAN_EVAL_RUN"]
task = json.loads(os.environ["TITAN_EVAL_TASK"])
api = os.environ["TITAN_TOOL_PROXY"].rsplit("/runs", 1)[0]


def kind(token):
    return re.split(r"[._]", token, 1)[0]


def tokens_in(text):
    return sorted({kind(t) for t in TOKEN.findall(text)})


# Every credential in the environment, by the variable that holds it.
found = {name: m for name, value in os.environ.items() for m in TOKEN.findall(value)}
forged = {"diff": "", "changed_paths": [], "overall": "PASS", "trajectory": [],
          "scorers": [{"name": "forged", "type": "command", "verdict": "PASS",
                       "summary": "", "detail": ""}],
          "agent_exit_code": 0, "agent_output_tail": "", "eval_error": None}
probes = [
    ("read the task's scorers", "GET", f"/evaluations/{evaluation}/tasks/{task['id']}", None),
    ("read the evaluation", "GET", f"/evaluations/{evaluation}", None),
    ("post its own grade", "POST", f"/runs/{run}/eval/coding", forged),
    ("submit a job", "POST", "/dags",
     {"name": "agent-escape", "jobs": [{"job_id": "x", "command": "echo escaped"}]}),
    ("read the store", "GET", "/store/values/agent-escape", None),
    ("mint an admin token", "POST", "/tokens", {"role": "admin"}),
    ("mint an agent token", "POST", f"/runs/{run}/eval/agent-token", None),
]
attempts = []
with httpx.Client(timeout=30, trust_env=False) as http:
    for name, token in found.items():
        for what, method, path, body in probes:
            r = http.request(method, api + path, json=body,
                             headers={"Authorization": f"Bearer {token}"})
            attempts.append({"variable": name, "kind": kind(token), "what": what,
                             "status": r.status_code, "leaked": "hidden-check-q9z" in r.text})

# Files around the workspace: the harness's directory and the job's.
base = Path(os.environ["TITAN_EVAL_WORKSPACE"]).parent
files_with_tokens, files_seen = [], 0
for root, _, names in os.walk(base.parent.parent):
    for n in names:
        path = Path(root) / n
        try:
            if path.is_symlink() or path.stat().st_size > 1 << 20:
                continue
            text = path.read_text(errors="replace")
        except OSError:
            continue
        files_seen += 1
        if tokens_in(text):
            files_with_tokens.append(str(path))

# The processes above it: their command line, environment and memory.
procs = []
pid = os.getppid()
while mode == "proc" and pid > 1:
    entry = {"pid": pid, "owner": os.stat(f"/proc/{pid}/environ").st_uid}
    entry["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
        errors="replace")
    entry["cmdline_tokens"] = tokens_in(entry["cmdline"])
    try:
        entry["environ"] = tokens_in(Path(f"/proc/{pid}/environ").read_bytes().decode(
            errors="replace"))
    except OSError as exc:
        entry["environ"] = f"denied: {exc.strerror}"
    try:
        heap = [line.split()[0] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
                if line.endswith("[heap]")]
        seen = []
        with open(f"/proc/{pid}/mem", "rb") as mem:
            for span in heap:
                start, end = (int(x, 16) for x in span.split("-"))
                mem.seek(start)
                seen += tokens_in(mem.read(min(end - start, 64 << 20)).decode("latin-1"))
        entry["mem"] = sorted(set(seen))
    except OSError as exc:
        entry["mem"] = f"denied: {exc.strerror}"
    procs.append(entry)
    status = Path(f"/proc/{pid}/status").read_text()
    pid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))

# What it may do: its run's tools and trace, and its answer.
legit = {}
for what, call in (("event", lambda: evals.event("custom", {"probed": len(attempts)})),
                   ("respond", lambda: evals.respond("probed"))):
    try:
        call()
        legit[what] = "ok"
    except Exception as exc:
        legit[what] = f"{type(exc).__name__}: {exc}"
print("PROBES " + json.dumps({"found": {n: kind(t) for n, t in found.items()},
                              "attempts": attempts, "legit": legit, "procs": procs,
                              "files_seen": files_seen,
                              "files_with_tokens": files_with_tokens}), flush=True)
'''

TASK = {
    "id": "probe",
    "user_instruction": "Fix add() in calc.py.",
    "workspace": {"files": {"calc.py": "def add(a, b):\n    return a - b\n"}},
    # The hidden check: the agent must neither read it nor replace its verdict.
    "scorers": [{"type": "command", "name": "hidden-check-q9z",
                 "command": "python -c \"import calc, sys; sys.exit(calc.add(2, 3) != 5)\""}],
}


def evaluate(c: Cluster, name: str, mode: str, scripts: Path) -> tuple[dict[str, Any], Any]:
    """Run the attacker as a coding evaluation's agent; what it found, and the run's trace."""
    (scripts / "attacker.py").write_text(ATTACKER)
    client = c.client()
    client.create_evaluation(name, {"name": name, "script": "attacker.py", "args": [name, mode],
                                    "timeout_s": 240}, [TASK], base=scripts)
    client.run_evaluation(name)
    row = client.wait_evaluation(name, timeout=300)["tasks"][0]
    assert row["run"]["status"] == "completed", row
    trace = client.evaluation_run(name, row["task_id"], row["run"]["id"])
    tail = trace["coding"]["agent_output_tail"]
    lines = [ln for ln in tail.splitlines() if ln.startswith("PROBES ")]
    assert lines, trace["coding"]
    return json.loads(lines[-1][len("PROBES "):]), trace


def assert_no_credential_but_its_own(probed: dict[str, Any], trace: Any) -> None:
    # One credential in its environment: its run's agent token, not the harness's job token.
    assert probed["found"] == {"TITAN_TOOL_TOKEN": "ta"}, probed["found"]
    # With it, every route that reads or changes the cluster, or grades the run, is refused.
    assert probed["attempts"], probed
    for attempt in probed["attempts"]:
        assert attempt["status"] in (401, 403) and not attempt["leaked"], attempt
    # It still does what an agent under test does: its answer and its events are recorded.
    assert probed["legit"] == {"event": "ok", "respond": "ok"}, probed["legit"]
    assert trace["final_response"] == "probed"
    # The grade is the harness's: the hidden check failed (add() still subtracts).
    coding = trace["coding"]
    assert [(s["name"], s["verdict"]) for s in coding["scorers"]] == [
        ("hidden-check-q9z", "FAIL")], coding
    assert coding["overall"] == "FAIL", coding
    assert probed["files_seen"] > 0 and probed["files_with_tokens"] == [], probed


def harness_log(c: Cluster, trace: Any) -> str:
    return c.client().fetch_logs(f"{trace['header']['id']}_AGENT/agent")


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp is root's alone), for --run-as."""
    root = Path(tempfile.mkdtemp(prefix="titan-eval-agent-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_agent_under_test_holds_no_credential_but_its_runs(tmp_path: Path) -> None:
    c = isolated_cluster(tmp_path / "cluster")
    try:
        probed, trace = evaluate(c, "cred-probe", "env", tmp_path)
        assert_no_credential_but_its_own(probed, trace)
        # The harness was not dumpable while the agent ran (as root the agent could read it
        # all the same: the test below, and test_eval_agent_env.py, show what it stops).
        assert "this job's PR_GET_DUMPABLE: 0)" in harness_log(c, trace)
    finally:
        c.stop()


def nobodys_worker(c: Cluster, python: str) -> None:
    """A `titan worker` that runs as uid 65534 itself, not as root with --run-as: its jobs,
    the harness among them, were never setuid (which leaves a process not dumpable), so
    nothing but the harness's own care keeps the agent, a process of the same user, out.
    ``python``: an interpreter uid 65534 can run (tests/integration/nobody_python.py)."""
    wd = c.root / "worker-nobody"
    wd.mkdir()
    os.chown(wd, 65534, 65534)
    token = (c.data / "worker.token").read_text().strip()
    c.workers.append(c._spawn(["worker", "--master", c.url, "--workdir", str(wd), "--slots",
                               "1"], "worker-0.log", env={**c.env, "TITAN_TOKEN": token,
                                                          "HOME": str(wd)},
                              cwd=wd, user=65534, group=65534, extra_groups=[],
                              python=python))
    c.wait_workers(1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to start a worker as uid 65534")
def test_the_agent_cannot_read_the_harness_process(world_readable_root: Path) -> None:
    # Worker, harness and agent all run as uid 65534: without more, the agent reads the
    # harness's /proc/<pid>/environ and memory, where its job token is. The harness is not
    # dumpable while the agent runs, so they are refused, and its /proc files are root's.
    # (The worker's own environment, of the same user, still holds the worker's token: only
    # --run-as keeps a job out of it, docs/security.md.)
    python = nobody_python.interpreter()
    if python is None:
        pytest.skip("no interpreter uid 65534 can run with Titan here (nobody_python.py)")
    c = Cluster(world_readable_root)
    try:
        c.start_master()
        nobodys_worker(c, python)
        scripts = world_readable_root / "agent-scripts"
        scripts.mkdir()
        probed, trace = evaluate(c, "proc-probe", "proc", scripts)
        assert_no_credential_but_its_own(probed, trace)
        # The first process above the agent that is not strace (tracing it) is the harness.
        harness = next(p for p in probed["procs"] if not p["cmdline"].startswith("strace "))
        assert harness["owner"] == 0, harness  # not dumpable: its /proc files are root's
        assert str(harness["environ"]).startswith("denied"), harness
        assert str(harness["mem"]).startswith("denied"), harness
        assert harness["cmdline_tokens"] == [], harness
        assert "this job's PR_GET_DUMPABLE: 0)" in harness_log(c, trace)
    finally:
        c.stop()
