"""A replay gives the agent back what each call gave it — bytes as bytes (recorded whole, past
the blob store's threshold too; a run recorded before Titan kept bytes says why it cannot),
exceptions of their own class with their data — and ends as the original did."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster
from tests.integration.test_replay_sdk import replay, run_script, write

BYTES_AGENT = """
import hashlib
import titan

@titan.tool
def fetch(url):  # stands for urllib.request.urlopen(url).read(): 100 KB, a blob on the master
    return bytes(range(256)) * 400

@titan.tool
def small():
    return b"\\x00\\xffabc"

@titan.tool
def summarize(text):
    return len(text)

with titan.trace.run("bytes-agent") as run:
    print(run.id, flush=True)
    s = small()
    page = fetch("http://example/doc")
    n = summarize(page.decode("latin-1"))
    with titan.trace.action("report", inputs={"small": type(s).__name__}) as a:
        a.outputs = {"n": n, "sha": hashlib.sha256(page).hexdigest()}
"""

# A run as Titan recorded it before it kept bytes: bytes over 256 as their sha256 and size.
OLD_BYTES_AGENT = """
import contextlib, os
import titan
from titan.trace.canonical import bytes_as_before

@titan.tool
def size_of(data):
    return len(data)

@titan.tool
def fetch(url):
    return b"<html>" + b"lorem ipsum " * 100 + b"</html>"

with titan.trace.run("old-bytes-agent") as run:
    print(run.id, flush=True)
    with contextlib.nullcontext() if os.environ.get("TITAN_REPLAY") else bytes_as_before():
        size_of(b"x" * 1000)
        fetch("http://example/doc").decode()
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("replay-values"))
    try:
        c.up(slots=2)
        yield c
    finally:
        c.stop()


def test_a_tool_returning_bytes_replays_them(cluster: Cluster, tmp_path: Path) -> None:
    run_id = run_script(cluster, write(tmp_path, "agent.py", BYTES_AGENT))
    actions = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    fetched = next(a for a in actions if a["name"] == "fetch")
    assert fetched["outputs_size"] > 64 * 1024  # kept whole, in the blob store
    full = cluster.api("GET", f"/runs/{run_id}/actions/{fetched['seq']}")
    assert set(full["outputs"]) == {"$bytes"} and full["outputs_complete"] is not False
    report = replay(cluster, run_id)
    assert report["status"] == "completed", (report.get("error"), report["divergences"])
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0
    replayed = cluster.api("GET", f"/runs/{report['run_id']}/actions")["actions"]
    seen = [a for a in replayed if a["name"] == "report"]
    assert [a["inputs"] for a in seen] == [{"small": "bytes"}]
    original = next(a for a in actions if a["name"] == "report")
    assert seen[0]["outputs"] == original["outputs"]


def test_a_run_recorded_before_bytes_were_kept_says_so(cluster: Cluster,
                                                      tmp_path: Path) -> None:
    run_id = run_script(cluster, write(tmp_path, "old.py", OLD_BYTES_AGENT))
    report = replay(cluster, run_id)
    # Its bytes inputs still match as they were hashed; its bytes output cannot be given back,
    # and the replay says so at that call rather than handing the agent a dict.
    assert report["status"] == "failed", report
    assert "tool call 'fetch' #0" in report["error"], report["error"]
    assert "recorded before Titan kept bytes" in report["error"], report["error"]
    kinds = {d["name"]: d["kind"] for d in report["divergences"]}
    assert kinds == {"fetch": "redacted"}, report["divergences"]
    assert report["matched"] == 1


ERRORS_AGENT = """
import urllib.error
import httpx  # its HTTPError shares the name: by name alone the replay could not choose
import titan

class RateLimited(Exception):
    def __init__(self, retry_after, msg="rate limited"):
        super().__init__(msg)
        self.retry_after = retry_after

@titan.tool
def call_api(i):
    if i == 0:
        raise RateLimited(2.5)
    raise urllib.error.HTTPError("http://x/y", 404, "Not Found", None, None)

with titan.trace.run("errors-agent") as run:
    print(run.id, flush=True)
    seen = {}
    try:
        call_api(0)
    except RateLimited as e:
        seen["retry_after"] = e.retry_after
    try:
        call_api(1)
    except urllib.error.HTTPError as e:
        seen["code"] = e.code
    with titan.trace.action("report", inputs=seen) as a:
        a.outputs = seen
"""


def test_a_replayed_exception_is_of_its_own_class_with_its_data(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    run_id = run_script(cluster, write(tmp_path, "errors.py", ERRORS_AGENT))
    actions = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    failed = [a for a in actions if a["name"] == "call_api"]
    assert [a["error"]["type"] for a in failed] == ["RateLimited", "HTTPError"]
    assert failed[1]["outputs"]["$error"]["module"] == "urllib.error"
    assert [a["inputs"] for a in actions if a["name"] == "report"] == [
        {"retry_after": 2.5, "code": 404}]
    report = replay(cluster, run_id)  # strict: the report's inputs must be the same
    assert report["status"] == "completed", (report.get("error"), report["divergences"])
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0
    replayed = cluster.api("GET", f"/runs/{report['run_id']}/actions")["actions"]
    assert [a["outputs"] for a in replayed if a["name"] == "report"] == [
        {"retry_after": 2.5, "code": 404}]
    assert [(a["outcome"], a["error"]["type"]) for a in replayed
            if a["name"] == "call_api"] == [("error", "RateLimited"), ("error", "HTTPError")]


COMMAND_AGENT = """
import subprocess, sys
import titan

@titan.tool
def run_tests(path):
    code = "import sys; sys.stderr.write('E   assert 1 == 2\\\\n'); sys.exit(1)"
    return subprocess.run([sys.executable, "-c", code], check=True,
                          capture_output=True).stdout.decode()

with titan.trace.run("command-agent") as run:
    print(run.id, flush=True)
    try:
        feedback = run_tests("tests/")
    except subprocess.CalledProcessError as e:
        feedback = f"exit {e.returncode}: {e.stderr.decode().strip()} ({len(e.cmd)} args)"
    with titan.trace.action("feedback", inputs={"text": feedback}) as a:
        a.outputs = feedback
"""


def test_a_replayed_exception_gives_back_the_bytes_it_carried(cluster: Cluster,
                                                              tmp_path: Path) -> None:
    # A failed command's stderr (bytes) was dropped: the replay failed with AttributeError
    # in the agent's except clause (QA r07).
    run_id = run_script(cluster, write(tmp_path, "command.py", COMMAND_AGENT))
    actions = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    assert [a["inputs"] for a in actions if a["name"] == "feedback"] == [
        {"text": "exit 1: E   assert 1 == 2 (3 args)"}]
    report = replay(cluster, run_id)  # strict: the feedback's inputs must be the same
    assert report["status"] == "completed", (report.get("error"), report["divergences"])
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0


ITERABLES_AGENT = """
import collections
import titan

@titan.tool
def list_files(folder):
    return {"a.py": 10, "b.py": 20, "c.py": 30}.keys()

@titan.tool
def recent_messages(n):
    return collections.deque(["hi", "there"], maxlen=n)

@titan.tool
def pages(n):
    return range(n)

with titan.trace.run("iterables-agent") as run:
    print(run.id, flush=True)
    result = {"files": list(list_files("src")), "msgs": list(recent_messages(5)),
              "pages": sum(1 for _ in pages(3))}
    with titan.trace.action("report", inputs=result) as a:
        a.outputs = result
"""

GENERATOR_AGENT = """
import titan

@titan.tool
def rows(n):
    return (i * i for i in range(n))

with titan.trace.run("generator-agent") as run:
    print(run.id, flush=True)
    total = sum(rows(4))
    with titan.trace.action("report", inputs={"total": total}) as a:
        a.outputs = total
"""


def test_iterables_replay_as_their_items(cluster: Cluster, tmp_path: Path) -> None:
    # dict.keys(), a deque, a range were recorded as their repr: the replay handed back a
    # string, the agent iterated its characters, and the replay still matched (QA r08).
    run_id = run_script(cluster, write(tmp_path, "iterables.py", ITERABLES_AGENT))
    actions = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    assert [a["outputs"] for a in actions if a["channel"] == "tool"] == [
        ["a.py", "b.py", "c.py"], ["hi", "there"], [0, 1, 2]]
    report = replay(cluster, run_id)  # strict: the report's inputs must be the same
    assert report["status"] == "completed", (report.get("error"), report["divergences"])
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0


def test_a_generator_returned_is_not_replayable_and_the_replay_says_so(
        cluster: Cluster, tmp_path: Path) -> None:
    run_id = run_script(cluster, write(tmp_path, "generator.py", GENERATOR_AGENT))
    actions = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    # The caller got its items (recording consumed nothing); the recording says what it holds.
    assert [a["inputs"] for a in actions if a["name"] == "report"] == [{"total": 14}]
    rows = next(a for a in actions if a["name"] == "rows")
    assert rows["outputs"]["$repr"] == "<generator object rows.<locals>.<genexpr>>"
    report = replay(cluster, run_id)
    assert report["status"] == "failed", report
    assert "tool call 'rows' #0" in report["error"], report["error"]
    assert "recorded only as its repr" in report["error"], report["error"]
    assert {d["name"]: d["kind"] for d in report["divergences"]} == {"rows": "not_replayable"}
    assert report["match_rate"] < 1.0
    # Allowed to, the replay runs it live, and the rest matches.
    live = replay(cluster, run_id, mode="lenient", allow_live=True)
    assert live["status"] == "completed", (live.get("error"), live["divergences"])
    replayed = cluster.api("GET", f"/runs/{live['run_id']}/actions")["actions"]
    assert [a["inputs"] for a in replayed if a["name"] == "report"] == [{"total": 14}]


INTERRUPTED = """
import titan

@titan.tool
def step(i):
    return i

with titan.trace.run("interrupted-agent") as run:
    print(run.id, flush=True)
    step(1)
    raise KeyboardInterrupt  # Ctrl-C
"""


def test_a_run_ended_by_ctrl_c_replays_as_cancelled(cluster: Cluster, tmp_path: Path) -> None:
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    path = write(tmp_path, "interrupted.py", INTERRUPTED)
    done = subprocess.run([sys.executable, str(path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stdout + done.stderr
    run_id = done.stdout.split()[0]
    deadline = time.monotonic() + 20
    while cluster.api("GET", f"/runs/{run_id}")["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert cluster.api("GET", f"/runs/{run_id}")["status"] == "cancelled"
    report = replay(cluster, run_id)
    assert (report["status"], report["error"]) == ("cancelled",
                                                   "interrupted (KeyboardInterrupt)"), report
    assert report["original"]["status"] == report["replay"]["status"] == "cancelled"
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0


HELPERS = """
import datetime, uuid

def stamp():
    return datetime.datetime.now().isoformat()

def new_id():
    return str(uuid.uuid4())
"""

HELPED_AGENT = """
import titan
from helpers import stamp, new_id

@titan.tool
def generate_report(topic):
    return {"topic": topic, "generated_at": stamp(), "id": new_id()}

with titan.trace.run("helped-agent") as run:
    print(run.id, flush=True)
    generate_report("x")
"""


def test_a_helper_only_a_tool_calls_is_no_determinism_finding(cluster: Cluster,
                                                              tmp_path: Path) -> None:
    # QA r12: the clock read and uuid4() of a local module's helper that only the tool body
    # calls were HIGH findings (76), while the replay, which never runs them, matched.
    write(tmp_path, "helpers.py", HELPERS)
    run_id = run_script(cluster, write(tmp_path, "agent.py", HELPED_AGENT))
    report = cluster.api("GET", f"/runs/{run_id}/determinism")
    assert set(report["analyzed"]["files"]) >= {"agent.py", "helpers.py"}, report["analyzed"]
    static = [f for f in report["findings"] if f.get("file")]
    assert static == [], static
    assert replay(cluster, run_id)["match_rate"] == 1.0


STAMPING_AGENT = """
import datetime, os, uuid
import titan

@titan.tool(pure=True)
def stamp(topic):
    return {"topic": topic, "at": datetime.datetime.now(datetime.UTC).isoformat(),
            "id": str(uuid.uuid4()), "pid": os.getpid()}

@titan.tool
def ticket(topic):  # stands for an API that answers its own id and time: served on replay
    return {"id": str(uuid.uuid4()), "created_at": datetime.datetime.now().isoformat()}

with titan.trace.run("stamping-agent") as run:
    print(run.id, flush=True)
    stamp("x")
    ticket("x")
"""


def test_a_pure_tools_fresh_output_is_found_and_verify_proves_it(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    # Seed 004 scans tool outputs for the current time and UUIDs; Titan read no tool's
    # output (a QA pass). A pure tool's is read, and says --verify; a tool that is not pure
    # is served by every replay and stays quiet.
    run_id = run_script(cluster, write(tmp_path, "agent.py", STAMPING_AGENT))
    report = cluster.api("GET", f"/runs/{run_id}/determinism")
    found = {(f["kind"], f["action"]): f for f in report["findings"]
             if f["source"] == "dynamic"}
    assert set(found) == {("timestamp_in_output", "stamp"), ("uuid_in_output", "stamp"),
                          ("pid_in_output", "stamp")}, report["findings"]
    assert all("will differ on replay with --verify" in f["description"]
               for f in found.values())
    assert found[("timestamp_in_output", "stamp")]["severity"] == "high"
    # What the finding says: a strict replay serves it, --verify runs it again and differs.
    assert replay(cluster, run_id)["match_rate"] == 1.0
    verified = replay(cluster, run_id, verify=True)
    assert [d["kind"] for d in verified["divergences"]] == ["output_mismatch"], verified
