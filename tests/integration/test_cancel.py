"""Cancel, manual retry and stopping `titan up` against real processes: what is stopped
stops (process groups included), what depends on it is settled at once, what is finished
stays finished."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Cluster
from tests.integration.processes import SPAWNER, alive, children, wait_dead
from tests.integration.test_cli import titan
from titan.errors import Conflict
from titan.worker import fresh
from titan_sdk import TitanJob

MakeCluster = Callable[..., Cluster]

if sys.platform != "linux":  # pragma: no cover - /proc and process groups
    pytestmark = pytest.mark.skip("process checks need Linux")


def by_id(dag: dict) -> dict[str, dict]:
    return {j["job_id"]: j for j in dag["jobs"]}


def test_cancel_queued_and_running_jobs(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster().up(slots=1)
    spawner = cluster.script("spawner.py", SPAWNER)
    ok = cluster.script("ok.py", "print('ok')\n")
    pidfile = tmp_path / "grandchild.pid"
    client = cluster.client()
    client.submit_dag("runner", [
        TitanJob(job_id="busy", filename=spawner, args=[str(pidfile), "busy/pid"]),
        TitanJob(job_id="busy_child", filename=ok, parents=["busy"]),
    ])
    pid = int(client.store_wait("busy/pid", timeout=60))
    assert alive(pid)
    client.submit_dag("queued", [
        TitanJob(job_id="waiting", filename=ok),
        TitanJob(job_id="waiting_child", filename=ok, parents=["waiting"]),
    ])
    # READY as soon as the submission returns (stored so with it), and queued: no slot.
    assert client.get_job_status("waiting") == "READY"

    job = client.cancel("waiting")
    assert job["state"] == "CANCELLED" and job["started_at"] is None, job
    assert client.get_job("waiting_child")["state"] == "SKIPPED"
    assert client.wait("queued", timeout=10)["status"] == "CANCELLED"

    job = client.cancel("busy")
    assert job["state"] == "CANCELLED", job
    assert client.get_job("busy_child")["state"] == "SKIPPED"
    assert wait_dead(pid), f"grandchild {pid} of a cancelled job survived"
    # The slot is free again: a new job runs.
    client.submit_job(TitanJob(job_id="next", filename=ok))
    assert client.wait("next", timeout=60)["state"] == "COMPLETED"
    assert client.get_job("busy")["state"] == "CANCELLED"  # a late result changes nothing

    with pytest.raises(Conflict):
        client.cancel("next")
    with pytest.raises(Conflict):
        client.cancel("busy")


def test_cancel_a_whole_dag(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster().up(slots=1)
    spawner = cluster.script("spawner.py", SPAWNER)
    ok = cluster.script("ok.py", "print('ok')\n")
    pidfile = tmp_path / "grandchild.pid"
    client = cluster.client()
    client.submit_dag("doomed", [
        TitanJob(job_id="first", filename=ok),
        TitanJob(job_id="running", filename=spawner, args=[str(pidfile), "doomed/pid"],
                 parents=["first"]),
        TitanJob(job_id="queued", filename=ok, parents=["first"]),
        TitanJob(job_id="later", filename=ok, parents=["running", "queued"]),
        TitanJob(job_id="gpu", filename=ok, requirement="GPU"),
    ])
    pid = int(client.store_wait("doomed/pid", timeout=60))
    dag = client.cancel("DAG-doomed")
    jobs = by_id(dag)
    assert jobs["first"]["state"] == "COMPLETED"
    assert jobs["running"]["state"] == "CANCELLED"
    assert jobs["queued"]["state"] in ("CANCELLED", "SKIPPED")
    assert jobs["later"]["state"] in ("CANCELLED", "SKIPPED")
    assert jobs["gpu"]["state"] == "CANCELLED"
    assert not any(j["state"] in ("PENDING", "READY", "RUNNING") for j in dag["jobs"])
    assert client.wait("doomed", timeout=10)["status"] == "CANCELLED"
    assert wait_dead(pid), f"grandchild {pid} of a cancelled DAG survived"
    with pytest.raises(Conflict):
        client.cancel("DAG-doomed")
    with pytest.raises(Conflict):
        client.cancel("first")


def test_manual_retry_revives_skipped_children(cluster: Cluster) -> None:
    needs_fix = cluster.script("needs_fix.py", """
        import sys
        from titan import TitanClient
        if TitanClient().store_get("fixed") is None:
            sys.exit("not fixed yet")
        print("fixed now")
    """)
    ok = cluster.script("ok.py", "print('ok')\n")
    client = cluster.client()
    client.submit_dag("repair", [
        TitanJob(job_id="step", filename=needs_fix),
        TitanJob(job_id="child", filename=ok, parents=["step"]),
        TitanJob(job_id="grandchild", filename=ok, parents=["child"]),
    ])
    dag = client.wait("repair", timeout=60)
    assert dag["status"] == "FAILED", dag
    assert by_id(dag)["grandchild"]["state"] == "SKIPPED"
    with pytest.raises(Conflict):
        client.retry("child")  # skipped because of its parent: retry the parent instead
    client.store_put("fixed", "yes")
    job = client.retry("step")
    assert job["state"] in ("PENDING", "READY", "RUNNING", "COMPLETED"), job
    dag = client.wait("repair", timeout=60)
    assert dag["status"] == "COMPLETED", dag
    jobs = by_id(dag)
    assert jobs["step"]["attempt"] == 2
    assert jobs["child"]["state"] == jobs["grandchild"]["state"] == "COMPLETED"
    assert "fixed now" in client.fetch_logs("step")
    assert "not fixed yet" in client.fetch_logs("step", attempt=1)
    with pytest.raises(Conflict):
        client.retry("step")  # completed
    # A refused retry leaves the finished DAG finished: waited on, it answers at once, and
    # there is nothing left to cancel (it was held in memory as if running, for good).
    assert client.wait("repair", timeout=2)["status"] == "COMPLETED"
    with pytest.raises(Conflict, match="DAG 'repair' already ended COMPLETED"):
        client.cancel("repair")  # named as it was asked for, not by an internal id


def test_a_finished_dag_is_retried_whole(cluster: Cluster) -> None:
    # client.retry("DAG-x") answered "no job 'DAG-x'": a DAG's failed jobs could only be
    # retried one by one, and a job under a cancelled parent not at all.
    flaky = cluster.script("flaky_whole.py", """
        import sys
        from titan import TitanClient
        if TitanClient().store_incr("whole:tries") < 2:
            sys.exit("first try fails")
    """)
    ok = cluster.script("ok.py", "print('ok')\n")
    client = cluster.client()
    client.submit_dag("whole", [
        TitanJob(job_id="flaky", filename=flaky),
        TitanJob(job_id="after", filename=ok, parents=["flaky"]),
        TitanJob(job_id="fine", filename=ok),
    ])
    dag = client.wait("DAG-whole", timeout=60)
    assert dag["status"] == "PARTIAL", dag
    with pytest.raises(Conflict, match="still running"):
        client.submit_dag("busy", [TitanJob(job_id="slow", filename=cluster.script(
            "slow_whole.py", "import time; time.sleep(30)\n"))])
        client.retry("DAG-busy")
    client.cancel("DAG-busy")
    again = client.retry("DAG-whole")
    assert again["ref"] == "whole#1" and by_id(again)["fine"]["state"] == "COMPLETED"
    dag = client.wait("DAG-whole", timeout=60)
    assert dag["status"] == "COMPLETED", dag
    assert [by_id(dag)[j]["attempt"] for j in ("flaky", "after", "fine")] == [2, 1, 1]
    with pytest.raises(Conflict, match="nothing to retry"):
        client.retry("DAG-whole")
    out = titan(cluster, "retry", "DAG-busy").stdout  # the CLI, on a cancelled DAG
    assert out.strip() in ("busy#1: RUNNING", "busy#1: WAITING"), out
    client.cancel("DAG-busy")


def test_retrying_an_agent_runs_failed_stage_reopens_the_run(cluster: Cluster) -> None:
    # Its driver gone, the run had ended failed with its stage; retried and completed, the
    # stage said COMPLETED and the run still said failed (a review of DAG retry).
    flaky = cluster.script("flaky_stage.py", """
        import sys
        from titan import TitanClient
        if TitanClient().store_incr("stage:tries") < 2:
            sys.exit("first try fails")
    """)
    client = cluster.client()
    client.submit_dag("REOPEN_PLAN", [TitanJob(job_id="plan", filename=flaky)],
                      agent_run_id="REOPEN")
    assert client.wait("DAG-REOPEN_PLAN", timeout=60)["status"] == "FAILED"
    cluster.api("PATCH", "/runs/REOPEN", {"status": "ended"})  # what its driver says at exit
    assert cluster.api("GET", "/runs/REOPEN")["status"] == "failed"
    client.retry("DAG-REOPEN_PLAN")
    assert client.wait("DAG-REOPEN_PLAN", timeout=60)["status"] == "COMPLETED"
    deadline = time.monotonic() + 20
    while (run := cluster.api("GET", "/runs/REOPEN"))["status"] != "completed":
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    assert run["error"] is None


def test_killing_titan_up_takes_its_worker_and_jobs_down(cluster: Cluster, tmp_path: Path) -> None:
    """`titan up` killed outright (no chance to drain) must not leave its local worker and
    that worker's jobs running for ever against a master that is gone."""
    spawner = cluster.script("spawner.py", SPAWNER)
    client = cluster.client()
    client.submit_job(TitanJob(job_id="stuck", filename=spawner,
                               args=[str(tmp_path / "pid"), "stuck/pid"]))
    grandchild = int(client.store_wait("stuck/pid", timeout=60))
    assert cluster.master is not None
    workers = children(cluster.master.pid)
    assert workers, "titan up has no worker process"
    cluster.kill_master()  # SIGKILL to `titan up` alone, not to its worker's session
    for pid in [*workers, grandchild]:
        assert wait_dead(pid), f"process {pid} outlived `titan up`"


#: Says its pid in the store under argv[1], then sleeps.
SLEEPER = """
import os, sys, time
from titan import TitanClient
TitanClient().store_put(sys.argv[1], str(os.getpid()))
time.sleep(120)
"""


def test_a_worker_killed_outright_leaves_no_job_running(make_cluster: MakeCluster,
                                                       tmp_path: Path) -> None:
    """A job that ran on after its worker's `kill -9` ran unseen while its lease expired and
    the master ran it again elsewhere: twice at once. A forked job's zygote kills it; a
    subprocess dies with its worker (the kernel's parent-death signal). A fresh interpreter,
    a plain script's or an uploaded project's, sets that signal itself, told the worker's
    pid (no pre-exec hook: the worker starts it with vfork, titan.worker.fresh)."""
    c = make_cluster().start_master()
    worker = c.add_worker()
    sleeper = c.script("sleeper.py", SLEEPER)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "main.py").write_text(SLEEPER)
    client = c.client()
    client.upload_project_folder(tmp_path / "proj")
    jobs = [TitanJob(job_id=f"sleep-{runner}", filename=sleeper, runner=runner,
                     args=[f"orphan/{runner}"]) for runner in ("subprocess", "fork")]
    jobs.append(TitanJob(job_id="sleep-project", filename="proj/main.py", is_archive=True,
                         runner="subprocess", args=["orphan/project"]))
    pids = {}
    for job in jobs:
        client.submit_job(job)
        pids[job.args[0]] = int(client.store_wait(job.args[0], timeout=60))
    for fresh_one in ("orphan/subprocess", "orphan/project"):
        argv = Path(f"/proc/{pids[fresh_one]}/cmdline").read_bytes().split(b"\0")
        assert argv[1:3] == [b"-c", fresh.BOOTSTRAP.encode()], (fresh_one, argv[:3])
        assert argv[6] == str(worker.pid).encode(), (fresh_one, argv[6])
    worker.kill()
    worker.wait()
    for name, pid in pids.items():
        assert wait_dead(pid), f"job process {pid} ({name}) outlived its worker's kill -9"


#: Leaves a process behind that left the job's process group and session (setsid, double
#: fork) and closed the job's output: nothing tied it to the job any more.
#: Starts a process outside its own group (setsid, a double fork), its pid to argv[1].
DOUBLE_FORK = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(300)
    os._exit(0)
"""
ESCAPER = DOUBLE_FORK + """
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
print("left one behind")
"""


def test_a_process_a_job_left_behind_does_not_outlive_it(cluster: Cluster,
                                                         tmp_path: Path) -> None:
    # It ran on as the worker's user after its job COMPLETED (a security QA pass), able to
    # read later jobs' environments. The zygote, its subreaper, kills it after the grace.
    pidfile = tmp_path / "escaped.pid"
    client = cluster.client()
    client.submit_job(TitanJob(job_id="escaper", filename=cluster.script("escaper.py", ESCAPER),
                               args=[str(pidfile)]))
    assert client.wait("escaper", timeout=60)["state"] == "COMPLETED"
    pid = int(pidfile.read_text())
    assert wait_dead(pid, timeout=30), f"process {pid} left by a finished job survived"


def test_what_a_job_left_behind_dies_while_other_jobs_keep_the_zygote_busy(
        cluster: Cluster, tmp_path: Path) -> None:
    # The zygote looked for what finished jobs left only while no job ran on it: a hostile
    # job kept a sibling running (or resubmitted one) and its escaped process lived on for
    # good (a security QA pass). Each job is now its own descendants' subreaper, so what the
    # zygote finds among its children is a finished job's, whatever else runs.
    pidfile = tmp_path / "escaped.pid"
    client = cluster.client()
    busy = cluster.script("busy.py", "import time\ntime.sleep(120)\n")
    client.submit_dag("busy_zygote", [TitanJob(job_id="keeps_busy", filename=busy)])
    client.submit_job(TitanJob(job_id="escaper_busy",
                               filename=cluster.script("escaper.py", ESCAPER),
                               args=[str(pidfile)]))
    try:
        assert client.wait("escaper_busy", timeout=60)["state"] == "COMPLETED"
        pid = int(pidfile.read_text())
        assert wait_dead(pid, timeout=30), f"process {pid} left by a finished job survived"
        assert client.get_job_status("keeps_busy") == "RUNNING"
    finally:
        client.cancel("busy_zygote")


def test_what_a_job_left_behind_dies_with_a_worker_killed_just_after(
        make_cluster: MakeCluster, tmp_path: Path) -> None:
    # The zygote looks for leftovers a moment after jobs end (zygote.ORPHAN_SCAN_INTERVAL),
    # not after each one: one whose job had just ended when the worker went must not be
    # reparented to init unseen as the zygote leaves.
    c = make_cluster().start_master()
    worker = c.add_worker()
    pidfile = tmp_path / "escaped.pid"
    client = c.client()
    client.submit_job(TitanJob(job_id="escaper_last", filename=c.script("escaper.py", ESCAPER),
                               args=[str(pidfile)]))
    assert client.wait("escaper_last", timeout=60)["state"] == "COMPLETED"
    worker.kill()
    worker.wait()
    pid = int(pidfile.read_text())
    assert wait_dead(pid, timeout=30), f"process {pid} left by a finished job survived"


#: Starts a process outside its group (setsid, a double fork), keeps running for argv[2]
#: seconds while other jobs end, and fails unless that process is alive still.
HOLDER = DOUBLE_FORK + """
os.wait()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
time.sleep(float(sys.argv[2]))
pid = int(open(sys.argv[1]).read())
os.kill(pid, 0)  # ProcessLookupError, and the job fails, if it was killed meanwhile
os.kill(pid, 9)
print("kept it")
"""


def test_a_running_job_keeps_what_it_started_outside_its_group(cluster: Cluster,
                                                              tmp_path: Path) -> None:
    # Only a finished job's leftovers are killed: a running job's process outside its group
    # is reparented to the job (its subreaper), not the zygote, while other jobs end.
    pidfile = tmp_path / "held.pid"
    client = cluster.client()
    client.submit_job(TitanJob(job_id="holder", filename=cluster.script("holder.py", HOLDER),
                               args=[str(pidfile), "6"]))
    deadline = time.monotonic() + 60
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    client.submit_job(TitanJob(job_id="ends_meanwhile",
                               filename=cluster.script("ends.py", "print('done')\n")))
    assert client.wait("ends_meanwhile", timeout=60)["state"] == "COMPLETED"
    job = client.wait("holder", timeout=60)
    assert job["state"] == "COMPLETED", client.fetch_logs("holder")
    assert "kept it" in client.fetch_logs("holder")


#: A background process the job does not wait for, in the job's own process group, its output
#: sent elsewhere (so nothing holds the job's pipes): its pid goes to argv[1].
SHELL_LEAVER = """#!/bin/bash
sleep 4711 >/dev/null 2>&1 </dev/null &
echo $! > "$1.tmp" && mv "$1.tmp" "$1"
echo started
"""
#: The same in Python; the one it leaves ignores SIGTERM unless argv[2] says "term", and with
#: "outside" leaves the job's group (a session of its own).
PYTHON_LEAVER = """
import os, subprocess, sys
how = sys.argv[2]
code = "import signal, time\\n"
if how == "stubborn":
    code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
child = subprocess.Popen([sys.executable, "-c", code + "time.sleep(300)"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=how == "outside")
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(child.pid))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
print("started")
"""
#: Waits for what it started: nothing of it is left when it ends, and nothing is cut short.
SHELL_WAITER = """#!/bin/bash
(sleep 1; echo finished > "$1") &
wait
"""


def test_what_a_job_leaves_in_its_group_is_stopped_when_it_ends(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    # A shell job's `sleep &` and a runner="subprocess" job's Popen ran on for good after
    # their jobs COMPLETED (a QA pass): the group was killed only while something held the
    # job's pipes. Now what is left gets SIGTERM when the main process ends, SIGKILL after
    # the worker's kill grace (3 s); what left the group, and what the job waited for, are
    # not touched.
    client = cluster.client()
    shell = cluster.script("leaver.sh", SHELL_LEAVER)
    python = cluster.script("leaver.py", PYTHON_LEAVER)
    pid = {name: tmp_path / f"{name}.pid" for name in ("sh", "sub", "stubborn", "fork",
                                                        "outside")}
    marker = tmp_path / "waited"
    dag = client.submit_dag("leavers", [
        TitanJob(job_id="sh", filename=shell, args=[str(pid["sh"])]),
        TitanJob(job_id="sub", filename=python, args=[str(pid["sub"]), "term"],
                 runner="subprocess"),
        TitanJob(job_id="stubborn", filename=python, args=[str(pid["stubborn"]), "stubborn"],
                 runner="subprocess"),
        TitanJob(job_id="fork", filename=python, args=[str(pid["fork"]), "term"]),
        TitanJob(job_id="outside", filename=python, args=[str(pid["outside"]), "outside"],
                 runner="subprocess"),
        TitanJob(job_id="waiter", filename=cluster.script("waiter.sh", SHELL_WAITER),
                 args=[str(marker)]),
    ], wait=True, timeout=60)
    assert dag["status"] == "COMPLETED", dag
    assert marker.read_text() == "finished\n"
    left = {name: int(path.read_text()) for name, path in pid.items()}
    try:
        for name in ("sh", "sub", "fork", "stubborn"):
            assert wait_dead(left[name], timeout=10), \
                f"{name}: process {left[name]} outlived its COMPLETED job"
        time.sleep(1.0)  # well past the grace since the jobs ended
        assert alive(left["outside"]), "a process outside the job's group was killed"
    finally:
        for name in left:
            with contextlib.suppress(OSError):
                os.kill(left[name], signal.SIGKILL)
