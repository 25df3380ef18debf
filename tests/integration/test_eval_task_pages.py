"""Every evaluation page has its JSON twin at ``<path>.json`` — a task's and a workflow's
too, whatever their ids: one ending in ``.json`` (and no page of the id without it) has its
page at its own address and its twin at ``<id>.json.json``, in both families of routes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.harness import Cluster
from tests.integration.test_evaluations import evals_cluster, fake_llm  # noqa: F401 (fixtures)

HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def http(evals_cluster: Cluster) -> Iterator[httpx.Client]:  # noqa: F811 (a fixture)
    client = evals_cluster.client()
    agent = {"name": "svc", "kind": "http", "url": f"http://127.0.0.1:{free_port()}/"}
    tasks = [{"id": "t.json", "user_instruction": "dotted"},
             {"id": "u", "user_instruction": "plain"}]
    client.create_evaluation("dotted", agent, tasks)
    client.create_evaluation("ev.json", agent, tasks)
    with httpx.Client(base_url=evals_cluster.url, timeout=60, headers={
            "Authorization": f"Bearer {evals_cluster.admin_token}"}) as http:
        yield http


@pytest.mark.parametrize("base", ["/evaluations/dotted", "/projects/default/workflows/dotted",
                                  "/evaluations/ev.json",
                                  "/projects/default/workflows/ev.json"])
def test_a_task_whose_id_ends_in_json_has_its_page_and_its_twin(http: httpx.Client,
                                                                base: str) -> None:
    page = http.get(f"{base}/tasks/t.json", headers=HTML)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html") and "dotted" in page.text
    twin = http.get(f"{base}/tasks/t.json.json")
    assert twin.status_code == 200, twin.text
    assert twin.json()["task"]["id"] == "t.json"
    assert http.get(f"{base}/tasks/u.json").json()["task"]["id"] == "u"
    assert http.get(f"{base}/tasks/nope.json").status_code == 404


def test_a_workflow_whose_id_ends_in_json_has_its_page_and_its_twin(http: httpx.Client
                                                                    ) -> None:
    for base in ("/evaluations", "/projects/default/workflows"):
        page = http.get(f"{base}/ev.json", headers=HTML)
        assert page.status_code == 200 and "ev.json" in page.text, (base, page.text[:300])
        twin = http.get(f"{base}/ev.json.json")
        assert twin.status_code == 200, twin.text
        assert {t["task_id"] for t in twin.json()["tasks"]} == {"u", "t.json"}
