"""The Evaluations and Projects lists, and a Data Explorer, follow evaluations being created,
seeded and deleted, in real Chromium against a real `titan up`.

QA: `titan eval create` with /evaluations open left the page saying "No evaluation yet" until
a reload (the lists re-read themselves on runs only), and tasks seeded without a run never
showed in an open explorer. Evaluations are made over the HTTP API, as the CLI does; every wait
is on the DOM, never a sleep.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import assert_no_reload, check_common, mark_no_reload
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser
AGENT = {"name": "remote-bot", "version": "1", "kind": "http",
         "url": "https://example.com/agent", "tools": []}


def row(evaluation: str) -> str:
    return f'tr.eval-list-row[data-evaluation-id="{evaluation}"]'


def test_the_lists_and_the_explorer_follow_evaluations_live(cluster: Cluster, dash: Dashboard,
                                                            page: Any) -> None:
    cluster.api("PUT", "/evaluations/live-old", {"agent": AGENT, "project": "live-proj",
                                                 "tasks": [{"id": "t1", "user_instruction": "hi"}]})
    page.goto(dash.url("/evaluations"))
    check_common(page, "evaluations")
    page.wait_for_selector(row("live-old"))
    projects = dash.new_page()
    projects.goto(dash.url("/projects"))
    check_common(projects, "projects")
    projects.wait_for_selector(row("live-old"))
    explorer = dash.new_page()
    explorer.goto(dash.url("/evaluations/live-old"))
    check_common(explorer, "evaluation")
    explorer.wait_for_selector('#eval-table tr[data-task-id="t1"]')
    for p in (page, projects, explorer):
        mark_no_reload(p)

    # Created: it joins both lists, in its project.
    cluster.api("PUT", "/evaluations/live-new", {"agent": AGENT, "project": "live-proj"})
    page.wait_for_selector(row("live-new"))
    projects.wait_for_selector(f'#project-live-proj {row("live-new")}')
    # Seeded (without a run): the count in the lists, the row in the open explorer.
    cluster.api("POST", "/evaluations/live-old/tasks?run=false",
                {"tasks": [{"id": "t2", "user_instruction": "again"}]})
    explorer.wait_for_selector('#eval-table tr[data-task-id="t2"]')
    page.wait_for_function("(s) => document.querySelector(s + ' td.num')?.textContent === '2'",
                           arg=row("live-old"))
    # Deleted: it leaves both lists.
    cluster.api("DELETE", "/evaluations/live-new")
    page.wait_for_selector(row("live-new"), state="detached")
    projects.wait_for_selector(row("live-new"), state="detached")
    for p in (page, projects, explorer):
        assert_no_reload(p)
