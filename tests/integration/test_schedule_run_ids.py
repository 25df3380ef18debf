"""Acceptance on a real `titan up`: a schedule's ``agent_run_id`` template gives each fire's
DAG its own agent run id, ``{tick}`` filled with the tick in ISO 8601 UTC (basic format), set
and changed from the SDK, the CLI and the API, kept across a restart (migration 27)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import urllib.error
from typing import Any

import pytest

from tests.integration.harness import Cluster
from tests.integration.test_cli import titan
from tests.integration.test_schedules import EVERY_2S, fired, until
from titan import TitanJob
from titan.errors import ValidationFailed


def stamp(tick: float) -> str:
    return dt.datetime.fromtimestamp(tick, dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def test_each_fire_is_its_own_agent_run(cluster: Cluster) -> None:
    beat = cluster.script("beat.py", "print('beat')\n")
    client = cluster.client()
    job = TitanJob(job_id="beat", filename=beat)
    for bad, said in (("beat", "must be a template holding {tick}"),
                      ("beat {tick}", "must be 1-200 characters"),
                      ("{x}-{tick}", "may hold no brace but those of {tick}")):
        with pytest.raises(ValidationFailed, match=said.replace("{", "\\{")) as refused:
            client.schedule_dag("beats", [job], cron=EVERY_2S, agent_run_id=bad)
        assert refused.value.details == {"field": "agent_run_id"}
    made = client.schedule_dag("beats", [job], cron=EVERY_2S, overlap="skip",
                               agent_run_id="beats-{tick}")
    assert made["agent_run_id"] == "beats-{tick}"
    runs = until("two runs", lambda: (lambda f: f if len(f) >= 2 else None)(
        fired(client, "beats")))
    for fire in runs[:2]:
        dag = client.get_dag(fire["dag"]["ref"])
        assert dag["agent_run_id"] == f"beats-{stamp(fire['tick'])}", dag
        run = cluster.api("GET", f"/runs/{dag['agent_run_id']}")
        # One agent, the schedule's: every fire on its page, not an agent per tick.
        assert (run["id"], run["agent_id"]) == (dag["agent_run_id"], "beats"), run
        assert run["started_by"] == {"role": "schedule", "name": "beats"}, run
        assert run["started_by_label"] == "schedule 'beats'"
    assert len({client.get_dag(f["dag"]["ref"])["agent_run_id"] for f in runs}) == len(runs)
    client.pause_schedule("beats")

    # A run by hand is for the moment it was asked.
    before = dt.datetime.now(dt.UTC).replace(microsecond=0).timestamp()
    by_hand = client.run_schedule_now("beats")
    run_id = client.get_dag(by_hand["ref"])["agent_run_id"]
    assert run_id.startswith("beats-") and stamp(before) <= run_id[6:], run_id

    # Changed from the CLI, shown by it; cleared with null through the API.
    out = titan(cluster, "schedule", "update", "beats", "--agent-run-id", "b2.{tick}").stdout
    assert "agent runs:  b2.{tick}" in out
    assert client.get_schedule("beats")["agent_run_id"] == "b2.{tick}"
    bad = titan(cluster, "schedule", "update", "beats", "--agent-run-id", "b2", check=False)
    assert bad.returncode != 0 and "must be a template holding {tick}" in bad.stderr
    cleared: dict[str, Any] = cluster.api("PATCH", "/schedules/beats", {"agent_run_id": None})
    assert cleared["agent_run_id"] is None
    assert client.get_dag(client.run_schedule_now("beats")["ref"])["agent_run_id"] is None
    with pytest.raises(urllib.error.HTTPError) as refused_api:
        cluster.api("PATCH", "/schedules/beats", {"agent_run_id": "{tick}/x"})
    assert refused_api.value.code == 400

    # Created from the CLI, and kept across a restart.
    pipeline = cluster.script("beat.yaml", "name: beat\njobs:\n  - id: beat\n    file: beat.py\n")
    titan(cluster, "schedule", "create", "hourly", pipeline, "--cron", "0 * * * *",
          "--agent-run-id", "hourly-{tick}")
    # Or written in the pipeline's own schedule: block, which the option overrides.
    daily = cluster.script("daily.yaml", 'name: daily\nschedule:\n  cron: "0 6 * * *"\n'
                           '  agent_run_id: "daily-{tick}"\njobs:\n  - id: beat\n'
                           '    file: beat.py\n')
    assert client.schedule_yaml(daily)["agent_run_id"] == "daily-{tick}"
    assert client.schedule_yaml(daily, "daily2", agent_run_id="d2-{tick}")[
        "agent_run_id"] == "d2-{tick}"
    assert cluster.master is not None
    os.killpg(cluster.master.pid, signal.SIGKILL)
    cluster.master.wait()
    cluster.up()
    assert cluster.client().get_schedule("hourly")["agent_run_id"] == "hourly-{tick}"


def test_a_fires_agent_run_ends_with_its_stage(cluster: Cluster) -> None:
    """Nothing drives a fire's run but the schedule, which is done once the run is submitted:
    the run ends as its stage does — completed, or failed naming the stage — instead of
    staying `running` on the Runs page for good (never archived, never pruned), and after
    a restart too."""
    client = cluster.client()
    ok = TitanJob(job_id="beat", filename=cluster.script("beat.py", "print('beat')\n"))
    bad = TitanJob(job_id="beat", filename=cluster.script("bad.py", "raise SystemExit(3)\n"))
    slow = TitanJob(job_id="beat", filename=cluster.script(
        "slow.py", "import time\ntime.sleep(3)\n"))

    def run_of(schedule: str) -> dict[str, Any]:
        dag = client.wait_dag(client.run_schedule_now(schedule)["ref"], timeout=60)
        return until("the run to end", lambda: (lambda r: r if r["status"] != "running"
                                               else None)(
            cluster.api("GET", f"/runs/{dag['agent_run_id']}")))

    client.schedule_dag("fine", [ok], cron="0 6 * * *", agent_run_id="fine-{tick}")
    run = run_of("fine")
    assert (run["status"], run["error"]) == ("completed", None), run
    client.schedule_dag("broken", [bad], cron="0 6 * * *", agent_run_id="broken-{tick}")
    run = run_of("broken")
    assert run["status"] == "failed" and "ended FAILED" in (run["error"] or ""), run
    # Its stage still running when the master is killed: ended once it finishes, after.
    client.schedule_dag("slow", [slow], cron="0 6 * * *", agent_run_id="slow-{tick}")
    started = client.run_schedule_now("slow")
    assert cluster.master is not None
    os.killpg(cluster.master.pid, signal.SIGKILL)
    cluster.master.wait()
    cluster.up()
    client = cluster.client()
    dag = client.wait_dag(started["ref"], timeout=60)
    assert dag["status"] == "COMPLETED", dag
    run = until("the run to end", lambda: (lambda r: r if r["status"] != "running" else None)(
        cluster.api("GET", f"/runs/{dag['agent_run_id']}")))
    assert run["status"] == "completed", run
