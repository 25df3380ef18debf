"""Acceptance: schedules on a real `titan up` — a schedule firing every two seconds (cron's
optional seconds field) starts runs; pause stops the ticks, resume brings them back; run now,
the CLI, roles; and a master killed with -9 between ticks fires each tick exactly once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import time
import urllib.error
import zoneinfo
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster
from tests.integration.test_cli import on_terminal, titan
from titan import TitanClient, TitanJob
from titan.errors import Forbidden, ValidationFailed

EVERY_2S = "*/2 * * * * *"


def until(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.time() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def fired(client: TitanClient, name: str) -> list[dict[str, Any]]:
    """The schedule's fires that started a run, oldest first."""
    return [f for f in reversed(client.get_schedule(name)["fires"])
            if f["outcome"] == "submitted"]


def test_a_schedule_runs_every_two_seconds_until_paused(cluster: Cluster) -> None:
    beat = cluster.script("beat.py", "print('beat')\n")
    client = cluster.client()
    made = client.schedule_dag("beats", [TitanJob(job_id="beat", filename=beat)],
                               cron=EVERY_2S, overlap="skip")
    assert made["next_fire_at"] > time.time() - 1 and len(made["next_fires"]) == 5
    assert made["description"] == "Every second second of every minute"
    def completed() -> list[dict[str, Any]] | None:
        runs = fired(client, "beats")
        return runs if sum(f["dag"]["status"] == "COMPLETED" for f in runs) >= 3 else None

    runs = until("three completed runs", completed)
    ticks = [f["tick"] for f in runs]
    assert len(set(ticks)) == len(ticks) and all(t % 2 == 0 for t in ticks)
    dag = client.get_dag(runs[0]["dag"]["ref"])
    assert dag["schedule"] == "beats" and dag["name"] == "beats"
    assert [j["state"] for j in dag["jobs"]] == ["COMPLETED"]
    assert "started by schedule beats" in titan(cluster, "status", dag["ref"]).stdout

    # A viewer reads schedules and cannot change them.
    viewer = cluster.client(token=client.create_token("viewer")["token"])
    assert [s["name"] for s in viewer.list_schedules()] == ["beats"]
    with pytest.raises(Forbidden):
        viewer.pause_schedule("beats")

    # Paused: no tick fires. The DAG runs already started finish on their own.
    out = titan(cluster, "schedule", "pause", "beats").stdout
    assert "paused" in out and "next ticks:  none" in out
    count = len(client.get_schedule("beats")["fires"])
    time.sleep(5)
    assert len(client.get_schedule("beats")["fires"]) == count
    titan(cluster, "schedule", "resume", "beats")
    until("a tick after resuming", lambda: len(client.get_schedule("beats")["fires"]) > count)

    listed = titan(cluster, "schedule", "list").stdout
    assert "beats" in listed and EVERY_2S in listed and "active" in listed
    dag_ref = titan(cluster, "schedule", "run", "beats").stdout.strip()
    assert dag_ref.startswith("beats#")
    # A tick (every 2 s) may land right after the manual fire: it is among the latest.
    fires = client.get_schedule("beats")["fires"][:3]
    manual = next((f for f in fires if f["manual"]), None)
    assert manual is not None and manual["dag"]["ref"] == dag_ref, fires

    # On a terminal it asks first; Ctrl-D is no.
    asked = on_terminal(cluster, "schedule", "delete", "beats", answer=b"\x04")
    assert asked.returncode == 1 and "delete schedule beats (the runs it started stay)? " \
        "[y/N]" in asked.stderr and "nothing deleted" in asked.stderr, asked
    assert [s["name"] for s in client.list_schedules()] == ["beats"]
    assert on_terminal(cluster, "schedule", "delete", "beats", answer=b"y\n").returncode == 0
    # No such schedule: said at once, nothing asked.
    gone = on_terminal(cluster, "schedule", "delete", "beats", answer=b"y\n")
    assert gone.returncode == 1 and "no schedule named 'beats'" in gone.stderr, gone
    assert "[y/N]" not in gone.stderr, gone
    assert client.list_schedules() == []
    assert client.get_dag(dag_ref)["schedule"] == "beats"  # the runs stay


def test_a_schedule_is_changed_from_the_sdk_and_the_cli(cluster: Cluster) -> None:
    first = cluster.script("first.py", "print('first')\n")
    second = cluster.script("second.py", "print('second')\n")
    client = cluster.client()
    client.schedule_dag("changing", [TitanJob(job_id="first", filename=first)],
                        cron="0 3 * * *", timezone="Europe/Paris")
    viewer = cluster.client(token=client.create_token("viewer")["token"])
    with pytest.raises(Forbidden):
        viewer.update_schedule("changing", cron=EVERY_2S)

    # The CLI: a new rule and policy; the zone and the DAG stay.
    out = titan(cluster, "schedule", "update", "changing", "--cron", EVERY_2S,
                "--overlap", "skip").stdout
    assert EVERY_2S in out and "Europe/Paris" in out and "overlap skip" in out
    # The SDK: new jobs (uploaded as schedule_dag does) under a new DAG name.
    view = client.update_schedule("changing", jobs=[TitanJob(job_id="second", filename=second)],
                                  dag_name="changed")
    assert view["dag_name"] == "changed" and [j["job_id"] for j in view["jobs"]] == ["second"]

    def ran_second() -> dict[str, Any] | None:
        # A tick of the old DAG can fire between the two updates (the rule changed first):
        # only a run of the new DAG counts.
        runs = [f for f in fired(client, "changing") if f["dag"]["status"] == "COMPLETED"
                and f["dag"]["ref"].startswith("changed#")]
        return runs[-1] if runs else None

    dag = client.get_dag(until("a run of the new DAG", ran_second)["dag"]["ref"])
    assert dag["name"] == "changed" and [j["job_id"] for j in dag["jobs"]] == ["second"]
    # A pipeline file: its DAG and its schedule block.
    pipeline = cluster.script("changing.yaml", (
        "name: from_yaml\nschedule:\n  cron: '0 4 * * *'\n  timezone: UTC\n"
        "jobs:\n  - id: first\n    file: first.py\n"))
    out = titan(cluster, "schedule", "update", "changing", pipeline).stdout
    assert "DAG-from_yaml" in out and "0 4 * * *" in out and "in UTC" in out
    bad = titan(cluster, "schedule", "update", "changing", check=False)
    assert bad.returncode != 0 and "schedule update needs something to change: --cron, --tz, " \
        "--catchup, --overlap, --agent-run-id or a pipeline file" in bad.stderr, bad.stderr
    # The master's refusal of the file's rule names the line that said it.
    wrong = cluster.script("wrong_rule.yaml", (
        "name: from_yaml\nschedule:\n  cron: '61 * * * *'\n"
        "jobs:\n  - id: first\n    file: first.py\n"))
    for args in (("create", "wrongly", wrong), ("update", "changing", wrong)):
        refused = titan(cluster, "schedule", *args, check=False)
        assert refused.returncode != 0 and f"{wrong}:3: schedule: " in refused.stderr, \
            refused.stderr
    client.delete_schedule("changing")


def test_a_schedules_pipeline_errors_name_their_line_as_submit_does(cluster: Cluster) -> None:
    """`titan schedule create|update` lost the ``file:line:`` that `titan submit` gives a
    cycle or a missing script (a QA pass)."""
    cluster.script("a.py", "print('a')\n")
    cycle = cluster.script("cycle.yaml", (
        "name: y3\njobs:\n  - id: a\n    file: a.py\n    depends_on: [b]\n"
        "  - id: b\n    file: a.py\n    depends_on: [a]\n"))
    missing = cluster.script("missing.yaml", "name: y4\njobs:\n  - id: a\n    file: gone.py\n")
    client = cluster.client()
    client.schedule_dag("placed", [TitanJob(job_id="a", filename=cluster.script("b.py", ""))],
                        cron="@daily")
    for pipeline, line in ((cycle, 5), (missing, 3)):
        submitted = titan(cluster, "submit", pipeline, check=False)
        assert f"{pipeline}:{line}: " in submitted.stderr, submitted.stderr
        said = submitted.stderr.split(f"{pipeline}:{line}: ", 1)[1].strip()
        for args in (("create", "x6", pipeline, "--cron", "@daily"),
                     ("update", "placed", pipeline)):
            refused = titan(cluster, "schedule", *args, check=False)
            assert refused.returncode != 0
            assert f"{pipeline}:{line}: {said}" in refused.stderr, (args, refused.stderr)


def test_a_worker_token_is_told_what_it_may_not_do_and_who_may(cluster: Cluster) -> None:
    """`titan schedule create` with a worker token said "a worker token may not read": its
    first call asks which scripts to upload, a read-only route for a write (a QA pass)."""
    cluster.script("a.py", "print('a')\n")
    pipeline = cluster.script("p.yaml", "name: p\njobs:\n  - id: a\n    file: a.py\n")
    worker = (cluster.data / "worker.token").read_text().strip()
    out = titan(cluster, "schedule", "create", "by-worker", pipeline, "--cron", "@daily",
                token=worker, check=False)
    assert out.returncode != 0
    assert "a worker token may not upload scripts or files; that takes an admin or operator " \
        "token, or a job's own" in out.stderr, out.stderr
    viewer = cluster.client(token=cluster.client().create_token("viewer")["token"])
    with pytest.raises(Forbidden, match="a viewer token may not manage schedules; that takes "
                                        "an admin or operator token$"):
        viewer.pause_schedule("by-worker")


def tick_said(client: TitanClient, dag_ref: str, job_id: str) -> str:
    """What the job printed: a script of :data:`TELL_TICK`."""
    return client.fetch_logs(f"{dag_ref}/{job_id}").strip()


#: A job that prints the schedule and the tick its run is for, as the worker tells it.
TELL_TICK = "import os\nprint(os.environ['TITAN_SCHEDULE'], os.environ['TITAN_SCHEDULE_TICK'])\n"


def test_each_run_is_told_the_tick_it_runs_for(cluster: Cluster) -> None:
    # A run could not tell which tick it was for: one that starts late (a catch-up after an
    # outage, a tick queued behind the last run, a retry) could only read the clock, so the
    # catch-up runs of a daily job all processed today. Each job is told, in the schedule's
    # zone with its offset; a run by hand is for the moment it was asked.
    script = cluster.script("which_tick.py", TELL_TICK)
    client = cluster.client()
    client.schedule_dag("which", [TitanJob(job_id="which", filename=script)], cron=EVERY_2S,
                        timezone="Asia/Kolkata")
    try:
        done = until("a completed run", lambda: next(
            (f for f in fired(client, "which") if f["dag"]["status"] == "COMPLETED"), None))
    finally:
        client.pause_schedule("which")
    tick = dt.datetime.fromtimestamp(done["tick"], zoneinfo.ZoneInfo("Asia/Kolkata"))
    assert tick_said(client, done["dag"]["ref"], "which") == \
        f"which {tick.isoformat(timespec='seconds')}"
    assert tick.isoformat().endswith("+05:30")

    asked = time.time()
    ref = client.run_schedule_now("which")["ref"]
    assert client.wait_dag(ref, timeout=30)["status"] == "COMPLETED"
    name, at = tick_said(client, ref, "which").split()
    assert name == "which" and at.endswith("+05:30")
    assert asked - 1 <= dt.datetime.fromisoformat(at).timestamp() <= time.time()
    # The schedule's jobs stay as they were given: the tick is the run's, not the schedule's.
    assert client.get_schedule("which")["jobs"][0]["env"] == {}
    client.delete_schedule("which")


def test_a_scheduled_jobs_env_values_are_read_only_by_who_manages_schedules(
        cluster: Cluster) -> None:
    # GET /schedules/{name} served each job's env — its API keys — to a viewer and to any
    # job's token (both may read schedules), though a DAG's views never serve a job's env.
    # Their names show; their values only to an operator or admin, who sends them back.
    script = cluster.script("peek.py", (
        "import json, os\nfrom titan import TitanClient\n"
        "print(json.dumps(TitanClient().get_schedule(os.environ['TITAN_SCHEDULE'])"
        "['jobs'][0]['env']))\n"))
    client = cluster.client()
    secret = {"OPENAI_API_KEY": "sk-live-do-not-show"}
    client.schedule_dag("keyed", [TitanJob(job_id="peek", filename=script, env=secret)],
                        cron="0 3 * * *")
    hidden = {"OPENAI_API_KEY": "***"}
    viewer = cluster.client(token=client.create_token("viewer")["token"])
    assert viewer.get_schedule("keyed")["jobs"][0]["env"] == hidden
    operator = cluster.client(token=client.create_token("operator")["token"])
    assert operator.get_schedule("keyed")["jobs"][0]["env"] == secret
    assert client.get_schedule("keyed")["jobs"][0]["env"] == secret
    ref = client.run_schedule_now("keyed")["ref"]  # its job reads it with its job token
    assert client.wait_dag(ref, timeout=30)["status"] == "COMPLETED"
    assert client.fetch_logs(f"{ref}/peek").strip() == '{"OPENAI_API_KEY": "***"}'
    client.delete_schedule("keyed")


def test_the_last_run_shows_though_skipped_ticks_fill_the_latest_fires(
        cluster: Cluster) -> None:
    # A run longer than five ticks under overlap: skip: the latest five fires were all
    # skipped, so `titan schedule list` said LAST RUN "-" and the page showed five SKIPPED
    # badges while the run they were skipped for went on, as if the schedule had never run.
    release = cluster.root / "long_run.release"
    script = cluster.script("long_run.py", (
        f"import os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.1)\n"))
    client = cluster.client()
    client.schedule_dag("long", [TitanJob(job_id="step", filename=script)], cron=EVERY_2S,
                        overlap="skip")
    try:
        until("five skipped ticks in a row", lambda: [
            f["outcome"] for f in client.get_schedule("long")["fires"][:5]] == ["skipped"] * 5,
            timeout=40)
        client.pause_schedule("long")
        [listed] = [s for s in client.list_schedules() if s["name"] == "long"]
        assert all(f["dag"] is None for f in listed["fires"])
        assert listed["last_run"]["dag"]["ref"] == "long#1"
        assert listed["last_run"]["dag"]["status"] == "RUNNING"
        assert client.get_schedule("long")["last_run"]["dag"]["ref"] == "long#1"
        row = next(line for line in titan(cluster, "schedule", "list").stdout.splitlines()
                   if line.startswith("long "))
        assert row.endswith("DAG-long#1 RUNNING"), row
        with httpx.Client(base_url=cluster.url, timeout=30,
                          headers={"Authorization": f"Bearer {cluster.admin_token}"}) as s:
            page = s.get("/schedules").text
        assert 'class="fire last-run"' in page and 'href="/dags/DAG-long' in page
        assert f'data-dag-id="{listed["last_run"]["dag"]["id"]}"' in page
    finally:
        release.touch()
    assert client.wait_dag("long#1", timeout=30)["status"] == "COMPLETED"
    client.delete_schedule("long")


def test_a_master_killed_between_ticks_fires_each_tick_once(cluster: Cluster) -> None:
    beat = cluster.script("tick.py", TELL_TICK)
    client = cluster.client()
    client.schedule_dag("ticks", [TitanJob(job_id="tick", filename=beat)], cron=EVERY_2S,
                        catchup="all")
    until("three runs", lambda: len(fired(client, "ticks")) >= 3)
    assert cluster.master is not None
    os.killpg(cluster.master.pid, signal.SIGKILL)  # `titan up`: the master and its worker
    cluster.master.wait()
    time.sleep(3)  # a tick or two fall while no master runs
    cluster.up(slots=4)
    client = cluster.client()
    until("three more runs", lambda: len(fired(client, "ticks")) >= 8, timeout=60)
    client.pause_schedule("ticks")

    runs = fired(client, "ticks")
    ticks = [f["tick"] for f in runs]
    # Every tick once, none missing across the restart (catchup "all"), none twice.
    assert ticks == [ticks[0] + 2 * i for i in range(len(ticks))], ticks
    assert len({f["dag"]["id"] for f in runs}) == len(runs)
    assert client.list_dags(name="ticks", limit=100)[-1]["run"] == 1
    assert len(client.list_dags(name="ticks", limit=100)) == len(runs)
    for f in runs:
        until("each run to end", lambda f=f: client.get_dag(f["dag"]["id"])["status"] == "COMPLETED")
        # The runs caught up after the restart started late: each still knows its tick.
        tick = dt.datetime.fromtimestamp(f["tick"], dt.UTC).isoformat(timespec="seconds")
        assert tick_said(client, f["dag"]["ref"], "tick") == f"ticks {tick}"


def test_a_schedules_jobs_can_be_sent_back_as_they_are_shown(cluster: Cluster) -> None:
    # GET /schedules/{name} showed its jobs normalised ("service": null on every job, the
    # gate a hitl_message adds as a job of its own): sent back in a PATCH or a POST, they
    # were refused ("unknown field 'service'") or doubled the gate.
    script = cluster.script("step.py", "print('step')\n")
    client = cluster.client()
    client.schedule_dag("roundtrip", [
        TitanJob(job_id="serve", filename=script, job_type="SERVICE", port=8123,
                 readiness="tcp", max_restarts=2),
        TitanJob(job_id="build", filename=script, hitl_message="ship it?"),
        TitanJob(job_id="deploy", filename=script, parents=["build"], retries=2),
    ], cron="0 3 * * *", timezone="UTC")
    shown = client.get_schedule("roundtrip")["jobs"]
    assert [j["job_id"] for j in shown] == ["serve", "build", "deploy"]
    assert all("service" not in j for j in shown)
    assert shown[0]["max_restarts"] == 2 and shown[0]["readiness"] == "tcp"
    assert shown[2]["parents"] == ["build"] and shown[1]["hitl_message"] == "ship it?"

    again = client.api("PATCH", "/schedules/roundtrip", json={"jobs": shown})
    assert again["jobs"] == shown
    copy = client.api("POST", "/schedules", json={
        "name": "roundtrip-copy", "dag_name": "copy", "cron": "0 4 * * *", "jobs": shown})
    assert copy["jobs"] == shown
    # What runs is what was scheduled: the gate still stands between build and deploy.
    ref = client.api("POST", "/schedules/roundtrip-copy/run")["ref"]
    jobs = {j["job_id"]: j for j in client.get_dag(ref)["jobs"]}
    assert jobs["build.approval"]["parents"] == ["build"]
    assert jobs["deploy"]["parents"] == ["build.approval"]
    client.cancel(ref)
    client.delete_schedule("roundtrip")
    client.delete_schedule("roundtrip-copy")


def test_a_tick_skipped_behind_a_queued_one_says_so_by_the_runs_name(cluster: Cluster) -> None:
    # It read "the previous run (DAG 2) was still running": the DAG's internal id (another
    # DAG's on a busy master), and not that a tick already waited.
    slow = cluster.script("slow_tick.py", "import time\ntime.sleep(7)\n")
    client = cluster.client()
    client.schedule_dag("slow_ticks", [TitanJob(job_id="slow", filename=slow)],
                        cron=EVERY_2S, overlap="queue")
    try:
        skipped = until("a skipped tick", lambda: next(
            (f for f in client.get_schedule("slow_ticks")["fires"]
             if f["outcome"] == "skipped"), None))
        assert skipped["error"] == ("the previous run (slow_ticks#1) was still running and a "
                                    "tick already waited behind it (overlap: queue)"), skipped
    finally:
        client.delete_schedule("slow_ticks")
        client.cancel("DAG-slow_ticks")


def test_a_retried_older_run_counts_for_skip_and_queue(cluster: Cluster) -> None:
    # A run that ended left the schedule's memory at the next tick: retried (RUNNING again)
    # when a later run was the last, it went unseen, and a tick under `skip` or `queue`
    # started a run beside it, while a restarted master (reading the database) saw it run.
    flag, release = cluster.root / "broken.flag", cluster.root / "release.flag"
    flag.touch()
    script = cluster.script("flaky_run.py", (
        "import os, sys, time\n"
        f"if os.path.exists({str(flag)!r}):\n    sys.exit(1)\n"
        f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.1)\n"))
    client = cluster.client()
    client.schedule_dag("retried", [TitanJob(job_id="step", filename=script)],
                        cron=EVERY_2S, overlap="skip")
    try:
        # Ticks start runs that fail: the ticks after the first run's end forget it.
        until("three runs", lambda: len(fired(client, "retried")) >= 3)
        client.pause_schedule("retried")
        runs = [f["dag"]["ref"] for f in fired(client, "retried")]
        for ref in runs:
            until(f"{ref} to fail", lambda ref=ref: client.get_dag(ref)["status"] == "FAILED")
        seen = max(f["id"] for f in client.get_schedule("retried")["fires"])
        flag.unlink()
        client.retry(runs[0])
        until(f"{runs[0]} to run again",
              lambda: client.get_dag(runs[0])["status"] == "RUNNING")

        def after_retry(outcome: str) -> dict[str, Any] | None:
            return next((f for f in client.get_schedule("retried")["fires"]
                         if f["id"] > seen and f["outcome"] == outcome), None)

        client.resume_schedule("retried")
        skipped = until("a skipped tick", lambda: after_retry("skipped"))
        assert skipped["error"] == (f"the previous run ({runs[0]}) was still running "
                                    "(overlap: skip)"), skipped
        assert after_retry("submitted") is None
        # `queue`: the tick waits for the retried run; its run starts once that one ends.
        client.update_schedule("retried", overlap="queue")
        queued = until("a queued tick", lambda: after_retry("queued"))
        time.sleep(2.5)  # a tick or more later, it still waits and no run started
        assert after_retry("queued")["id"] == queued["id"]
        assert after_retry("submitted") is None
        assert client.get_dag(runs[0])["status"] == "RUNNING"
        release.touch()
        assert client.wait_dag(runs[0], timeout=30)["status"] == "COMPLETED"
        started = until("the queued tick's run", lambda: after_retry("submitted"))
        assert started["id"] == queued["id"] and started["dag"]["ref"] not in runs, started
    finally:
        client.pause_schedule("retried")
        release.touch()
    client.wait_dag(started["dag"]["ref"], timeout=30)
    client.delete_schedule("retried")


def test_a_schedule_name_with_whitespace_at_an_end_is_refused(cluster: Cluster) -> None:
    # ' lead' was accepted, and read as 'lead' in every table. Refused by the SDK, the CLI
    # and the API; one stored before the rule is still listed, run and deleted.
    script = cluster.script("lead.py", "print('lead')\n")
    client = cluster.client()
    for name in (" lead", "lead ", "\tlead"):
        with pytest.raises(ValidationFailed, match="may not begin or end with whitespace"):
            client.schedule_dag(name, [TitanJob(job_id="lead", filename=script)],
                                cron="0 3 * * *")
    shown = client.get_schedule(client.schedule_dag(
        "lead", [TitanJob(job_id="lead", filename=script)], cron="0 3 * * *",
        paused=True)["name"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        cluster.api("POST", "/schedules", {"name": " lead", "cron": "0 3 * * *",
                                           "dag_name": "lead", "jobs": shown["jobs"]})
    assert refused.value.code == 400
    assert "may not begin or end with whitespace" in refused.value.read().decode()
    pipeline = cluster.script("lead.yaml", "name: lead\njobs:\n  - id: lead\n    file: lead.py\n")
    cli = titan(cluster, "schedule", "create", "lead ", pipeline, "--cron", "0 3 * * *",
                check=False)
    assert cli.returncode != 0 and "'lead ' may not begin or end with whitespace" \
        in cli.stderr, cli.stderr
    assert [s["name"] for s in client.list_schedules()] == ["lead"]

    # Stored before the rule (renamed in the database while no master runs).
    assert cluster.master is not None
    os.killpg(cluster.master.pid, signal.SIGKILL)
    cluster.master.wait()
    db = sqlite3.connect(cluster.data / "titan.db")
    with db:
        db.execute("UPDATE schedules SET name = ' lead' WHERE name = 'lead'")
    db.close()
    cluster.up()
    client = cluster.client()
    assert [s["name"] for s in client.list_schedules()] == [" lead"]
    ref = client.run_schedule_now(" lead")["ref"]
    assert client.wait_dag(ref, timeout=30)["status"] == "COMPLETED"
    assert client.get_schedule(" lead")["fires"][0]["dag"]["ref"] == ref
    assert titan(cluster, "schedule", "delete", " lead", "--yes").returncode == 0
    assert client.list_schedules() == []
