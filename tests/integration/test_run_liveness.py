"""Acceptance: a run whose recording process was killed ends ``failed`` instead of staying
``running`` for ever (master/runs/liveness.py), on a real `titan up` whose runs go silent
after 3 s, with scripts that show a sign of life every 0.3 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster, shared_cluster

TIMEOUT = 3.0
cluster = shared_cluster(env={"TITAN_RUN_ALIVE_TIMEOUT": str(TIMEOUT),
                              "TITAN_TRACE_HEARTBEAT": "0.3"})


def start(cluster: Cluster, tmp_path: Path, source: str) -> subprocess.Popen[str]:
    path = tmp_path / "agent.py"
    path.write_text(textwrap.dedent(source))
    return subprocess.Popen([sys.executable, str(path)], cwd=tmp_path, env=cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def status_becomes(cluster: Cluster, run_id: str, status: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while (run := cluster.api("GET", f"/runs/{run_id}"))["status"] != status:
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    return run


def test_a_killed_process_s_run_ends_failed(cluster: Cluster, tmp_path: Path) -> None:
    agent = start(cluster, tmp_path, """
        import time, titan
        with titan.trace.run("doomed", run_id="doomed-1"):
            with titan.trace.action("step", inputs={}) as a:
                a.outputs = {"ok": True}
            titan.trace.flush()
            print("recorded", flush=True)
            time.sleep(600)  # until killed
    """)
    assert agent.stdout is not None and agent.stdout.readline().strip() == "recorded"
    time.sleep(1)  # alive a while: its signs of life keep it running
    assert cluster.api("GET", "/runs/doomed-1")["status"] == "running"
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    run = status_becomes(cluster, "doomed-1", "failed", within=TIMEOUT * 4)
    assert run["error"].startswith("crashed: the process recording it stopped without ending")
    assert run["action_count"] == 1


def test_a_driver_killed_by_sigterm_ends_its_run_failed(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "step.py").write_text("print('step')\n")
    agent = start(cluster, tmp_path, """
        import time
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        client.submit_dag("TERMED_PLAN", [TitanJob("plan", "step.py")],
                          agent_run_id="TERMED", wait=True, timeout=60)
        print("planned", flush=True)
        time.sleep(600)
    """)
    assert agent.stdout is not None and agent.stdout.readline().strip() == "planned"
    agent.send_signal(signal.SIGTERM)  # Python's default: gone, no exit hooks
    agent.wait()
    run = status_becomes(cluster, "TERMED", "failed", within=TIMEOUT * 4)
    assert run["error"].startswith("crashed:")


def test_a_live_process_keeps_its_run_and_ends_it_itself(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    agent = start(cluster, tmp_path, f"""
        import time, titan
        with titan.trace.run("patient", run_id="patient-1"):
            time.sleep({TIMEOUT * 2.5})
    """)
    time.sleep(TIMEOUT * 2)
    assert cluster.api("GET", "/runs/patient-1")["status"] == "running"
    assert agent.wait(timeout=60) == 0, agent.stderr.read() if agent.stderr else ""
    assert status_becomes(cluster, "patient-1", "completed", within=10)["error"] is None


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_runs_recorded_in_pool_workers_end_with_their_blocks(cluster: Cluster, tmp_path: Path,
                                                             method: str) -> None:
    # A Pool SIGTERMs its workers as soon as map() has its results, and its children never
    # run Python's exit hooks: the runs' ends (and last actions) sat in the sender's queue,
    # and the runs ended "crashed" a timeout later.
    agent = start(cluster, tmp_path, f"""
        import multiprocessing, titan

        def work(i):
            with titan.trace.run("pooled", run_id=f"pool-{method}-{{i}}"):
                with titan.trace.action("step", inputs={{"i": i}}) as a:
                    a.outputs = {{"double": 2 * i}}
            return i

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("{method}")
            with ctx.Pool(2) as pool:
                print(sum(pool.map(work, range(6))), flush=True)
            proc = ctx.Process(target=work, args=(6,))
            proc.start()
            proc.join()
    """)
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 0 and out.strip() == "15", err
    for i in range(7):  # at once: well inside the 3 s that would end them crashed
        run = cluster.api("GET", f"/runs/pool-{method}-{i}")
        assert (run["status"], run["action_count"], run["error"]) == ("completed", 1, None)


def test_a_driver_that_exits_ends_every_run_it_drove_at_once(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    # Each run end waited the sender's interval (0.2 s) and the exit gave them 2 s: a driver
    # of 25 runs left 5 running, to be ended "crashed" later, their stages all COMPLETED.
    (tmp_path / "step.py").write_text("pass\n")
    agent = start(cluster, tmp_path, """
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        for i in range(60):
            client.submit_dag(f"MANY_{i}_PLAN", [TitanJob("p", "step.py")],
                              agent_run_id=f"MANY_{i}")
    """)
    t0 = time.monotonic()
    assert agent.wait(timeout=60) == 0
    _, err = agent.communicate()
    assert "not delivered" not in err, err
    assert time.monotonic() - t0 < 30
    for i in range(60):
        assert status_becomes(cluster, f"MANY_{i}", "completed", within=30)["error"] is None


def test_runs_no_process_watches_stay_and_a_silent_one_comes_back(cluster: Cluster) -> None:
    # A run opened through the API, with no sign of life ever: nothing ends it but its owner.
    cluster.api("POST", "/runs", {"id": "api-run", "agent_id": "api"})
    # One whose process showed life, then went quiet past the timeout (a network cut): ended,
    # and running again at its next sign of life, its own end taken as usual.
    cluster.api("POST", "/runs", {"id": "cut-off", "agent_id": "api"})
    assert cluster.api("POST", "/runs/alive", {"runs": ["cut-off", "nobody"]}) == {
        "alive": ["cut-off"]}
    status_becomes(cluster, "cut-off", "failed", within=TIMEOUT * 4)
    assert cluster.api("GET", "/runs/api-run")["status"] == "running"
    assert cluster.api("POST", "/runs/alive", {"runs": ["cut-off"]}) == {"alive": ["cut-off"]}
    run = cluster.api("GET", "/runs/cut-off")
    assert (run["status"], run["error"], run["ended_at"]) == ("running", None, None)
    assert cluster.api("PATCH", "/runs/cut-off", {"status": "completed"})["status"] == \
        "completed"
    # An ended run is not brought back, nor is one ended by its owner.
    assert cluster.api("POST", "/runs/alive", {"runs": ["cut-off"]}) == {"alive": []}
    for bad in ({"runs": "cut-off"}, {"runs": [1]}, {"run": ["x"]}, {"runs": ["x"] * 1001}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            cluster.api("POST", "/runs/alive", bad)
        assert refused.value.code == 400
    cluster.api("PATCH", "/runs/api-run", {"status": "completed"})


def test_a_run_opened_watched_ends_crashed_without_any_sign_of_life(cluster: Cluster,
                                                                    tmp_path: Path) -> None:
    # Only runs that had sent a sign of life were watched: a script that exited while its
    # exit's flush was still sending left every run whose start arrived, and whose end did
    # not, running for good (its signs of life stop at exit). Watched from creation now.
    cluster.api("POST", "/runs", {"id": "never-beat", "agent_id": "api", "watched": True})
    agent = start(cluster, tmp_path, """
        import os, titan
        from titan.trace.recorder import RECORDER
        RECORDER.beat = lambda runs=None: None  # its signs of life never get through
        with titan.trace.run("quiet", run_id="sdk-never-beat"):
            titan.trace.flush()
            os._exit(0)  # its end is never sent
    """)
    assert agent.wait(timeout=30) == 0, agent.stderr.read() if agent.stderr else ""
    for run_id in ("never-beat", "sdk-never-beat"):
        run = status_becomes(cluster, run_id, "failed", within=TIMEOUT * 4)
        assert run["error"].startswith("crashed: "), run
    with pytest.raises(urllib.error.HTTPError) as refused:
        cluster.api("POST", "/runs", {"id": "bad-watch", "agent_id": "api", "watched": 1})
    assert refused.value.code == 400


def test_a_run_whose_driver_is_done_runs_on_with_its_stage_and_shows_no_end(
        cluster: Cluster, tmp_path: Path) -> None:
    # Its driver's end was kept in ended_at while the stage ran, and shown as the run's end:
    # "running ... ended 16 s ago", its duration frozen, sorted by duration wrongly (QA).
    (tmp_path / "slow_stage.py").write_text("import time; time.sleep(4)\n")
    driver = start(cluster, tmp_path, """
        from titan_sdk import TitanClient, TitanJob
        TitanClient().submit_dag("DRIVERDONE_PLAN", [TitanJob("slow", "slow_stage.py")],
                                 agent_run_id="DRIVERDONE")
    """)
    assert driver.wait(timeout=60) == 0, driver.stderr.read() if driver.stderr else ""
    first = cluster.api("GET", "/runs/DRIVERDONE")
    time.sleep(1)
    later = cluster.api("GET", "/runs/DRIVERDONE")
    assert (first["status"], first["ended_at"], later["ended_at"]) == ("running", None, None)
    assert later["duration_s"] >= first["duration_s"] + 0.9
    cluster.api("POST", "/runs", {"id": "quick-one", "agent_id": "api"})
    cluster.api("PATCH", "/runs/quick-one", {"status": "completed"})
    ids = [r["id"] for r in cluster.api("GET", "/runs?sort=duration&limit=200")["runs"]]
    assert ids.index("DRIVERDONE") < ids.index("quick-one"), ids  # it runs on: the longer
    run = status_becomes(cluster, "DRIVERDONE", "completed", within=30)
    assert run["ended_at"] is not None


def test_a_process_only_cut_off_still_ends_its_run(cluster: Cluster) -> None:
    # Paused past the timeout (a laptop asleep, SIGSTOP), then ending its run at once, with
    # no sign of life between: the end was refused ("already ended failed"), the run stayed
    # crashed (a review of the run liveness).
    cluster.api("POST", "/runs", {"id": "napper", "agent_id": "api"})
    cluster.api("POST", "/runs/alive", {"runs": ["napper"]})
    status_becomes(cluster, "napper", "failed", within=TIMEOUT * 4)
    run = cluster.api("PATCH", "/runs/napper", {"status": "completed"})
    assert (run["status"], run["error"]) == ("completed", None)
    # Ended by its owner, it is ended: no sign of life or second end changes it.
    assert cluster.api("POST", "/runs/alive", {"runs": ["napper"]}) == {"alive": []}
    with pytest.raises(urllib.error.HTTPError) as refused:
        cluster.api("PATCH", "/runs/napper", {"status": "failed"})
    assert refused.value.code == 409


def test_an_orchestrator_running_as_a_job_keeps_and_ends_the_runs_it_drives(
        cluster: Cluster) -> None:
    # Its job token could open a run and add stages to it, but not keep it alive nor end it:
    # the run stayed running for ever after the orchestrator and its stage had finished.
    step = cluster.script("orch_step.py", "print('step')\n")
    orchestrator = cluster.script("orchestrator.py", f"""
        import time
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        client.submit_dag("JOBDRIVEN_PLAN", [TitanJob("plan", {step!r})],
                          agent_run_id="JOBDRIVEN", wait=True, timeout=60)
        time.sleep({TIMEOUT * 2})  # alive all along: its signs of life keep the run
    """)
    client = cluster.client()
    from titan_sdk import TitanJob

    client.submit_job(TitanJob("orchestrator", orchestrator))
    assert client.wait("orchestrator", timeout=60)["state"] == "COMPLETED", \
        client.fetch_logs("orchestrator")
    run = status_becomes(cluster, "JOBDRIVEN", "completed", within=15)
    assert run["error"] is None


def _plain_http_orchestrator(cluster: Cluster, run_id: str, stage_source: str,
                            then: str = "") -> str:
    """An orchestrator that opens run ``run_id`` with a stage over plain HTTP (``POST /dags``
    with its job token: no SDK driving, so no sign of life ever), then runs ``then``."""
    stage = cluster.script(f"{run_id}_stage.py", stage_source)
    return cluster.script(f"{run_id}_orchestrator.py", f"""
        import json, os, time, urllib.request
        from titan_sdk import TitanClient, TitanJob
        job = TitanJob("work", {stage!r})
        [sha] = TitanClient().upload_blobs([open({stage!r}, "rb").read()])
        body = {{"name": "{run_id}_WORK", "agent_run_id": "{run_id}",
                 "jobs": [job.to_payload(sha)]}}
        request = urllib.request.Request(
            os.environ["TITAN_MASTER_URL"].rstrip("/") + "/api/v1/dags",
            json.dumps(body).encode(),
            {{"Authorization": "Bearer " + os.environ["TITAN_TOKEN"],
              "Content-Type": "application/json"}})
        urllib.request.urlopen(request).read()
        print("submitted", flush=True)
        {then}
    """)


def _orchestrator(cluster: Cluster, run_id: str) -> str:
    """An orchestrator that starts run ``run_id`` with a long stage, then works on."""
    stage = cluster.script(f"{run_id}_stage.py", "import time\ntime.sleep(600)\n")
    return cluster.script(f"{run_id}_orchestrator.py", f"""
        import time
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        client.submit_dag("{run_id}_WORK", [TitanJob("work", {stage!r})],
                          agent_run_id="{run_id}")
        print("submitted", flush=True)
        time.sleep(600)
    """)


def _stage_runs(cluster: Cluster, run_id: str) -> None:
    from titan.errors import NotFound

    deadline = time.monotonic() + 60
    while True:
        try:
            if cluster.client().get_dag(f"{run_id}_WORK")["status"] == "RUNNING":
                return
        except NotFound:  # not submitted yet
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_an_orchestrator_job_cancelled_cancels_its_run_and_stages_at_once(
        cluster: Cluster) -> None:
    # Its run stayed running until its silence ran out, then read "crashed" (failed), and
    # the stage it had started ran on for its whole length.
    from titan_sdk import TitanJob

    client = cluster.client()
    client.submit_job(TitanJob("orch_cancelled", _orchestrator(cluster, "ORCHCANCEL")))
    _stage_runs(cluster, "ORCHCANCEL")
    assert cluster.api("GET", "/runs/ORCHCANCEL")["status"] == "running"
    client.cancel("orch_cancelled")
    # Not "failed": a run its silence ended would read so, whatever the wait (a loaded box
    # took over TIMEOUT to pass the cancel on: the margin is for it, not for the silence).
    run = status_becomes(cluster, "ORCHCANCEL", "cancelled", within=TIMEOUT * 6)
    assert "orch_cancelled" in run["error"] and "was cancelled" in run["error"], run
    assert client.wait_dag("ORCHCANCEL_WORK", timeout=30)["status"] == "CANCELLED"


def test_a_job_cancelled_before_its_first_sign_of_life_still_cancels_the_run_it_opened(
        cluster: Cluster) -> None:
    # The SDK sends a driver's first sign of life from a thread after the submission: a job
    # cancelled in between (a loaded box) left the run its stage opened running for ever,
    # never watched, so never ended by its silence either. This job never sends one at all.
    from titan_sdk import TitanJob

    orchestrator = _plain_http_orchestrator(cluster, "SILENTORCH", "import time\ntime.sleep(600)\n",
                                            then="time.sleep(600)")
    client = cluster.client()
    client.submit_job(TitanJob("silent_orchestrator", orchestrator))
    try:
        _stage_runs(cluster, "SILENTORCH")
    except AssertionError:
        raise AssertionError(client.fetch_logs("silent_orchestrator")) from None
    run = cluster.api("GET", "/runs/SILENTORCH")
    assert (run["status"], run["started_by"]["role"]) == ("running", "job"), run
    client.cancel("silent_orchestrator")
    run = status_becomes(cluster, "SILENTORCH", "cancelled", within=30)
    assert "silent_orchestrator" in run["error"] and "was cancelled" in run["error"], run
    assert client.wait_dag("SILENTORCH_WORK", timeout=30)["status"] == "CANCELLED"


def test_a_job_driving_its_run_over_plain_http_ends_it_by_completing(cluster: Cluster) -> None:
    # It never shows a sign of life nor ends the run: completed, its run stayed running for
    # ever. Its driver done, the run ends with its last stage, as a driver's "ended" does.
    from titan_sdk import TitanJob

    orchestrator = _plain_http_orchestrator(cluster, "PLAINDONE", "print('stage')\n")
    client = cluster.client()
    client.submit_job(TitanJob("plain_orchestrator", orchestrator))
    assert client.wait("plain_orchestrator", timeout=60)["state"] == "COMPLETED", \
        client.fetch_logs("plain_orchestrator")
    assert client.wait_dag("PLAINDONE_WORK", timeout=60)["status"] == "COMPLETED"
    run = status_becomes(cluster, "PLAINDONE", "completed", within=30)
    assert run["error"] is None and run["ended_at"] is not None, run


def test_an_orchestrator_job_that_times_out_ends_its_run_failed_saying_so(
        cluster: Cluster) -> None:
    from titan_sdk import TitanJob

    client = cluster.client()
    client.submit_job(TitanJob("orch_timed_out", _orchestrator(cluster, "ORCHTIMEOUT"),
                               timeout=4, retries=0))
    _stage_runs(cluster, "ORCHTIMEOUT")
    run = status_becomes(cluster, "ORCHTIMEOUT", "failed", within=30)
    assert run["error"].startswith("crashed: the job orch_timed_out") \
        and "ended TIMED_OUT without ending it" in run["error"], run
    # Its stage was not cancelled: a crash leaves what it started running, as a killed
    # process would.
    assert client.get_dag("ORCHTIMEOUT_WORK")["status"] == "RUNNING"
    client.cancel("DAG-ORCHTIMEOUT_WORK")


def _dying_orchestrator(cluster: Cluster, run: str, *, dies_on: str) -> str:
    """An orchestrator job that drives ``run`` with one stage per attempt, then dies
    without ending it when ``dies_on`` (Python, over ``attempt``) holds."""
    step = cluster.script(f"{run.lower()}_step.py", "print('step')\n")
    return cluster.script(f"{run.lower()}_orchestrator.py", f"""
        import os
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        attempt = os.environ["TITAN_ATTEMPT"]
        client.submit_dag(f"{run}_STEP{{attempt}}", [TitanJob("step", {step!r})],
                          agent_run_id={run!r}, wait=True, timeout=60)
        if {dies_on}:
            os._exit(3)  # dies without ending its run
    """)


def test_an_orchestrator_retried_on_the_same_run_ends_it_cleanly(cluster: Cluster) -> None:
    # Its first attempt died; going back to wait for its retry ended the run "crashed", and
    # the retry that drove the same run on finished it completed with the crash as its error.
    orchestrator = _dying_orchestrator(cluster, "ORCHRETRY", dies_on='attempt == "1"')
    from titan_sdk import TitanJob

    client = cluster.client()
    client.submit_job(TitanJob("orch_retried", orchestrator, retries=1))
    job = client.wait("orch_retried", timeout=60)
    assert (job["state"], job["attempt"]) == ("COMPLETED", 2), client.fetch_logs("orch_retried")
    run = status_becomes(cluster, "ORCHRETRY", "completed", within=15)
    assert run["error"] is None, run


def test_an_orchestrator_failed_on_its_retry_names_the_attempt_that_failed(
        cluster: Cluster) -> None:
    # The run's started_by names the attempt that opened it; the error of a driver that
    # failed for good names the last one, whose logs say why.
    orchestrator = _dying_orchestrator(cluster, "ORCHTWICE", dies_on="True")
    from titan_sdk import TitanJob

    client = cluster.client()
    client.submit_job(TitanJob("orch_twice", orchestrator, retries=1))
    job = client.wait("orch_twice", timeout=60)
    assert (job["state"], job["attempt"]) == ("FAILED", 2), client.fetch_logs("orch_twice")
    run = cluster.api("GET", "/runs/ORCHTWICE")
    assert run["started_by"]["attempt"] == 1, run
    run = status_becomes(cluster, "ORCHTWICE", "failed", within=30)
    assert run["error"].startswith("crashed: the job orch_twice") \
        and "(attempt 2) driving it ended FAILED" in run["error"], run


def test_a_master_that_stood_still_gives_every_run_a_whole_timeout(cluster: Cluster) -> None:
    # The master paused past the timeout (SIGSTOP, a frozen VM) heard nothing meanwhile: on
    # waking it ended every watched run as crashed, their processes alive.
    cluster.api("POST", "/runs", {"id": "paused-master", "agent_id": "api"})
    cluster.api("POST", "/runs/alive", {"runs": ["paused-master"]})
    assert cluster.master is not None
    os.kill(cluster.master.pid, signal.SIGSTOP)
    try:
        time.sleep(TIMEOUT * 2)
    finally:
        os.kill(cluster.master.pid, signal.SIGCONT)
    time.sleep(TIMEOUT * 0.6)  # the reaper has woken and looked, late
    assert cluster.api("GET", "/runs/paused-master")["status"] == "running"
    # Silent a whole timeout after that, it is ended as any silent run.
    status_becomes(cluster, "paused-master", "failed", within=TIMEOUT * 4)


def test_a_run_its_block_ended_is_not_ended_again_by_the_process_exit(cluster: Cluster,
                                                                      tmp_path: Path) -> None:
    # The block submitted a stage that failed and ended normally (`return 1` inside it), then
    # the process exited 1: its exit hook ended the run again, the master refused ("already
    # ended completed") and the user read "[titan.trace] the master refused to update run …".
    # The block's end is its driver's end; what the process does after it is not the run's.
    # Its last stage failed, so the run did (it was "completed", a failed stage under it).
    (tmp_path / "fails.py").write_text("raise SystemExit(3)\n")
    agent = start(cluster, tmp_path, """
        import sys
        from titan import trace
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()

        def main():
            with trace.run("after-block", run_id="AFTERBLOCK_1") as run:
                dag = client.submit_dag("AFTERBLOCK_1_STAGE", [TitanJob("f", "fails.py")],
                                        agent_run_id=run.id)
                if client.wait_dag(dag["ref"], timeout=60)["status"] != "COMPLETED":
                    return 1
            return 0

        sys.exit(main())
    """)
    assert agent.wait(timeout=60) == 1
    _, err = agent.communicate()
    assert "[titan.trace]" not in err, err
    run = status_becomes(cluster, "AFTERBLOCK_1", "failed", within=10)
    assert run["error"] == "its last stage AFTERBLOCK_1_STAGE ended FAILED: 1 of 1 job failed"


def test_a_block_that_leaves_its_stage_running_ends_when_the_stage_does(
        cluster: Cluster, tmp_path: Path) -> None:
    # The block submitted a stage and was left without waiting for it: the run ended
    # completed at once, its stage still running under a finished run.
    (tmp_path / "slow.py").write_text(textwrap.dedent(f"""
        import os, time
        while not os.path.exists({str(tmp_path / "go")!r}):
            time.sleep(0.05)
    """))
    agent = start(cluster, tmp_path, """
        from titan import trace
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        with trace.run("leaves-early", run_id="LEAVESEARLY_1") as run:
            client.submit_dag("LEAVESEARLY_1_SLOW", [TitanJob("s", "slow.py")],
                              agent_run_id=run.id)
    """)
    assert agent.wait(timeout=60) == 0, agent.communicate()
    client = cluster.client()
    deadline = time.monotonic() + 60
    while client.get_dag("LEAVESEARLY_1_SLOW")["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(TIMEOUT * 1.5)  # past the silence that ends a watched run: it is not one now
    run = cluster.api("GET", "/runs/LEAVESEARLY_1")
    assert (run["status"], run["error"]) == ("running", None), run
    (tmp_path / "go").touch()
    assert client.wait_dag("LEAVESEARLY_1_SLOW", timeout=60)["status"] == "COMPLETED"
    run = status_becomes(cluster, "LEAVESEARLY_1", "completed", within=10)
    assert run["error"] is None and run["ended_at"] is not None


def test_a_block_without_stages_ends_completed_though_its_calls_failed(
        cluster: Cluster, tmp_path: Path) -> None:
    # Every call of the block raised and the block handled it: it ends completed as it always
    # did (the actions' rule of a run without stages would have made it failed).
    agent = start(cluster, tmp_path, """
        import titan
        from titan import trace

        @titan.tool
        def lookup(q):
            raise LookupError(q)

        with trace.run("handles-errors", run_id="HANDLED_1"):
            for q in ("a", "b"):
                try:
                    lookup(q)
                except LookupError:
                    pass
    """)
    assert agent.wait(timeout=60) == 0, agent.communicate()
    run = status_becomes(cluster, "HANDLED_1", "completed", within=10)
    assert (run["error"], run["error_count"], run["success_count"]) == (None, 2, 0), run


def test_a_block_left_by_an_exception_ends_failed_with_it(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    # Its stage completed, but the block raised after it: the block's failure is the run's.
    (tmp_path / "ok.py").write_text("pass\n")
    agent = start(cluster, tmp_path, """
        from titan import trace
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        with trace.run("raises", run_id="RAISES_1") as run:
            client.submit_dag("RAISES_1_OK", [TitanJob("ok", "ok.py")], agent_run_id=run.id,
                              wait=True, timeout=60)
            raise ValueError("the answer was wrong")
    """)
    assert agent.wait(timeout=60) == 1
    run = status_becomes(cluster, "RAISES_1", "failed", within=10)
    assert run["error"] == "ValueError: the answer was wrong", run


def test_a_driven_run_ended_by_someone_else_is_said_so_at_exit(cluster: Cluster,
                                                              tmp_path: Path) -> None:
    # An operator cancelled the run a process drove; the process then failed, and its exit's
    # end of the run was refused: "the master refused to update run R: agent run R already
    # ended cancelled" read as the SDK's own fault. It says what happened; the run stays so.
    (tmp_path / "ok.py").write_text("pass\n")
    agent = start(cluster, tmp_path, """
        import os, sys, time
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        dag = client.submit_dag("ENDEDELSEWHERE_1_STAGE", [TitanJob("ok", "ok.py")],
                                agent_run_id="ENDEDELSEWHERE_1")
        client.wait_dag(dag["ref"], timeout=60)
        print("ready", flush=True)
        while not os.path.exists("go"):
            time.sleep(0.05)
        sys.exit(2)
    """)
    assert agent.stdout is not None
    assert agent.stdout.readline().strip() == "ready"
    cluster.api("PATCH", "/runs/ENDEDELSEWHERE_1", {"status": "cancelled"})
    (tmp_path / "go").touch()
    assert agent.wait(timeout=60) == 2
    _, err = agent.communicate()
    assert "refused" not in err, err
    assert ("[titan.trace] run ENDEDELSEWHERE_1 had already ended cancelled when this process "
            "exited: its end as the process exited (failed: SystemExit: 2) was not recorded"
            ) in err, err
    run = cluster.api("GET", "/runs/ENDEDELSEWHERE_1")
    assert run["status"] == "cancelled"
