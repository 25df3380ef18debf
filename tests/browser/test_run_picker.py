"""The visualizer's run picker follows the DAG's other runs, in real Chromium against a real
`titan up`.

QA: with a scheduled DAG's page open, each tick added "#N · new" to the picker and it said
"new" for ever (the page hears only its own run's status), though the run had long completed
or failed; a reload fixed it. Every wait is on the DOM, never a sleep.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import FAILS, OK, assert_no_reload, check_common, mark_no_reload
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
