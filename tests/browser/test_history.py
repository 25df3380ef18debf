"""Back and Forward in real Chromium against a real `titan up`: what a page shows after Back
is what its address asks for — the filter forms the server renders from the address (Runs,
Activity Ledger, DAG Pipelines, Agent Runs, Store), and a run page's search and outcome.

Chromium puts a page back from its back/forward cache as the user left it, or restores its
form controls over what the server rendered: a QA pass found the Runs form ticking one status
while the address and the rows said another. Every wait is on the DOM contract, never a
sleep.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import check_common
from tests.integration.harness import Cluster
from titan import TitanJob

pytestmark = pytest.mark.browser


def action(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"a{i}", "name": ("web_search", "call_llm")[i % 2], "actor": "main",
            "started_at": time.time() + i * 1e-3, "inputs": {"q": i}, "outputs": {"a": i},
            "cost_usd": 0.001 * (i + 1), **kw}


@pytest.fixture(scope="module")
def runs(cluster: Cluster) -> None:
    for run_id, status in (("bh-ok", "completed"), ("bh-bad", "failed"), ("bh-big", "completed")):
        cluster.api("POST", "/runs", {"id": run_id, "agent_id": "history-agent"})
        n = 8 if run_id == "bh-big" else 3
        cluster.api("POST", f"/runs/{run_id}/actions", {"actions": [
            action(i, **({"error": {"type": "Boom", "message": "no"}} if i == 1 else {}))
            for i in range(n)]})
        cluster.api("PATCH", f"/runs/{run_id}", {"status": status})


def form_state(page: Any, form: str) -> dict[str, Any]:
    """The form's controls as the user sees them: ticked boxes, field values, selections."""
    return page.eval_on_selector(form, """f => {
        const out = {};
        for (const el of f.elements) {
            if (!el.name) continue;
            if (el.type === "checkbox") { if (el.checked) (out[el.name] ||= []).push(el.value); }
            else out[el.name] = el.value;
        }
        return out;
    }""")


def test_the_runs_form_says_what_the_address_does_after_back(
        runs: None, dash: Dashboard, page: Any) -> None:
    page.goto(dash.url("/runs?status=failed&agent=history-agent"))
    check_common(page, "runs")
    page.wait_for_selector('.run-card[data-run-id="bh-bad"]')
    before = form_state(page, "#run-filters")
    assert before["status"] == ["failed"] and before["sort"] == "recent"
    # The user changes every kind of control, then filters: a new address.
    page.uncheck('input[name="status"][value="failed"]')
    page.check('input[name="status"][value="completed"]')
    page.fill('input[name="min_cost"]', "0.02")
    page.select_option('select[name="sort"]', "cost")
    page.click('#run-filters button[type="submit"]')
    page.wait_for_url("**/runs?*sort=cost*")
    page.wait_for_selector('.run-card[data-run-id="bh-big"]')
    page.go_back()
    page.wait_for_url("**/runs?status=failed&agent=history-agent")
    page.wait_for_selector('.run-card[data-run-id="bh-bad"]')
    # The rows are the address's, and so is the form (it showed the filters left behind).
    assert page.eval_on_selector_all(".run-card", "els => els.map(e => e.dataset.runId)") \
        == ["bh-bad"]
    page.wait_for_function("() => document.querySelector('select[name=sort]').value "
                           "=== 'recent'")
    assert form_state(page, "#run-filters") == before
    csv = page.get_attribute('a.export[data-format="csv"]', "href")
    assert "status=failed" in csv and "sort=" not in csv and "min_cost" not in csv
    page.go_forward()
    page.wait_for_url("**/runs?*sort=cost*")
    page.wait_for_function("() => document.querySelector('select[name=sort]').value === 'cost'")
    after = form_state(page, "#run-filters")
    assert after["status"] == ["completed"] and after["min_cost"] == "0.02"


def test_the_ledger_form_says_what_the_address_does_after_back(
        runs: None, dash: Dashboard, page: Any) -> None:
    page.goto(dash.url("/ledger?outcome=error&agent=history-agent"))
    check_common(page, "ledger")
    page.wait_for_selector(".ledger-row")
    before = form_state(page, "#ledger-filters")
    assert before["outcome"] == ["error"] and before["agent"] == "history-agent"
    page.uncheck('input[name="outcome"][value="error"]')
    page.fill('input[name="run"]', "bh-big")
    page.fill('input[name="min_cost"]', "0.005")
    page.click('#ledger-filters button[type="submit"]')
    page.wait_for_url("**/ledger?*run=bh-big*")
    page.go_back()
    page.wait_for_url("**/ledger?outcome=error&agent=history-agent")
    page.wait_for_selector(".ledger-row")
    assert set(page.eval_on_selector_all(".ledger-row", "els => els.map(e => e.dataset.outcome)")) \
        == {"error"}
    page.wait_for_function("() => document.querySelector('#ledger-filters input[name=run]')"
                           ".value === ''")
    assert form_state(page, "#ledger-filters") == before


def test_the_dag_run_picker_says_the_addresss_run_after_back(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # Run 1 failed, run 2 completed. Picking #1, then Back: the address and the graph were
    # run 2's, the picker said #1 — and relabelled #1 "#2 · COMPLETED" (it rewrote the
    # picked option, not run 2's, when the page resynced).
    client = cluster.client()
    for script in (cluster.script("bh_fails.py", "raise SystemExit(1)"),
                   cluster.script("bh_ok.py", "print('ok')")):
        client.submit_dag("bh-picker", [TitanJob(job_id="j", filename=script)])
        client.wait_dag("bh-picker", timeout=60)

    def picker() -> list[Any]:
        return page.eval_on_selector("#run-select", """s => [s.value,
            [...s.options].map(o => o.textContent.trim())]""")

    page.goto(dash.url("/dags/DAG-bh-picker?run=2"))
    check_common(page, "dag")
    assert picker() == ["2", ["#2 · COMPLETED", "#1 · FAILED"]]
    page.select_option("#run-select", "1")
    page.wait_for_url("**/dags/DAG-bh-picker?run=1")
    page.wait_for_selector('#dag-status[data-status="FAILED"]')
    check_common(page, "dag")
    page.go_back()
    page.wait_for_url("**/dags/DAG-bh-picker?run=2")
    page.wait_for_selector('#dag-status[data-status="COMPLETED"]')
    check_common(page, "dag")  # its live feed is back: the resync that relabelled has run
    page.wait_for_function("() => document.querySelector('#run-select').value === '2'")
    assert picker() == ["2", ["#2 · COMPLETED", "#1 · FAILED"]]
    page.go_forward()
    page.wait_for_url("**/dags/DAG-bh-picker?run=1")
    page.wait_for_selector('#dag-status[data-status="FAILED"]')
    check_common(page, "dag")
    page.wait_for_function("() => document.querySelector('#run-select').value === '1'")
    assert picker() == ["1", ["#2 · COMPLETED", "#1 · FAILED"]]
