"""Chaos: a worker cut off from the master, and a worker whose clock is minutes off.

Partition: the worker reaches the master through a TCP proxy that the test stalls (bytes stop,
sockets stay open — nobody is told). Its lease expires, the job runs again elsewhere as the
next attempt, what the cut-off attempt sends late (a store write, its result) is refused by
fencing, and its process is killed once the worker hears from the master again.

Clock skew: a worker whose clock (``time.time`` in its process and its jobs) runs five minutes
ahead or behind still holds its leases: the master times leases by its own clock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import Report, scale
from tests.chaos.tcp_proxy import TcpProxy
from titan_sdk import TitanJob

pytestmark = pytest.mark.slow

JOB = """
import os, sys, time
from titan import TitanClient

attempt = int(os.environ["TITAN_ATTEMPT"])
pid_file, pause = sys.argv[1], float(sys.argv[2])
if attempt == 1:
    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(pause)  # cut off meanwhile: still running when the lease expires
TitanClient().store_put("partition-out/" + os.environ["TITAN_JOB_ID"], f"attempt {attempt}")
print("done", attempt)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie not yet reaped by its parent is dead for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_a_cut_off_worker_loses_its_lease_and_its_late_work_is_refused(
        make_cluster: Any, tmp_path: Path, chaos_report: Report) -> None:
    c = make_cluster(lease_seconds=3)
    c.start_master()
    proxy = TcpProxy(("127.0.0.1", c.port))
    try:
        c.add_worker(slots=2, name="cut-off", master_url=f"http://127.0.0.1:{proxy.port}")
        client = c.client()
        script = c.script("partition_job.py", JOB)
        # "long" is still running when the worker is cut off; "short" finishes meanwhile and
        # can only send its store write and result late.
        jobs = [TitanJob(job_id="long", filename=script, args=[str(tmp_path / "long.pid"), "60"]),
                TitanJob(job_id="short", filename=script,
                         args=[str(tmp_path / "short.pid"), "1.5"])]
        dag = client.submit_dag("partition", jobs)
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"{j}.pid").exists() for j in ("long", "short")):
            assert time.monotonic() < deadline, c.log("worker-0.log")
            time.sleep(0.05)
        pids = {j: int((tmp_path / f"{j}.pid").read_text()) for j in ("long", "short")}
        proxy.stall()
        cut_at = time.monotonic()
        # Takes the jobs over once the leases expire. Not waited for as a second live
        # worker: the cut-off one may be counted lost (3 s) before this one has registered.
        c.add_worker(slots=2, name="healthy", wait=False)
        done = client.wait_dag(dag["id"], timeout=60)
        took_over = time.monotonic() - cut_at
        assert done["status"] == "COMPLETED", (done, c.log())
        for job in client.get_dag(dag["id"])["jobs"]:
            assert job["attempt"] == 2, job  # the second attempt, after the lease expired
        # The master's log says so, once each: the worker lost, each job run again.
        said = c.log()
        assert said.count("(cut-off) is lost: ") == 1, said
        for j in ("long", "short"):
            line = [ln for ln in said.splitlines() if f" job partition#1/{j} " in ln]
            assert len(line) == 1 and "WARNING" in line[0], said
            assert "lease of attempt 1 expired on worker w-" in line[0], line
            assert line[0].endswith("queued to run again as attempt 2"), line
        proxy.resume()
        deadline = time.monotonic() + scale(20, 30)
        while alive(pids["long"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        killed = not alive(pids["long"])
        # The first attempts' late store writes were refused: the values are the second's.
        values = {j: client.store_get(f"partition-out/{j}") for j in ("long", "short")}
        chaos_report("worker cut off (stalled TCP)", faults=1, attempted="2 jobs",
                     acknowledged="2 jobs", lost=0,
                     duplicated="0 (2 re-runs after expired leases)",
                     recovery=f"re-run done {took_over:.1f}s after the cut")
        assert values == {"long": "attempt 2", "short": "attempt 2"}, values
        assert killed, "the cut-off attempt's process was not killed"
        # The cut-off worker's log says why it registers again and why it killed the job,
        # and gives no TLS advice for a plain-HTTP master that answered before.
        said = c.log("worker-0.log")
        assert "or counted this worker lost after it missed its heartbeats); registering " \
               "again" in said, said
        # (Its job has run again and ended by then: "its job has ended meanwhile".)
        assert "the master ended job partition#1/long attempt 1 (its " in said, said
        assert "): killing it" in said, said
        assert "serves HTTPS" not in said, said
        for job in client.get_dag(dag["id"])["jobs"]:
            assert job["state"] == "COMPLETED" and job["attempt"] == 2, job
    finally:
        proxy.close()


SKEW = """
import time as _time

_offset = {offset}
_real = _time.time
_time.time = lambda: _real() + _offset
_real_ns = _time.time_ns
_time.time_ns = lambda: _real_ns() + int(_offset * 1e9)
"""


@pytest.mark.parametrize("offset", [300, -300])
def test_a_worker_with_a_skewed_clock_keeps_its_leases(make_cluster: Any, tmp_path: Path,
                                                       chaos_report: Report,
                                                       offset: int) -> None:
    c = make_cluster(lease_seconds=3)
    c.start_master()
    site = tmp_path / "skew"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SKEW.format(offset=offset))
    c.add_worker(slots=2, name=f"skewed{offset:+d}",
                 env={"PYTHONPATH": os.pathsep.join(filter(None, [
                     str(site), os.environ.get("PYTHONPATH", "")]))})
    client = c.client()
    script = c.script("skew_job.py", """
        import os, time
        from titan import TitanClient
        time.sleep(float(os.environ.get("PAUSE", "0")))
        TitanClient().store_sadd("skew-ran", os.environ["TITAN_JOB_ID"] + ":" +
                                 os.environ["TITAN_ATTEMPT"])
        print("clock says", time.time())
    """)
    n = scale(6, 20)
    # Each job outlasts two lease periods: renewals, not luck, keep it.
    jobs = [TitanJob(job_id=f"s{i}", filename=script, env={"PAUSE": "7"} if i < 2 else {})
            for i in range(n)]
    dag = client.submit_dag("skew", jobs)
    done = client.wait_dag(dag["id"], timeout=120)
    assert done["status"] == "COMPLETED", (done, c.log())
    ran = client.store_smembers("skew-ran")
    duplicated = len(ran) - n
    chaos_report(f"worker clock {offset:+d}s", faults=1, attempted=f"{n} jobs",
                 acknowledged=f"{n} jobs", lost=n - len({r.split(':')[0] for r in ran}),
                 duplicated=duplicated, recovery="-")
    assert ran == {f"s{i}:1" for i in range(n)}, ran
    # The skew was real: the job's own clock said so.
    said = float(client.fetch_logs(f"skew/s{n - 1}").split("clock says", 1)[1].split()[0])
    assert abs(said - (time.time() + offset)) < 60, (said, time.time())
