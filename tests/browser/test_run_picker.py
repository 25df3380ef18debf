"""The DAG pages keep up without a reload, in real Chromium against a real `titan up`.

QA: with a scheduled DAG's page open, each tick added "#N · new" to the picker and it said
"new" for ever (the page hears only its own run's status), though the run had long completed
or failed; and on DAG Pipelines a running DAG's duration stood still between its events
while its "started" time moved on. A reload fixed both. Every wait is on the DOM, never a
sleep.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import (
    FAILS,
    OK,
    WAIT_FOR_FLAG,
    assert_no_reload,
    check_common,
    mark_no_reload,
)
from tests.integration.harness import Cluster
from titan import TitanJob

pytestmark = pytest.mark.browser


def labels(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#run-select option", "els => els.map(e => e.textContent)"))


def test_the_run_picker_follows_the_other_runs_status(cluster: Cluster, dash: Dashboard,
                                                      page: Any) -> None:
    client = cluster.client()
    ok, fails = cluster.script("ok.py", OK), cluster.script("fails.py", FAILS)
    client.submit_dag("picked", [TitanJob("a", ok)], wait=True, timeout=60)
    # Another DAG whose name holds this one's: its runs are not this DAG's.
    client.submit_dag("picked-too", [TitanJob("a", ok)], wait=True, timeout=60)
    page.goto(dash.url("/dags/DAG-picked?run=1"))
    check_common(page, "dag")
    assert labels(page) == ["#1 · COMPLETED"]
    mark_no_reload(page)

    client.submit_dag("picked", [TitanJob("a", fails, retries=0)], wait=True, timeout=60)
    page.wait_for_function("() => [...document.querySelectorAll('#run-select option')]"
                           ".some(o => o.textContent === '#2 · FAILED')")
    client.submit_dag("picked-too", [TitanJob("a", ok)], wait=True, timeout=60)
    client.submit_dag("picked", [TitanJob("a", ok)], wait=True, timeout=60)
    page.wait_for_function("() => document.querySelector('#run-select option')"
                           "?.textContent === '#3 · COMPLETED'")
    assert labels(page) == ["#3 · COMPLETED", "#2 · FAILED", "#1 · COMPLETED"]
    # Still the page of run 1: its own status and graph, the picker on it.
    assert page.get_attribute("#dag-status", "data-status") == "COMPLETED"
    assert page.input_value("#run-select") == "1"
    assert_no_reload(page)


def test_a_running_dags_duration_keeps_counting_in_the_list(cluster: Cluster, dash: Dashboard,
                                                            page: Any) -> None:
    flag = cluster.root / "release-ticking"
    client = cluster.client()
    client.submit_dag("ticking", [TitanJob("hold", cluster.script("hold.py", WAIT_FOR_FLAG),
                                           args=[str(flag)])])
    try:
        page.goto(dash.url("/dags?name=ticking"))
        check_common(page, "dags")
        row = 'tr.dag-row[data-status="RUNNING"] td.duration'
        page.wait_for_selector(row)
        first = page.inner_text(row)
        # No event comes while its one job runs: the page's own clock moves it.
        page.wait_for_function("([s, t]) => document.querySelector(s).textContent !== t",
                               arg=[row, first], timeout=5000)
    finally:
        flag.write_text("go")
    # Finished: the server's figure, which no longer counts.
    page.wait_for_selector('tr.dag-row[data-status="COMPLETED"] td.duration:not([data-running-since])')
