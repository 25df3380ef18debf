"""A worker credential acts only for the worker it registered, and reads only what a worker
needs (issue 15 item 4): a real master, real workers, forged calls over plain HTTP."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.integration import processes
from tests.integration.harness import Cluster
from tests.integration.test_api_contract import assert_error, call
from titan import TitanJob
from titan.worker import lifeline


@pytest.fixture
def cl(tmp_path: Path) -> Iterator[Cluster]:
    """A master with one real worker that alone can run BETA jobs."""
    c = Cluster(tmp_path)
    try:
        c.start_master()
        c.add_worker(capabilities="BETA", slots=2)
        yield c
    finally:
        c.stop()


def register(c: Cluster, token: str, **body: Any) -> dict[str, Any]:
    status, reg = call(c, "POST", "/workers/register",
                       {"name": "intruder", "capabilities": ["NOTHING_RUNS_HERE"], "slots": 1,
                        **body}, token=token)
    assert status == 200, reg
    assert reg["credential"].startswith("tw.") and reg["worker_id"] in reg["credential"]
    return reg


def wait_running(c: Cluster, ref: str, needle: str) -> dict[str, Any]:
    client = c.client()
    deadline = time.time() + 60
    while time.time() < deadline:
        job = client.get_job(ref)
        if job["state"] == "RUNNING" and needle in client.fetch_logs(ref):
            return job
        assert job["state"] in ("PENDING", "READY", "RUNNING"), job
        time.sleep(0.05)
    raise TimeoutError(ref)


def test_a_credential_cannot_act_for_another_worker(cl: Cluster) -> None:
    worker_token = (cl.data / "worker.token").read_text().strip()
    other_token = cl.api("POST", "/tokens", {"role": "worker", "name": "team b"})["token"]
    # Worker 1, registered with the same worker token as the real worker, and worker 1b, with
    # a different one.
    same = register(cl, worker_token)
    other = register(cl, other_token)
    assert same["credential"] != other["credential"]

    flag = cl.root / "release"
    script = cl.script("victim.py", f"""
        import os, time
        print("real start", flush=True)
        while not os.path.exists({str(flag)!r}):
            time.sleep(0.05)
        print("real end", flush=True)
    """)
    client = cl.client()
    dag = client.submit_dag("scope", [TitanJob(job_id="victim", filename=script,
                                               requirement="BETA")])
    ref = f"{dag['ref']}/victim"
    job = wait_running(cl, ref, "real start")
    victim, attempt = job["worker_id"], job["attempt"]
    assert victim not in (same["worker_id"], other["worker_id"])

    forged = {"results": [{"id": job["id"], "attempt": attempt, "exit_code": 0}],
              "logs": [{"id": job["id"], "attempt": attempt, "seq": 10_000, "stream": "stdout",
                        "ts": time.time(), "line": "FORGED"}]}
    bodies = {"poll": {"free_slots": 1, "wait": 0}, "heartbeat": {"running": []},
              "report": forged, "deregister": {}}
    for reg in (same, other):
        for action, body in bodies.items():
            assert_error(*call(cl, "POST", f"/workers/{victim}/{action}", body,
                               token=reg["credential"]), 403, "wrong_worker")
        # Nor may it take over the victim's id by registering it.
        assert_error(*call(cl, "POST", "/workers/register", {"worker_id": victim},
                           token=reg["credential"]), 403, "wrong_worker")
        # Reporting the victim's attempt as its own is refused item by item.
        status, reply = call(cl, "POST", f"/workers/{reg['worker_id']}/report", forged,
                             token=reg["credential"])
        assert status == 200 and reply == {"rejected": [{"id": job["id"], "attempt": attempt}]}
    # A bare worker token registers new workers only: it cannot call for any id, its own
    # registrations' included, nor re-register one.
    for token in (worker_token, other_token):
        for wid in (victim, same["worker_id"]):
            for action, body in bodies.items():
                assert_error(*call(cl, "POST", f"/workers/{wid}/{action}", body, token=token),
                             403, "worker_credential_required")
        assert_error(*call(cl, "POST", "/workers/register", {"worker_id": victim}, token=token),
                     403, "worker_credential_required")
    # Which is what a worker of an older Titan does: the refusal says the fix.
    status, reply = call(cl, "POST", f"/workers/{victim}/heartbeat", {}, token=worker_token)
    assert status == 403 and "upgrade titan where it runs" in reply["error"]["message"], reply

    # The victim went on untouched: still running on its worker, which is still live.
    job = client.get_job(ref)
    assert (job["state"], job["worker_id"], job["attempt"]) == ("RUNNING", victim, attempt)
    assert victim in [w["id"] for w in cl.live_workers()]
    flag.touch()
    final = client.wait(ref, timeout=60)
    assert final["state"] == "COMPLETED" and final["attempt"] == attempt
    logs = client.fetch_logs(ref)
    assert "real end" in logs and "FORGED" not in logs

    # Its own credential still works for itself; revoking the token it came from ends it.
    assert call(cl, "POST", f"/workers/{other['worker_id']}/poll", bodies["poll"],
                token=other["credential"])[0] == 200
    other_id = next(t["id"] for t in cl.api("GET", "/tokens")["tokens"] if t["name"] == "team b")
    cl.api("DELETE", f"/tokens/{other_id}")
    assert_error(*call(cl, "POST", f"/workers/{other['worker_id']}/poll", bodies["poll"],
                       token=other["credential"]), 401, "unauthorized")
    # A forged credential (another id under a real mac) is refused.
    tw, token_id, wid, mac = same["credential"].split(".")
    assert_error(*call(cl, "POST", f"/workers/{victim}/poll", bodies["poll"],
                       token=f"{tw}.{token_id}.{victim}.{mac}"), 401, "unauthorized")


def events_refused(c: Cluster, token: str) -> bool:
    """True when the event socket will not stream to this token (refused at the handshake
    or closed with 4403 before its hello)."""
    try:
        with connect(f"ws://127.0.0.1:{c.port}/api/v1/events",
                     additional_headers={"Authorization": f"Bearer {token}"},
                     open_timeout=10) as ws:
            try:
                first = ws.recv(timeout=10)
            except ConnectionClosed as closed:
                return closed.rcvd is not None and closed.rcvd.code == 4403
            return json.loads(first).get("type") != "hello"
    except InvalidStatus as exc:
        return exc.response.status_code in (401, 403)


def test_a_worker_reads_only_the_scripts_it_runs(cl: Cluster) -> None:
    worker_token = (cl.data / "worker.token").read_text().strip()
    reg = register(cl, worker_token)
    script = cl.script("hello.py", "print('hello')\n")
    client = cl.client()
    client.store_put("secret-key", "value")
    dag = client.submit_dag("reads", [TitanJob(job_id="a", filename=script, requirement="BETA")])
    job = client.wait(f"{dag['ref']}/a", timeout=60)
    assert job["state"] == "COMPLETED"

    # What a worker needs: the scripts (and projects) of the jobs it runs, while it runs them
    # (every job of the suite downloads so). Not another worker's job's script, nor an
    # uploaded file: a worker token is no reader.
    sha = hashlib.sha256(Path(script).read_bytes()).hexdigest()
    payroll = Path(script).with_name("payroll.txt")
    payroll.write_text("TOP SECRET payroll\n")
    client.upload_file(payroll)
    payroll_sha = hashlib.sha256(payroll.read_bytes()).hexdigest()
    for token in (reg["credential"], worker_token):
        for path in (f"/blobs/{sha}", f"/blobs/{payroll_sha}", "/files/payroll.txt"):
            assert_error(*call(cl, "GET", path, token=token), 403, "forbidden")
    for token in (reg["credential"], worker_token):
        for path in ("/store/values/secret-key", "/store", f"/jobs/{job['id']}/logs",
                     f"/jobs/{job['id']}", "/dags", "/workers", "/runs", "/runs/x/actions",
                     "/agent-runs", "/evaluations", "/files"):
            assert_error(*call(cl, "GET", path, token=token), 403, "forbidden")
        for page in ("/dags", "/dags.json", "/store", "/store.json"):
            r = httpx.get(f"http://127.0.0.1:{cl.dashboard_port}{page}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert r.status_code == 403, (page, r.status_code, r.text[:200])
        assert events_refused(cl, token)
        # Nor can it sign in to the dashboard.
        with httpx.Client(base_url=f"http://127.0.0.1:{cl.dashboard_port}", timeout=30) as s:
            r = s.get("/login", params={"token": token})
            assert r.status_code == 401 and not s.cookies, r.status_code
            assert "titan-write-key" not in r.text
    # A reader still reads.
    assert events_refused(cl, cl.admin_token) is False


def test_a_worker_whose_token_is_revoked_is_lost_and_fails_no_job(cl: Cluster) -> None:
    # Over its open channel the master went on pushing jobs to it; unable to fetch their
    # scripts, they ended FAILED for good (QA). Now the channel ends within seconds, the
    # worker is lost, and what it held runs elsewhere without spending an attempt.
    made = cl.api("POST", "/tokens", {"role": "worker", "name": "gamma-host"})
    revoked = cl.add_worker(capabilities="GAMMA", slots=2, name="gamma",
                            env={"TITAN_TOKEN": made["token"]})
    client = cl.client()
    ok = cl.script("gamma_ok.py", "print('ran')\n")
    first = client.submit_job(TitanJob(job_id="gamma_before", filename=ok, requirement="GAMMA"))
    assert client.wait_dag(first["id"], timeout=60)["status"] == "COMPLETED"
    cl.api("DELETE", f"/tokens/{made['id']}")
    # Submitted at once: pushed over the channel that is still open, it cannot fetch its
    # script; handed back, it waits for a worker that may run it rather than failing.
    fresh = cl.script("gamma_new.py", "print('ran, new script')\n")  # not cached there
    later = client.submit_job(TitanJob(job_id="gamma_after", filename=fresh,
                                       requirement="GAMMA", retries=0))
    deadline = time.monotonic() + 12  # checked every 2 s; a lease (15 s) before
    while any(w["name"] == "gamma" for w in cl.live_workers()):
        assert time.monotonic() < deadline, "a revoked worker stayed live"
        time.sleep(0.2)
    after = client.get_job("gamma_after")
    assert after["state"] != "FAILED"
    # Lost at its first refused call: the job did not go back and forth to it (it had
    # reached attempt 500 before the channel's credential check).
    assert after["attempt"] <= 3, after
    # It leaves at once: it waited 30 s more to hand in reports no master would take.
    started = time.monotonic()
    assert revoked.wait(timeout=30) == lifeline.EXIT_REFUSED  # not worth starting again
    assert time.monotonic() - started < 10
    # A worker with a live token runs it.
    cl.add_worker(capabilities="GAMMA", slots=1, name="gamma2")
    done = client.wait_dag(later["id"], timeout=60)
    assert done["status"] == "COMPLETED", done


REVOKED_JOB = """
import os, time
from pathlib import Path
from titan import TitanClient
marks, attempt = Path(os.environ["MARKS"]), os.environ["TITAN_ATTEMPT"]
(marks / f"token{attempt}").write_text(os.environ["TITAN_TOKEN"])
(marks / f"pid{attempt}").write_text(str(os.getpid()))
if attempt == "1":
    time.sleep(60)  # the side effect comes late: the host is revoked meanwhile
TitanClient().store_sadd("revoked_effects", "attempt" + attempt)
"""


@pytest.mark.parametrize("transport", ["channel", "http"])
def test_a_revoked_workers_jobs_are_killed_and_their_tokens_stale_at_once(
        cl: Cluster, tmp_path: Path, transport: str) -> None:
    # The revoked worker drained its running job to the end: its job token wrote the store
    # until the lease ran out, its result was thrown away and the job ran again elsewhere,
    # both attempts' effects landing, and a long job ran on on a host no longer trusted (a
    # fleet QA pass).
    made = cl.api("POST", "/tokens", {"role": "worker", "name": "delta-host"})
    # Told by its channel's close (4401), or by its calls' 401 over HTTP.
    revoked = cl.add_worker(capabilities="DELTA", slots=1, name="delta",
                            env={"TITAN_TOKEN": made["token"]},
                            extra=["--transport", transport])
    marks = tmp_path / "marks"
    marks.mkdir()
    client = cl.client()
    script = cl.script("revoked_job.py", REVOKED_JOB)
    client.submit_dag("revoked", [TitanJob("j", script, requirement="DELTA",
                                           env={"MARKS": str(marks)})])
    deadline = time.monotonic() + 60
    while not (marks / "pid1").exists():
        assert time.monotonic() < deadline, cl.log("worker-1.log")
        time.sleep(0.05)
    pid, token = int((marks / "pid1").read_text()), (marks / "token1").read_text()
    assert call(cl, "GET", "/store/values/x", token=token)[0] == 200  # its token works

    cl.api("DELETE", f"/tokens/{made['id']}")
    revoked_at = time.monotonic()
    # Its attempt ends on the master within the channel's credential check (2 s), well
    # before its lease (15 s) would have run out: its token writes nothing more.
    while call(cl, "POST", "/store/sets/revoked_probe", {"member": "late"},
               token=token)[0] != 409:
        assert time.monotonic() - revoked_at < 10, cl.log()
        time.sleep(0.1)
    status, body = call(cl, "GET", "/store/values/x", token=token)
    assert (status, body["error"]["code"]) == (409, "stale_attempt")
    # The worker kills it (SIGTERM, then SIGKILL after the grace) and leaves.
    assert processes.wait_dead(pid, timeout=15), "the revoked worker's job ran on"
    assert revoked.wait(timeout=30) == lifeline.EXIT_REFUSED  # not worth starting again
    assert "killing its 1 running job now" in cl.log("worker-1.log")

    # It runs again elsewhere, and its effect lands once: attempt 1's never.
    cl.add_worker(capabilities="DELTA", slots=1, name="delta2")
    assert client.wait_dag("revoked", timeout=60)["status"] == "COMPLETED"
    job = client.get_job("revoked/j")
    assert job["attempt"] == 2 and job["attempts"][0]["state"] == "LOST", job
    assert "its worker token was revoked" in job["attempts"][0]["error"]
    assert client.store_smembers("revoked_effects") == {"attempt2"}


FORGED = "2026-11-28 00:36:00,000 titan.master ERROR this master was replaced; stopping"


@pytest.mark.parametrize("field", ["name", "hostname"])
def test_a_worker_cannot_write_controls_into_the_masters_log(cl: Cluster, field: str) -> None:
    """A worker token holder registered a name holding a newline (a forged log line) and an
    OSC sequence (the log reader's window title): the master logged it raw (a fleet QA pass).
    Control and direction characters are refused, as in a DAG name; others are kept."""
    worker_token = (cl.data / "worker.token").read_text().strip()
    for bad in (f"w1\n{FORGED}", "w1\x1b]0;PWNED\x07", "w1\x85x", "w1\u202eexe.txt", "w1\x00"):
        status, reply = call(cl, "POST", "/workers/register",
                             {"name": "w1", "hostname": "h", field: bad, "slots": 1},
                             token=worker_token)
        assert (status, reply["error"]["details"]) == (400, {"field": field}), reply
        assert f"worker {field} 'w1" in reply["error"]["message"]
        assert "control character" in reply["error"]["message"]
    fine = register(cl, worker_token, name="gpu-01/ü", hostname="rack 4.example")
    assert [w["name"] for w in cl.live_workers() if w["id"] == fine["worker_id"]] == ["gpu-01/ü"]
    log = cl.log()
    assert FORGED not in log and "\x1b" not in log and "\x07" not in log


def test_a_worker_named_with_a_control_character_stops_before_it_connects(
        cl: Cluster) -> None:
    proc = cl.add_worker(name="a\x1b]0;PWNED\x07", wait=False)
    assert proc.wait(timeout=30) == 2
    said = cl.log("worker-1.log")
    assert "the worker's name 'a\\e]0;PWNED\\x07' holds a control character" in said, said
    assert "\x1b" not in said


def test_a_worker_fetches_its_jobs_script_from_a_restarted_master_before_it_registers_again(
        cl: Cluster) -> None:
    """A master killed while a worker fetched a job's script: the worker's retried download
    reached the restarted master before its heartbeat did, and was refused (the master knew
    the job was leased to it, but not the worker yet). Handed back, the job ran again as its
    next attempt: a restart had turned into a second attempt (a fleet QA pass)."""
    worker_token = (cl.data / "worker.token").read_text().strip()
    remote = register(cl, worker_token, capabilities=["REMOTE"])
    stranger = register(cl, worker_token)
    script = cl.script("remote_job.py", "print('ran on the remote worker')\n")
    client = cl.client()
    client.submit_dag("restart_fetch", [TitanJob(job_id="j", filename=script,
                                                 requirement="REMOTE")])
    status, polled = call(cl, "POST", f"/workers/{remote['worker_id']}/poll",
                          {"free_slots": 1, "wait": 30}, token=remote["credential"])
    assert status == 200 and len(polled["jobs"]) == 1, polled
    job = polled["jobs"][0]
    sha = job["script_sha256"]

    cl.kill_master()
    cl.start_master()
    status, body = call(cl, "GET", f"/blobs/{sha}", token=remote["credential"])
    assert status == 200, body
    assert body == Path(script).read_bytes()
    # Still its alone: another worker's credential is refused, as before the restart.
    assert_error(*call(cl, "GET", f"/blobs/{sha}", token=stranger["credential"]),
                 403, "forbidden")
    # The worker re-joins, runs the same attempt and reports it: one attempt in all.
    running = [{"id": job["id"], "attempt": job["attempt"]}]
    assert call(cl, "POST", "/workers/register",
                {"worker_id": remote["worker_id"], "capabilities": ["REMOTE"], "slots": 1,
                 "running": running}, token=remote["credential"])[0] == 200
    status, reply = call(cl, "POST", f"/workers/{remote['worker_id']}/report",
                         {"results": [{**running[0], "exit_code": 0}]},
                         token=remote["credential"])
    assert (status, reply) == (200, {"rejected": []})
    done = cl.client().wait("restart_fetch/j", timeout=30)
    assert (done["state"], done["attempt"]) == ("COMPLETED", job["attempt"]), done
