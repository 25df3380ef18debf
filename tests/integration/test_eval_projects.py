"""Seed 003's hierarchy end to end: projects → workflows → tasks → agent runs under
``/api/projects``, against a real master whose workflows are evaluations run by the example
support agent (examples/eval_agent) as Titan jobs, the simulator and judge on the scripted
hosted model (tests/fake_llm_api.py), as in test_evaluations.py.

The seed's routes are a second family over the same evaluations: each answers what its
``/api/v1/evaluations`` twin answers, a workflow of another project is a 404 exactly like an
unknown one, and re-run is a 202 naming its source run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.harness import Cluster
from tests.integration.test_evaluations import EXAMPLE, evals_cluster, fake_llm  # noqa: F401

SEED = "/api/projects"
ACME = f"{SEED}/acme/workflows/acme-support"


@pytest.fixture(scope="module")
def http(evals_cluster: Cluster) -> Iterator[httpx.Client]:  # noqa: F811 (a fixture)
    with httpx.Client(base_url=evals_cluster.url, timeout=60, headers={
            "Authorization": f"Bearer {evals_cluster.admin_token}"}) as client:
        yield client


@pytest.fixture(scope="module")
def workflows(evals_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
              ) -> dict[str, Any]:
    """Two workflows run to the end: ``acme-support`` in project ``acme`` (a spec file that
    says ``project: acme``) and ``plain`` in ``default`` (created with no project)."""
    client = evals_cluster.client()
    spec = yaml.safe_load((EXAMPLE / "evaluation.yaml").read_text())
    tasks = [t for t in yaml.safe_load((EXAMPLE / spec["tasks"]).read_text())
             if t["id"] in ("status-check", "cancel-processing")]
    folder = tmp_path_factory.mktemp("acme-spec")
    (folder / "support_agent.py").write_bytes((EXAMPLE / spec["agent"]["script"]).read_bytes())
    (folder / "acme.yaml").write_text(yaml.safe_dump(
        {"name": "acme-support", "project": "acme", "agent": spec["agent"], "tasks": tasks}))
    created = client.create_evaluation_from(folder / "acme.yaml")
    assert created["project"] == "acme" and created["tasks_added"] == 2
    plain = client.create_evaluation("plain", spec["agent"], tasks[:1], base=EXAMPLE)
    assert plain["project"] == "default"
    client.run_evaluation("acme-support")
    client.run_evaluation("plain")
    return {name: client.wait_evaluation(name, timeout=180) for name in ("acme-support",
                                                                          "plain")}


def get(http: httpx.Client, path: str, status: int = 200) -> Any:
    reply = http.get(path)
    assert reply.status_code == status, reply.text
    return reply.json()


def test_projects_list_their_workflows(workflows: dict[str, Any], http: httpx.Client) -> None:
    projects = {p["id"]: p for p in get(http, SEED)["projects"]}
    assert projects["acme"]["workflow_count"] == 1
    assert projects["default"]["workflow_count"] >= 1
    listed = get(http, f"{SEED}/acme/workflows")
    assert listed["project"] == "acme"
    (row,) = listed["workflows"]
    assert row["id"] == "acme-support" and row["project"] == "acme" and row["task_count"] == 2
    assert "plain" in {w["id"] for w in get(http, f"{SEED}/default/workflows")["workflows"]}
    gone = get(http, f"{SEED}/nowhere/workflows", 404)["error"]
    assert gone["code"] == "not_found" and "no project 'nowhere'" in gone["message"]
    # The /api/v1 family says where each evaluation lives too.
    assert {e["id"]: e["project"] for e in get(http, "/api/v1/evaluations")["evaluations"]}[
        "acme-support"] == "acme"
    # ... and narrows to one project (an empty filter is an empty list, not a 404).
    assert [e["id"] for e in get(http, "/api/v1/evaluations?project=acme")["evaluations"]] == [
        "acme-support"]
    assert get(http, "/api/v1/evaluations?project=nowhere")["evaluations"] == []


def test_titan_eval_list_filters_by_project(workflows: dict[str, Any],
                                            evals_cluster: Cluster) -> None:  # noqa: F811
    import subprocess
    import sys

    listed = subprocess.run(
        [sys.executable, "-m", "titan", "eval", "list", "--project", "acme", "--host",
         "127.0.0.1", "--port", str(evals_cluster.port), "--token", evals_cluster.admin_token],
        capture_output=True, text=True, timeout=60, env=evals_cluster.env)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["EVALUATION", "PROJECT"], ["acme-support", "acme"]]


def test_the_seed_routes_answer_what_the_evaluation_routes_answer(
        workflows: dict[str, Any], http: httpx.Client) -> None:
    v1 = "/api/v1/evaluations/acme-support"
    explorer = get(http, ACME)
    assert explorer == get(http, v1) and explorer["evaluation"]["project"] == "acme"
    assert [t["task_id"] for t in explorer["tasks"]] == ["status-check", "cancel-processing"]
    tasks = get(http, f"{ACME}/tasks")
    assert tasks["project"] == "acme" and tasks["tasks"] == explorer["tasks"]
    task = get(http, f"{ACME}/tasks/status-check")
    assert task == get(http, f"{v1}/tasks/status-check")
    assert task["seed"]["user_instruction"] == "What is the status of my order A-1001?"
    runs = get(http, f"{ACME}/tasks/status-check/agent-runs")["runs"]
    assert runs == get(http, f"{v1}/tasks/status-check/runs")["runs"] and len(runs) == 1
    run_id = runs[0]["id"]
    trace = get(http, f"{ACME}/tasks/status-check/agent-runs/{run_id}")
    # Read twice, the trace is the same; the latency of a finished run does not move.
    assert trace == get(http, f"{v1}/tasks/status-check/runs/{run_id}")
    assert trace["header"]["id"] == run_id and trace["judge"]["verdict"] == "PASS"
    missing = get(http, f"{ACME}/tasks/status-check/agent-runs/nope", 404)["error"]
    assert missing["message"] == "task 'status-check' has no agent run 'nope'"
    assert "workflow 'acme-support' has no task 'nope'" in get(
        http, f"{ACME}/tasks/nope", 404)["error"]["message"]


def test_a_workflow_of_another_project_is_a_404_like_an_unknown_one(
        workflows: dict[str, Any], http: httpx.Client) -> None:
    run_id = workflows["acme-support"]["tasks"][0]["run"]["id"]
    elsewhere = f"{SEED}/default/workflows/acme-support"
    unknown = f"{SEED}/default/workflows/no-such-workflow"
    for tail in ("", "/tasks", "/tasks/status-check", "/tasks/status-check/agent-runs",
                 f"/tasks/status-check/agent-runs/{run_id}"):
        moved = get(http, elsewhere + tail, 404)["error"]
        never = get(http, unknown + tail, 404)["error"]
        assert moved["code"] == never["code"] == "not_found"
        assert moved["message"] == "project 'default' has no workflow 'acme-support'"
        assert never["message"] == "project 'default' has no workflow 'no-such-workflow'"
    refused = http.post(f"{elsewhere}/tasks/status-check/agent-runs/{run_id}/re-run")
    assert refused.status_code == 404, refused.text
    # Nothing was dispatched by the refused re-run.
    assert len(get(http, f"{ACME}/tasks/status-check/agent-runs")["runs"]) == 1


def test_rerun_on_the_seed_path_is_202_naming_the_source_run(
        evals_cluster: Cluster, workflows: dict[str, Any],  # noqa: F811
        http: httpx.Client) -> None:
    row = {t["task_id"]: t for t in workflows["acme-support"]["tasks"]}["cancel-processing"]
    first = row["run"]["id"]
    path = f"{ACME}/tasks/cancel-processing/agent-runs/{first}/re-run"
    # A viewer may read the seed's routes but not re-run (workflow manage permission).
    viewer = evals_cluster.api("POST", "/tokens", {"role": "viewer", "name": "seed-reader"})
    as_viewer = {"Authorization": f"Bearer {viewer['token']}"}
    assert http.get(ACME, headers=as_viewer).status_code == 200
    assert http.post(path, headers=as_viewer).status_code == 403
    assert http.get(ACME, headers={"Authorization": ""}).status_code == 401
    # It takes no body: a field sent there would be ignored without a word (nor is anything
    # dispatched by a refused one).
    for body in ({"agent_config": {"model": "x"}}, "garbage", [1]):
        refused = http.post(path, json=body)
        assert refused.status_code == 400, refused.text
        assert "takes no body" in refused.json()["error"]["message"], refused.text
    garbled = http.post(path, content=b"garbage", headers={"Content-Type": "application/json"})
    assert garbled.status_code == 400, garbled.text
    reply = http.post(path, json={})  # an empty object is no body
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["source_run_id"] == first and body["run_id"] != first
    assert body["agent_runs"] == f"{ACME}/tasks/cancel-processing/agent-runs"
    view = evals_cluster.client().wait_evaluation("acme-support", timeout=120)
    latest = {t["task_id"]: t for t in view["tasks"]}["cancel-processing"]
    assert latest["run"]["id"] == body["run_id"] and latest["run_count"] == 2
    runs = get(http, body["agent_runs"])["runs"]
    assert [r["id"] for r in runs] == [body["run_id"], first]  # newest first
    assert runs[0]["source_run"] == first and runs[0]["status"] == "completed"


def test_a_workflows_project_is_set_by_the_spec_the_sdk_and_put(
        evals_cluster: Cluster, workflows: dict[str, Any],  # noqa: F811
        http: httpx.Client) -> None:
    client = evals_cluster.client()
    agent = yaml.safe_load((EXAMPLE / "evaluation.yaml").read_text())["agent"]
    made = client.create_evaluation("mover", agent, base=EXAMPLE, project="team-a")
    assert made["project"] == "team-a" and made["created"] is True
    # Applied again without a project, it stays where it is; naming one moves it.
    assert client.create_evaluation("mover", agent, base=EXAMPLE)["project"] == "team-a"
    assert client.create_evaluation("mover", agent, base=EXAMPLE,
                                    project="team-b")["project"] == "team-b"
    get(http, f"{SEED}/team-b/workflows/mover")
    get(http, f"{SEED}/team-a/workflows/mover", 404)
    get(http, f"{SEED}/team-a/workflows", 404)  # nothing names it any more
    bad = http.put("/api/v1/evaluations/mover", json={"agent": agent, "project": "no spaces"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "project"


def test_the_projects_pages_and_their_twins(workflows: dict[str, Any],
                                            http: httpx.Client) -> None:
    projects = http.get("/projects.json").json()["projects"]
    acme = {p["id"]: p for p in projects}["acme"]
    assert [w["id"] for w in acme["workflows"]] == ["acme-support"]
    assert http.get("/projects/acme.json").json()["projects"] == [acme]
    assert http.get("/projects/nowhere.json").status_code == 404
    twin = http.get("/projects/acme/workflows/acme-support.json").json()
    assert twin.pop("polling") is False
    assert twin.pop("links") == {"project": "acme", "page": "/projects/acme/workflows/acme-support",
                                 "api": ACME, "runs": "agent-runs"}
    pager = {k: twin.pop(k) for k in ("total", "limit", "offset", "range", "past_end",
                                      "last_offset", "prev_offset", "next_offset")}
    assert (pager["total"], pager["limit"], pager["next_offset"]) == (len(twin["tasks"]), 200, None)
    assert twin == get(http, ACME)
    paged = http.get("/projects/acme/workflows/acme-support.json", params={"limit": 1}).json()
    assert [t["task_id"] for t in paged["tasks"]] == [twin["tasks"][0]["task_id"]]
    assert paged["summary"] == twin["summary"] and paged["next_offset"] == 1
    assert http.get("/projects/default/workflows/acme-support.json").status_code == 404
    task = http.get("/projects/acme/workflows/acme-support/tasks/status-check.json").json()
    assert task["trace"] == get(http, f"{ACME}/tasks/status-check/agent-runs/{task['run_id']}")
    page = http.get("/projects/acme/workflows/acme-support", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert 'id="task-modal"' in page.text and "/projects/acme/workflows/acme-support/tasks/" \
        "status-check" in page.text
    task_page = http.get("/projects/acme/workflows/acme-support/tasks/status-check")
    assert f'data-url="{ACME}/tasks/status-check/agent-runs/' in task_page.text  # re-run
    listing = http.get("/projects")
    assert listing.status_code == 200 and 'href="/projects/acme/workflows/acme-support"' \
        in listing.text
    # One task, one run: "1 task" and "1 run" (the explorer said "1 tasks", "1 runs").
    plain = http.get("/projects/default/workflows/plain.json").json()["summary"]
    assert (plain["tasks"], plain["runs"]) == (1, 1)
    summary = http.get("/projects/default/workflows/plain").text
    assert '<li data-key="tasks"><b>1</b> task</li>' in summary
    assert '<li data-key="runs"><b>1</b> run</li>' in summary
    assert '<li data-key="tasks"><b>2</b> tasks</li>' in page.text

