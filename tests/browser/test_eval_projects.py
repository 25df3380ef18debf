"""Seed 003's pages in real Chromium against a real `titan up`: the Projects page, a
workflow's Data Explorer at its project's address, and the task modal a row opens — its left
rail (Agent Trace only once the task has a run, and Task), the trace inside it, the run
picker after a re-run, a shareable address, and Esc, the close button and Back closing it.

The example support agent (examples/eval_agent) runs as Titan jobs against the scripted
hosted model, as in test_evaluations.py (whose cluster and model fixtures this module uses).
Every wait is on the DOM contract, never a sleep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import check_common, wait_count
from tests.browser.test_evaluations import EXAMPLE, cluster, fake_llm  # noqa: F401 (fixtures)
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser
EXPLORER = "/projects/acme/workflows/acme-support"
MODAL = "#task-modal[open]"
CLOSED_URL = "() => !new URLSearchParams(location.search).has('task')"


@pytest.fixture(scope="module")
def acme(cluster: Cluster) -> dict[str, Any]:  # noqa: F811 (a fixture)
    """Workflow ``acme-support`` in project ``acme``: two tasks run to the end, a third never
    dispatched."""
    client = cluster.client()
    agent = yaml.safe_load((EXAMPLE / "evaluation.yaml").read_text())["agent"]
    tasks = [t for t in yaml.safe_load((EXAMPLE / "tasks.yaml").read_text())
             if t["id"] in ("status-check", "cancel-processing")]
    tasks.append({"id": "not-yet", "user_instruction": "Where is order A-1004?"})
    client.create_evaluation("acme-support", agent, tasks, base=EXAMPLE, project="acme")
    client.run_evaluation("acme-support", ["status-check", "cancel-processing"])
    return client.wait_evaluation("acme-support", timeout=180)


def rail(page: Any) -> list[str]:
    return [t.strip() for t in page.eval_on_selector_all(
        f'{MODAL} #eval-task > .tabs [role="tab"]', "els => els.map(e => e.textContent)")]


def open_row(page: Any, task: str) -> None:
    page.click(f'#eval-table tr[data-task-id="{task}"] td.task')
    page.wait_for_selector(f"{MODAL} #eval-task:not(.modal-loading)")
    assert page.inner_text("#task-modal-title") == task


def test_projects_page_leads_to_the_explorer_and_its_task_modal(
        acme: dict[str, Any], dash: Dashboard, page: Any, artifacts: Path) -> None:
    page.goto(dash.url("/projects"))
    check_common(page, "projects")
    assert page.inner_text('.nav a[aria-current="page"]') == "Projects"
    section = '#projects-live section.project[data-project="acme"]'
    assert "1 workflow" in page.inner_text(f"{section} .project-head")
    page.click(f'{section} a.eval-link:text-is("acme-support")')
    check_common(page, "evaluation")
    assert page.url.endswith(EXPLORER)
    assert page.inner_text('.nav a[aria-current="page"]') == "Projects"
    assert "Projects" in page.inner_text(".crumbs") and "acme" in page.inner_text(".crumbs")
    assert wait_count(page, "#eval-table tr.eval-row", 3) == 3

    # A row with runs: the modal, its left rail, the Agent Trace shown first.
    open_row(page, "cancel-processing")
    assert "task=cancel-processing" in page.url
    assert rail(page) == ["Agent Trace", "Task"]
    assert page.get_attribute(f"{MODAL} #tab-trace", "aria-selected") == "true"
    rail_box = page.query_selector(f"{MODAL} #eval-task > .tabs").bounding_box()
    panel_box = page.query_selector(f"{MODAL} #panel-trace").bounding_box()
    assert rail_box["x"] + rail_box["width"] <= panel_box["x"]  # a rail on the left
    trace_tab, task_tab = (page.query_selector(f"{MODAL} #{t}").bounding_box()
                           for t in ("tab-trace", "tab-task"))
    assert task_tab["y"] > trace_tab["y"] and task_tab["x"] == trace_tab["x"]  # stacked
    header = page.inner_text(f"{MODAL} #trace-header")
    assert "support-bot" in header and "completed" in header
    assert page.get_attribute(f"{MODAL} #judge-card", "data-verdict") == "PASS"
    assert page.query_selector(f"{MODAL} #run-picker") is None  # one run: no picker
    tools = page.eval_on_selector_all(f"{MODAL} #timeline .tool-row",
                                      "els => els.map(e => e.dataset.tool)")
    assert tools == ["get_order", "cancel_order"]
    row = f'{MODAL} #timeline .tool-row[data-tool="cancel_order"]'
    page.click(f"{row} > summary")
    page.click(f'{row} .ledger-view[data-view="changes"]')  # the task page's script, here too
    assert page.is_visible(f"{row} .ledger-changes") and not page.is_visible(f"{row} .ledger-state")
    page.screenshot(path=str(artifacts / "eval-task-modal.png"), full_page=False)

    # The Task section of the rail; the address follows it.
    page.click(f"{MODAL} #tab-task")
    assert page.is_visible(f"{MODAL} #panel-task") and not page.is_visible(f"{MODAL} #panel-trace")
    assert page.url.endswith("#task")
    assert "cancel my order A-1002" in page.inner_text(f"{MODAL} #panel-task")
    page.keyboard.press("ArrowUp")  # the rail has the focus: up to the Agent Trace
    assert page.get_attribute(f"{MODAL} #tab-trace", "aria-selected") == "true"

    # Esc closes it, and the address forgets it.
    page.keyboard.press("Escape")
    page.wait_for_selector("#task-modal", state="hidden")
    page.wait_for_function(CLOSED_URL)  # the dialog's close event comes after it hides
    assert "#task" not in page.url

    # A task with no agent run: no Agent Trace in the rail, only the Task.
    open_row(page, "not-yet")
    assert rail(page) == ["Task"]
    assert page.is_visible(f"{MODAL} #panel-task")
    assert "No run yet" in page.inner_text(f"{MODAL} .empty-runs")
    page.click("#task-modal-close")
    page.wait_for_selector("#task-modal", state="hidden")
    page.wait_for_function(CLOSED_URL)


def test_the_modal_is_shareable_and_follows_a_rerun(acme: dict[str, Any], dash: Dashboard,
                                                    page: Any) -> None:
    # Its address opens it: on the Task view when it says #task.
    page.goto(dash.url(EXPLORER + "?task=status-check#task"))
    check_common(page, "evaluation")
    page.wait_for_selector(f"{MODAL} #panel-task:not([hidden])")
    assert page.get_attribute(f"{MODAL} #tab-task", "aria-selected") == "true"
    page.click(f"{MODAL} #tab-trace")
    first = page.get_attribute(f"{MODAL} #trace-header", "data-run-id")

    # Re-run inside the modal (the seed's route): the new run joins the run picker there.
    page.click(f"{MODAL} #rerun")
    assert wait_count(page, f"{MODAL} #run-picker .run-option", 2) == 2
    # The address names the new run at once; the picker marks it once that run is read (a
    # live event may redraw the picker with two runs before): wait for both to agree.
    page.wait_for_function("""(modal) => {
        const run = new URLSearchParams(location.search).get('run');
        const on = document.querySelector(modal + ' #run-picker .run-option[aria-current="true"]');
        return run && on && on.dataset.runId === run;
    }""", arg=MODAL)
    current = page.get_attribute(f'{MODAL} #run-picker .run-option[aria-current="true"]',
                                 "data-run-id")
    assert current != first and f"run={current}" in page.url
    page.wait_for_selector(f'{MODAL} #eval-task[data-live="false"] '
                           '#trace-header[data-status="completed"]', state="attached",
                           timeout=90_000)
    assert "re-run of " + first in page.inner_text(f"{MODAL} #trace-header")
    # The picker switches runs inside the modal, without leaving the explorer.
    page.click(f'{MODAL} #run-picker .run-option[data-run-id="{first}"]')
    page.wait_for_selector(f'{MODAL} #trace-header[data-run-id="{first}"]')
    assert EXPLORER in page.url and f"run={first}" in page.url

    # Back walks the modal's history (the run shown before), then closes it.
    page.go_back()
    page.wait_for_selector(f'{MODAL} #trace-header[data-run-id="{current}"]')
    # ... and before the re-run, the run shown then: the modal was opened without ?run=
    # ("the latest"), which the re-run had become.
    page.go_back()
    page.wait_for_selector(f'{MODAL} #trace-header[data-run-id="{first}"]')
    assert f"run={first}" in page.url
    page.goto(dash.url(EXPLORER))
    check_common(page, "evaluation")
    open_row(page, "status-check")
    page.go_back()
    page.wait_for_selector("#task-modal", state="hidden")
    # The explorer shows the latest run; the one in the modal was re-run from the explorer.
    assert page.get_attribute('#eval-table tr[data-task-id="status-check"]', "data-run-id") \
        == current


def test_the_explorer_pages_its_tasks_and_counts_them_all(
        acme: dict[str, Any], dash: Dashboard, page: Any) -> None:
    page.goto(dash.url(EXPLORER + "?limit=2"))
    check_common(page, "evaluation")
    assert wait_count(page, "#eval-table tr.eval-row", 2) == 2
    assert page.inner_text('#eval-summary li[data-key="tasks"] b') == "3"  # all, not the page's
    assert page.inner_text("#eval-live .pager .range") == "1–2 of 3"
    assert page.query_selector("#eval-live .pager a.prev") is None
    page.click("#eval-live .pager a.next:text-is('Next →')")
    page.wait_for_url("**offset=2**")
    assert wait_count(page, "#eval-table tr.eval-row", 1) == 1
    assert page.inner_text("#eval-live .pager .range") == "3–3 of 3"
    # A row of the second page opens its modal, and the address keeps the page.
    open_row(page, "not-yet")
    assert "offset=2" in page.url and "task=not-yet" in page.url
    page.keyboard.press("Escape")
    page.wait_for_function(CLOSED_URL)
    assert "offset=2" in page.url
    # Past the end: said, with the way back.
    page.goto(dash.url(EXPLORER + "?offset=50&limit=2"))
    assert "past the end" in page.inner_text("#eval-live .past-end")
    assert page.query_selector("#eval-table tr.empty") is None
    page.click("#eval-live .past-end a.last-page")
    assert wait_count(page, "#eval-table tr.eval-row", 1) == 1


def test_a_deep_link_opens_a_task_on_another_page(acme: dict[str, Any], dash: Dashboard,
                                                  page: Any) -> None:
    page.goto(dash.url(EXPLORER + "?task=not-yet&limit=2"))
    page.wait_for_selector(f"{MODAL} #eval-task:not(.modal-loading)")
    assert page.inner_text("#task-modal-title") == "not-yet"
    assert page.inner_text("#eval-live .pager .range") == "3–3 of 3"  # the page holding it
    page.keyboard.press("Escape")
    page.wait_for_function(CLOSED_URL)
    assert "offset=2" in page.url  # closed, the page stays the one shown
