"""Seed 000's Agent Runs page, to the letter: a RUNNING stage that executes nothing says so, an
approval gate is named, and a run recorded with titan.trace that submitted no stage shows its
real status — in the JSON twin, the API and the page."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster, shared_cluster
from titan.master.scheduling.views import RUN_LIFECYCLE
from titan_sdk import TitanJob

# A retry's backoff long enough to look at the stage while it waits.
cluster = shared_cluster(env={"TITAN_RETRY_BACKOFF": "30"})


def agents_page(c: Cluster, **params: Any) -> tuple[dict[str, Any], str]:
    with httpx.Client(base_url=c.url, headers={"Authorization": f"Bearer {c.admin_token}"},
                      timeout=30) as s:
        return (s.get("/agents.json", params=params).json(),
                s.get("/agents", params=params).text)


def run_of(d: dict[str, Any], run_id: str) -> dict[str, Any]:
    return next(r for r in d["runs"] if r["id"] == run_id)


def wait_for(check: Any, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_a_stage_waiting_out_a_retry_is_running_and_says_why(cluster: Cluster) -> None:
    # It went back to WAITING ("no jobs have started yet", seed 000) with no hint while its
    # job, which had run and failed, waited for its next attempt.
    client = cluster.client()
    fail = cluster.script("ar_fail.py", "raise SystemExit(1)\n")
    run_id = "RETRYING_ar02"
    client.submit_dag(f"{run_id}_ITER1", [TitanJob("flaky", fail, retries=1)],
                      agent_run_id=run_id)
    wait_for(lambda: (client.get_job(f"{run_id}_ITER1/flaky").get("reason") or ""
                      ).startswith("retry"))
    agent_run = client.api("GET", f"/agent-runs/{run_id}")
    (stage,) = agent_run["stages"]
    assert (stage["status"], stage["executing"]) == ("RUNNING", 0), stage
    assert stage["hint"] == "retry 2/2 in 30s after: exit code 1"
    # The job says when its next attempt may start, not only "in 30s" (from when?).
    job = client.get_job(f"{run_id}_ITER1/flaky")
    assert job["state"] == "PENDING" and 20 < job["not_before"] - time.time() <= 30, job
    assert agent_run["status"] == "RUNNING"
    assert client.get_dag(f"{run_id}_ITER1")["status"] == "RUNNING"
    d, _ = agents_page(cluster)
    assert run_of(d, run_id)["status"] == "RUNNING"
    client.cancel(f"{run_id}_ITER1")


def test_a_running_stage_that_executes_nothing_says_so(cluster: Cluster) -> None:
    client = cluster.client()
    ok = cluster.script("ar_ok.py", "print('ok')\n")
    run_id = "QUEUED_ar01"
    # One job runs and ends; the other needs a capability no worker has: it stays queued.
    client.submit_dag(f"{run_id}_ITER1", [TitanJob("fast", ok),
                                          TitanJob("needs_gpu", ok, requirement="AR_NOWHERE")],
                      agent_run_id=run_id)
    client.wait(f"{run_id}_ITER1/fast", timeout=30)
    d, html = agents_page(cluster)
    (stage,) = run_of(d, run_id)["stages"]
    # It says why, as the job does: no live worker offers the capability it needs.
    said = "waiting for a worker with capability AR_NOWHERE"
    assert stage["status"] == "RUNNING" and stage["executing"] == 0
    assert stage["hint"] == said and stage["symbol"] == "⟳"
    assert 'data-status="RUNNING" data-executing="0"' in html
    assert f'<span class="stage-hint">{said}</span>' in html
    api = client.api("GET", f"/agent-runs/{run_id}")
    assert api["stages"][0]["hint"] == said
    # A stage all of whose jobs wait for it is WAITING, and says the same.
    client.submit_dag(f"{run_id}_GPU", [TitanJob("train", ok, requirement="AR_NOWHERE")],
                      agent_run_id=run_id)
    gpu = client.api("GET", f"/agent-runs/{run_id}")["stages"][1]
    assert (gpu["label"], gpu["status"], gpu["hint"]) == ("GPU", "WAITING", said)
    client.cancel(f"{run_id}_GPU")
    # A job waiting out its delay waits for no worker: a live one offers GENERAL.
    client.submit_dag(f"{run_id}_LATER", [TitanJob("later", ok, delay=600)],
                      agent_run_id=run_id)
    later = client.api("GET", f"/agent-runs/{run_id}")["stages"][2]
    assert (later["label"], later["status"], later["hint"]) == ("LATER", "WAITING", None)
    assert "delay" in client.get_job(f"{run_id}_LATER/later")["reason"]
    client.cancel(f"{run_id}_LATER")

    # An approval gate waiting: named as such, not as a queue.
    client.submit_dag(f"{run_id}_EVAL1", [TitanJob("check", ok),
                                          TitanJob("sign_off", job_type="APPROVAL",
                                                   parents=["check"])],
                      agent_run_id=run_id)
    wait_for(lambda: client.get_job(f"{run_id}_EVAL1/sign_off")["state"] == "WAITING_APPROVAL")
    d, _ = agents_page(cluster)
    stage = next(s for s in run_of(d, run_id)["stages"] if s["label"] == "EVAL1")
    assert (stage["status"], stage["executing"], stage["hint"]) == (
        "RUNNING", 1, "waiting for approval")
    client.approve(f"{run_id}_EVAL1/sign_off")
    client.cancel(f"{run_id}_ITER1")


def test_a_traced_run_without_stages_shows_its_own_status(cluster: Cluster) -> None:
    run_id = "traced-ar02"
    cluster.api("POST", "/runs", {"id": run_id, "agent_id": "traced"})
    d, _ = agents_page(cluster, stages="all")
    assert (run_of(d, run_id)["status"], run_of(d, run_id)["stages_note"]) == (
        "WAITING", "no stage submitted yet")
    action = {"id": "a1", "actor": "traced", "channel": "tool", "name": "lookup",
              "inputs": {"q": 1}, "outputs": {"r": 2}, "outcome": "success",
              "started_at": time.time(), "duration_ns": 1000}
    cluster.api("POST", f"/runs/{run_id}/actions", {"actions": [action]})
    d, _ = agents_page(cluster, stages="all")
    assert run_of(d, run_id)["status"] == "RUNNING"
    cluster.api("PATCH", f"/runs/{run_id}", {"status": "completed"})
    d, html = agents_page(cluster, stages="all")
    run = run_of(d, run_id)
    assert (run["status"], run["stages"], run["stages_note"]) == (
        "COMPLETED", [], "no stages: recorded with titan.trace")
    row = html[html.index(f'id="{run_id}"'):]
    row = row[:row.index('<div class="agent-run"') if '<div class="agent-run"' in row else None]
    assert 'data-status="COMPLETED"' in row and "no stages: recorded with titan.trace" in row
    assert "no stage submitted yet" not in row
    assert cluster.client().api("GET", f"/agent-runs/{run_id}")["status"] == "COMPLETED"


def test_a_running_run_shows_its_completion_percent(cluster: Cluster) -> None:
    """Seed 004: "Progress indicator shows completion %" on a running run — the jobs of its
    stages that have settled, on its card in /runs, on its page and in the API."""
    client = cluster.client()
    ok = cluster.script("ar_ok.py", "print('ok')\n")
    run_id = "PROGRESS_ar03"
    client.submit_dag(f"{run_id}_ITER1", [TitanJob("fast", ok)] + [
        TitanJob(f"held_{i}", ok, requirement="AR_NOWHERE") for i in range(2)],
        agent_run_id=run_id)
    client.wait(f"{run_id}_ITER1/fast", timeout=30)
    run = client.api("GET", f"/runs/{run_id}")
    assert run["status"] == "running"
    assert run["progress"] == {"done": 1, "total": 3, "percent": 33}
    listed = next(r for r in client.api("GET", "/runs", params={"q": run_id})["runs"])
    assert listed["progress"] == run["progress"]
    with httpx.Client(base_url=cluster.url, headers={"Authorization": f"Bearer {cluster.admin_token}"},
                      timeout=30) as s:
        registry = s.get("/runs", params={"q": run_id}).text
        page = s.get(f"/runs/{run_id}").text
    for html in (registry, page):
        assert '<progress max="100" value="33"></progress>' in html
        assert '<span class="run-progress-pct">33%</span>' in html
    client.cancel(f"{run_id}_ITER1")
    # The stage submitted again, one job: its first run is history, not part of the progress
    # (the run's status is its latest runs' too).
    client.submit_dag(f"{run_id}_ITER1", [TitanJob("held_again", ok, requirement="AR_NOWHERE")],
                      agent_run_id=run_id)
    run = client.api("GET", f"/runs/{run_id}")
    assert run["progress"] == {"done": 0, "total": 1, "percent": 0}
    listed = next(r for r in client.api("GET", "/runs", params={"q": run_id})["runs"])
    assert listed["progress"] == run["progress"]
    client.cancel(f"{run_id}_ITER1")


def test_a_dag_links_back_to_the_page_that_holds_its_agent_run(cluster: Cluster) -> None:
    # The DAG Visualizer linked to /agents#RUN: the first page, where an older run is not.
    client = cluster.client()
    ok = cluster.script("back_ok.py", "pass\n")
    for i in range(5):
        client.submit_dag(f"BACK_{i}_PLAN", [TitanJob("p", ok)], agent_run_id=f"BACK_{i}")
    with httpx.Client(base_url=cluster.url, timeout=30,
                      headers={"Authorization": f"Bearer {cluster.admin_token}"}) as s:
        everyone = s.get("/agents.json", params={"limit": 500}).json()["runs"]
        position = [r["id"] for r in everyone].index("BACK_0")
        page = s.get("/agents.json", params={"run": "BACK_0", "limit": 2}).json()
        assert page["offset"] == position - position % 2 and page["focus"] == "BACK_0"
        assert "BACK_0" in [r["id"] for r in page["runs"]]
        assert s.get("/agents.json", params={"run": "NO_SUCH"}).status_code == 404
        html = s.get("/dags/DAG-BACK_0_PLAN").text
        assert 'href="/agents?run=BACK_0#run-BACK_0"' in html


def test_an_agent_whose_orchestrator_failed_is_not_shown_completed(cluster: Cluster) -> None:
    # Its stages' jobs alone decided: an agent whose orchestrator was killed or gave up read
    # COMPLETED (green), while the Runs page said failed for the same id.
    step = cluster.script("ar_step.py", "print('step')\n")
    client = cluster.client()
    client.submit_dag("GAVEUP_PLAN", [TitanJob("plan", step)], agent_run_id="GAVEUP",
                      wait=True, timeout=60)
    d, _ = agents_page(cluster)
    # Its driver (this process) has not ended it: running, as the Runs page says.
    assert run_of(d, "GAVEUP")["status"] == "RUNNING"
    assert cluster.api("GET", "/runs/GAVEUP")["status"] == "running"
    cluster.api("PATCH", "/runs/GAVEUP", {"status": "failed", "error": "gave up"})
    d, html = agents_page(cluster)
    assert run_of(d, "GAVEUP")["status"] == "FAILED"
    assert cluster.api("GET", "/agent-runs/GAVEUP")["status"] == "FAILED"
    row = html[html.index('id="GAVEUP"'):]
    assert 'data-status="FAILED"' in row[:row.find('<div class="agent-run"', 1)]


def test_runs_without_stages_are_left_out_unless_asked_for(cluster: Cluster) -> None:
    # Seventy runs recorded with titan.trace alone (each a "no stages" row) pushed the one
    # multi-stage run to page 2 of a view that exists to show stages (seed 000).
    ok = cluster.script("ar_ok.py", "print('ok')\n")
    cluster.client().submit_dag("STAGED_ar04_PLAN", [TitanJob("plan", ok)],
                                agent_run_id="STAGED_ar04", wait=True, timeout=60)
    traced = [f"only-traced-ar04-{i}" for i in range(4)]
    for run_id in traced:
        cluster.api("POST", "/runs", {"id": run_id, "agent_id": "only-traced"})
    d, html = agents_page(cluster, limit=3)
    ids = [r["id"] for r in d["runs"]]
    assert ids[0] == "STAGED_ar04" and not set(traced) & set(ids), ids
    assert all(r["stages"] for r in d["runs"]) and d["stages"] == "with"
    assert d["stageless"] >= 4
    assert f"({d['stageless']} hidden)" in html
    assert '<input type="checkbox" name="stages" value="all" id="include-stageless">' in html
    # Ticked, in the address: every run, and the pager keeps it.
    d, html = agents_page(cluster, limit=3, stages="all")
    assert [r["id"] for r in d["runs"]] == traced[::-1][:3] and d["stageless"] is None
    assert 'id="include-stageless" checked' in html
    assert 'href="/agents?stages=all&amp;offset=3&amp;limit=3"' in html
    # A link to a run without stages opens the page that holds it, with them included.
    d, _ = agents_page(cluster, run=traced[0], limit=2)
    assert d["stages"] == "all" and traced[0] in [r["id"] for r in d["runs"]]
    with httpx.Client(base_url=cluster.url, timeout=30,
                      headers={"Authorization": f"Bearer {cluster.admin_token}"}) as s:
        assert s.get("/agents.json", params={"stages": "some"}).status_code == 400
        bad = s.get("/agents", params={"stages": "some"})
        assert bad.status_code == 400 and "stages must be one of with, all" in bad.text


def test_a_rows_run_id_links_to_its_run_page(cluster: Cluster) -> None:
    # The id was plain text: the run's own page (its registry entry, the same row) was
    # reached only through the Runs list. ':' is allowed in a run id and quoted in the link.
    client = cluster.client()
    ok = cluster.script("link_ok.py", "pass\n")
    client.submit_dag("ODD:link.1_PLAN", [TitanJob("p", ok)], agent_run_id="ODD:link.1")
    with httpx.Client(base_url=cluster.url, timeout=30,
                      headers={"Authorization": f"Bearer {cluster.admin_token}"}) as s:
        html = s.get("/agents", params={"run": "ODD:link.1"}).text
        assert '<a class="run-id" href="/runs/ODD%3Alink.1">ODD:link.1</a>' in html
        page = s.get("/runs/ODD%3Alink.1")
        assert page.status_code == 200 and "ODD:link.1" in page.text


def test_submit_dag_names_the_agent_its_run_belongs_to(cluster: Cluster) -> None:
    """A run id chosen by its caller ("lora-study") named the agent too: its runs were each
    an agent of their own on the Runs page and the agent page. ``agent_id=`` says which."""
    from titan.errors import ValidationFailed

    client = cluster.client()
    ok = cluster.script("named_ok.py", "pass\n")
    client.submit_dag("lora-study_PLAN", [TitanJob("p", ok)], agent_run_id="lora-study",
                      agent_id="RESEARCH", wait=True, timeout=60)
    assert client.api("GET", "/runs/lora-study")["agent_id"] == "RESEARCH"
    # Without it, the run id without its random tail, as before.
    client.submit_dag("WEEKLY_1a2b3c_PLAN", [TitanJob("p", ok)], agent_run_id="WEEKLY_1a2b3c",
                      wait=True, timeout=60)
    assert client.api("GET", "/runs/WEEKLY_1a2b3c")["agent_id"] == "WEEKLY"
    # Refused before anything is sent: an agent id is a name, and it needs a run to name.
    for bad in ("", "  ", "x" * 201, 7):
        with pytest.raises(ValidationFailed) as refused:
            client.submit_dag("bad_agent", [TitanJob("p", ok)], agent_run_id="bad-agent",
                              agent_id=bad)  # type: ignore[arg-type]
        assert refused.value.details["field"] == "agent_id"
    with pytest.raises(ValidationFailed, match="agent_run_id") as refused:
        client.submit_dag("bad_agent", [TitanJob("p", ok)], agent_id="RESEARCH")
    assert refused.value.details["field"] == "agent_id"
    assert client.list_dags(name="bad_agent") == []


# -- one status per run, whichever page, twin, route or command says it -----------------------

DRIVER = """
import sys
from titan_sdk import TitanClient, TitanJob

run_id, step, go = sys.argv[1:4]
client = TitanClient()
client.submit_dag(f"{run_id}_PLAN", [TitanJob("plan", step)], agent_run_id=run_id,
                  wait=True, timeout=60)
client.store_put(f"{go}:planned", "yes")
client.store_wait(go, timeout=120)  # alive, between stages, as an orchestrator reasoning
client.submit_dag(f"{run_id}_SYNTH", [TitanJob("synth", step)], agent_run_id=run_id,
                  wait=True, timeout=60)
"""


def said_everywhere(c: Cluster, run_id: str) -> dict[str, str]:
    """The run's status as each place says it: the Agent Runs page and its twin, the Runs
    page and its twin, the run's page twin, the API's two routes and ``titan runs list``."""
    import json
    import subprocess
    import sys

    with httpx.Client(base_url=c.url, headers={"Authorization": f"Bearer {c.admin_token}"},
                      timeout=30) as s:
        agents = s.get("/agents.json", params={"run": run_id}).json()
        html = s.get("/agents", params={"run": run_id}).text
        row = html[html.index(f'id="run-{run_id}"'):]
        runs = s.get("/runs.json", params={"q": run_id}).json()
        runs_html = s.get("/runs", params={"q": run_id}).text
        page = s.get(f"/runs/{run_id}.json").json()
    listed = subprocess.run(
        [sys.executable, "-m", "titan", "runs", "list", "--q", run_id, "--json", "--host",
         "127.0.0.1", "--port", str(c.port), "--token", c.admin_token],
        capture_output=True, text=True, timeout=60, env=c.env)
    assert listed.returncode == 0, listed.stderr
    (cli,) = [r for r in json.loads(listed.stdout)["runs"] if r["id"] == run_id]
    (card,) = [r for r in runs["runs"] if r["id"] == run_id]
    return {
        "agents.json": run_of(agents, run_id)["status"],
        "agents": row[row.index('data-status="') + 13:].split('"', 1)[0],
        "api agent-runs": c.api("GET", f"/agent-runs/{run_id}")["status"],
        "runs.json": card["status"],
        "runs": runs_html[runs_html.index(f'<article class="run-card" data-run-id="{run_id}"'):]
        .split('data-status="', 1)[1].split('"', 1)[0],
        "run page": page["run"]["status"],
        "run page stages": page["run"]["stage_status"],
        "api runs": c.api("GET", f"/runs/{run_id}")["status"],
        "cli": cli["status"],
    }


def assert_agree(said: dict[str, str], word: str) -> None:
    upper = {k: v for k, v in said.items() if k in ("agents.json", "agents", "api agent-runs",
                                                   "run page stages")}
    lower = {k: v for k, v in said.items() if k not in upper}
    assert set(upper.values()) == {word} and set(lower.values()) == {RUN_LIFECYCLE[word]}, said


def test_a_run_whose_driver_is_alive_is_running_everywhere(cluster: Cluster) -> None:
    # Its driver (a job that submits the run's stages) waited between two stages: every
    # stage submitted so far had finished, so Agent Runs said COMPLETED (green) while the
    # Runs page said running for the same id, until the next stage made it RUNNING again.
    client = cluster.client()
    step = cluster.script("agree_step.py", "print('step')\n")
    driver = cluster.script("agree_driver.py", DRIVER)
    run_id, go = "AGREE_5e1f", "agree-go-5e1f"
    client.submit_dag("AGREE_DRIVER", [TitanJob("drive", driver, args=[run_id, step, go])])
    assert client.store_wait(f"{go}:planned", timeout=60) == "yes"
    assert client.get_dag(f"{run_id}_PLAN")["status"] == "COMPLETED"
    assert_agree(said_everywhere(cluster, run_id), "RUNNING")
    client.store_put(go, "now")
    client.wait("AGREE_DRIVER/drive", timeout=60)
    deadline = time.time() + 30
    while (said := said_everywhere(cluster, run_id))["api runs"] == "running":
        assert_agree(said, "RUNNING")  # never one word here and another there meanwhile
        assert time.time() < deadline, said
        time.sleep(0.2)
    assert_agree(said, "COMPLETED")
