"""Agent Runs rows in real Chromium against a real `titan up`: a run whose last stage was
cancelled says why it failed, in the Runs page's words; a run id is never taken for one of
the page's own element ids; and a link to a run finds it on whichever page holds it.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import OK, WAIT_FOR_FLAG, check_common
from tests.integration.harness import Cluster
from titan import TitanJob

pytestmark = pytest.mark.browser

# Counts the times agents.js re-rendered the rows (a live refresh).
COUNT_RENDERS = """window.__renders = 0;
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("agent-runs");
  if (box) new MutationObserver(() => { window.__renders++; }).observe(box, {childList: true});
});"""

CANCELS_ITS_LAST_STAGE = """
    import time
    from titan_sdk import TitanClient, TitanJob
    c = TitanClient(); rid = "CANCELLED_last"
    c.submit_dag(f"{rid}_PLAN", [TitanJob(job_id="plan", filename="ok.py")],
                 agent_run_id=rid, wait=True)
    c.submit_dag(f"{rid}_ITER1", [TitanJob(job_id="slow", filename="slow.py")],
                 agent_run_id=rid)
    time.sleep(1)
    c.cancel(f"{rid}_ITER1")
    c.wait_dag(f"{rid}_ITER1", timeout=60)
"""


def test_a_run_whose_last_stage_was_cancelled_says_why_it_failed(
        cluster: Cluster, dashboard_factory: Any) -> None:
    # The row said FAILED and named no stage: only FAILED and PARTIAL stages were listed,
    # while the Runs page said "its last stage ... ended CANCELLED".
    cluster.script("ok.py", OK)
    cluster.script("slow.py", "import time; time.sleep(120)\n")
    driver = cluster.script("cancel_driver.py", CANCELS_ITS_LAST_STAGE)
    dash = dashboard_factory(cluster, [COUNT_RENDERS])
    page = dash.new_page()
    dash.sign_in(page)
    page.goto(dash.url("/agents"))
    check_common(page, "agents")
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, driver], env=env, cwd=cluster.scripts,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rid = "CANCELLED_last"
    page.wait_for_function(
        "() => document.querySelector('.agent-run[data-run-id=\"CANCELLED_last\"]')"
        "?.dataset.status === 'FAILED'", timeout=60_000)
    run = cluster.api("GET", f"/runs/{rid}")
    why = f"its last stage {rid}_ITER1 ended CANCELLED: 1 of 1 job cancelled"
    assert (run["status"], run["error"]) == ("failed", why)
    failure = f'.agent-run[data-run-id="{rid}"] a.run-failure[data-status="CANCELLED"]'
    live = page.inner_text(failure)  # rendered by agents.js
    assert live == "⊘ ITER1 CANCELLED (1 of 1 job cancelled)"
    assert page.get_attribute(failure, "href") == f"/dags/DAG-{rid}_ITER1?run=1"
    page.reload()
    assert page.inner_text(failure) == live  # the server's rendering says the same


def test_a_run_id_that_is_one_of_the_pages_ids_keeps_its_row(
        cluster: Cluster, dashboard_factory: Any) -> None:
    # A run called "empty-state" was the element getElementById('empty-state') found: every
    # live refresh hid its row.
    flag = cluster.root / "release-empty-state"
    gate = cluster.script("wait_for_flag.py", WAIT_FOR_FLAG)
    client = cluster.client()
    client.submit_dag("empty-state_PLAN", [TitanJob("plan", gate, args=[str(flag)])],
                      agent_run_id="empty-state")
    dash: Dashboard = dashboard_factory(cluster, [COUNT_RENDERS])
    page = dash.new_page()
    dash.sign_in(page)
    try:
        page.goto(dash.url("/agents"))
        check_common(page, "agents")
        row = page.locator('.agent-run[data-run-id="empty-state"]')
        assert row.is_visible() and row.get_attribute("id") == "run-empty-state"
        # A live refresh (every 3 s while it runs) re-renders the rows: it stays.
        page.wait_for_function("() => window.__renders >= 1", timeout=15_000)
        assert row.is_visible() and row.get_attribute("hidden") is None
        assert row.get_attribute("id") == "run-empty-state"
        assert page.locator("#empty-state").get_attribute("class") == "empty-state"
        assert page.locator("#empty-state").is_hidden()

        # Links to a run: the DAG's, by the prefixed id; an older one, by the bare id.
        html = page.request.get(dash.url("/dags/DAG-empty-state_PLAN")).text()
        assert 'href="/agents?run=empty-state#run-empty-state"' in html
        for hash_ in ("run-empty-state", "empty-state"):
            page.goto(dash.url(f"/agents?run=empty-state#{hash_}"))
            page.wait_for_selector('.agent-run.targeted[data-run-id="empty-state"]')
            assert page.locator(".agent-run.targeted").count() == 1
    finally:
        flag.touch()


def test_a_link_to_a_run_off_the_first_page_opens_its_page_and_outlines_it(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # /agents#run-<id> (dashboard.md, "URLs and keys") found nothing once newer runs had
    # pushed the run off the first page, and /agents?run=<id> opened its page without
    # scrolling to it or outlining it. (limit=2 stands for the 50 a page holds by default.)
    ok = cluster.script("ok.py", OK)
    client = cluster.client()
    for run_id in ("OFFPAGE_old", "OFFPAGE_new1", "OFFPAGE_new2"):
        client.submit_dag(f"{run_id}_PLAN", [TitanJob("plan", ok)], agent_run_id=run_id,
                          wait=True, timeout=60)
    page.set_viewport_size({"width": 1000, "height": 300})
    row = '.agent-run[data-run-id="OFFPAGE_old"]'
    for link in ("/agents?limit=2#run-OFFPAGE_old", "/agents?limit=2#OFFPAGE_old",
                 "/agents?limit=2&run=OFFPAGE_old"):
        page.goto(dash.url("/dags"))
        page.goto(dash.url(link))
        check_common(page, "agents")
        page.wait_for_selector(row + ".targeted")
        assert "run=OFFPAGE_old" in page.url and "limit=2" in page.url, (link, page.url)
        assert page.locator(".agent-run.targeted").count() == 1
        top, bottom = page.eval_on_selector(row, "e => [e.getBoundingClientRect().top, "
                                                 "e.getBoundingClientRect().bottom]")
        assert 0 <= top < 300, (link, top, bottom)  # scrolled to
    # Another run's link, followed on this page, opens that run's page.
    page.evaluate("location.hash = 'run-OFFPAGE_new2'")
    page.wait_for_selector('.agent-run.targeted[data-run-id="OFFPAGE_new2"]')
    assert "run=OFFPAGE_new2" in page.url
    # A run that does not exist is said so, and the page stays.
    page.goto(dash.url("/agents?limit=2#run-OFFPAGE_none"))
    page.wait_for_selector("#toast:not([hidden])")
    assert page.inner_text("#toast") == 'no agent run "OFFPAGE_none"'
    assert page.url.endswith("/agents?limit=2#run-OFFPAGE_none")


def test_a_rows_run_id_stays_a_link_to_its_run_through_a_live_refresh(
        cluster: Cluster, dashboard_factory: Any) -> None:
    # The id was plain text; agents.js re-renders the rows (every 3 s while a run is in
    # flight), so the link has to come back from its markup too, quoted as the server quotes.
    flag = cluster.root / "release-odd-link"
    gate = cluster.script("wait_for_flag.py", WAIT_FOR_FLAG)
    cluster.client().submit_dag("ODD:live.1_PLAN", [TitanJob("plan", gate, args=[str(flag)])],
                                agent_run_id="ODD:live.1")
    dash: Dashboard = dashboard_factory(cluster, [COUNT_RENDERS])
    page = dash.new_page()
    dash.sign_in(page)
    try:
        page.goto(dash.url("/agents?run=ODD:live.1"))
        check_common(page, "agents")
        link = page.locator('.agent-run[data-run-id="ODD:live.1"] a.run-id')
        assert link.get_attribute("href") == "/runs/ODD%3Alive.1"  # the server's
        page.wait_for_function("() => window.__renders >= 1", timeout=15_000)
        assert link.get_attribute("href") == "/runs/ODD%3Alive.1"  # agents.js's
        assert link.inner_text() == "ODD:live.1"
        link.click()
        page.wait_for_url("**/runs/ODD%3Alive.1")
        check_common(page, "run")
    finally:
        flag.touch()
