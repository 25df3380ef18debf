"""The Schedules page in real Chromium against a real `titan up`: a schedule's next ticks and
its runs arriving live, Pause and Resume and Run now from the page (the API with the session's
write key), and a run's DAG page naming the schedule that started it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import assert_no_reload, check_common, mark_no_reload
from tests.integration.harness import Cluster
from titan import TitanJob

pytestmark = pytest.mark.browser
ROW = '.schedule-row[data-name="pulse"]'


def test_schedules_page_pauses_resumes_and_runs(cluster: Cluster, dash: Dashboard, page: Any,
                                                artifacts: Path) -> None:
    client = cluster.client()
    client.schedule_dag("pulse", [TitanJob(job_id="beat", filename=cluster.script(
        "pulse.py", "print('pulse')\n"))], cron="*/2 * * * * *", timezone="Europe/Paris",
        overlap="skip")

    page.goto(dash.url("/schedules"))
    check_common(page, "schedules")
    assert page.get_attribute('nav.nav a[href="/schedules"]', "aria-current") == "page"
    row = page.locator(ROW)
    assert row.locator(".schedule-state").inner_text() == "active"
    assert "*/2 * * * * *" in row.locator(".cron").inner_text()
    assert row.locator(".next-tick").count() == 3
    assert "CEST" in row.inner_text() or "CET" in row.inner_text()  # wall times in its zone
    # Runs arrive as ticks fire, without reloading the page.
    mark_no_reload(page)
    page.wait_for_selector(f'{ROW} .fire a[data-dag-id] + .badge[data-status="COMPLETED"]')
    assert_no_reload(page)
    page.screenshot(path=str(artifacts / "schedules.png"), full_page=False)

    page.click(f'{ROW} button[data-action="pause"]')
    page.wait_for_selector(f'{ROW}[data-paused="true"] button[data-action="resume"]')
    assert page.locator(ROW).locator(".schedule-state").inner_text() == "paused"
    assert client.get_schedule("pulse")["paused"] is True
    page.click(f'{ROW} button[data-action="resume"]')
    page.wait_for_selector(f'{ROW}[data-paused="false"] button[data-action="pause"]')
    assert client.get_schedule("pulse")["paused"] is False

    page.click(f'{ROW} button[data-action="run"]')
    page.wait_for_selector('#toast:not([hidden]):has-text("Started DAG-pulse#")')
    # A tick (every 2 s) may land right after the manual fire: it is among the latest.
    assert any(f["manual"] for f in client.get_schedule("pulse")["fires"][:3])
    assert_no_reload(page)

    # Edit: the rule and policies in a dialog; a bad expression is the master's message,
    # and changes nothing; a good one shows in the row and in the API.
    page.click(f'{ROW} button[data-action="edit"]')
    page.wait_for_selector("#schedule-edit[open]")
    assert page.input_value('#schedule-edit input[name="cron"]') == "*/2 * * * * *"
    assert page.input_value('#schedule-edit input[name="timezone"]') == "Europe/Paris"
    page.screenshot(path=str(artifacts / "schedule_edit.png"), full_page=False)
    page.fill('#schedule-edit input[name="cron"]', "61 * * * *")
    page.click('#schedule-edit button[type="submit"]')
    page.wait_for_selector("#schedule-edit-error:not([hidden])")
    assert "cron" in page.inner_text("#schedule-edit-error").lower()
    assert client.get_schedule("pulse")["cron"] == "*/2 * * * * *"
    page.fill('#schedule-edit input[name="cron"]', "0 6 * * MON-FRI")
    page.select_option('#schedule-edit select[name="overlap"]', "queue")
    page.click('#schedule-edit button[type="submit"]')
    page.wait_for_selector(f'{ROW}[data-cron="0 6 * * MON-FRI"]')
    assert not page.is_visible("#schedule-edit")
    assert "overlap queue" in page.locator(ROW).locator(".policies").inner_text()
    changed = client.get_schedule("pulse")
    assert (changed["cron"], changed["timezone"], changed["overlap"]) == (
        "0 6 * * MON-FRI", "Europe/Paris", "queue")
    assert_no_reload(page)

    # A run's page says which schedule started it, and links back.
    page.click(f"{ROW} .fire a[data-dag-id]")
    page.wait_for_selector('body[data-page="dag"]', state="attached")
    link = page.locator("a.schedule-link")
    assert link.inner_text() == "pulse"
    assert link.get_attribute("href") == "/schedules#schedule-pulse"
    client.delete_schedule("pulse")


def test_a_viewer_sees_schedules_without_buttons(cluster: Cluster, dash: Dashboard) -> None:
    client = cluster.client()
    client.schedule_dag("quiet", [TitanJob(job_id="q", filename=cluster.script(
        "quiet.py", "print('q')\n"))], cron="0 6 * * *", paused=True)
    viewer = client.create_token("viewer", name="screen")["token"]
    page = dash.new_page()
    page.goto(dash.url(f"/login?token={viewer}&next=/schedules"))
    page.wait_for_selector('.schedule-row[data-name="quiet"]')
    assert page.locator('.schedule-row[data-name="quiet"] button').count() == 0
    assert "none while paused" in page.inner_text('.schedule-row[data-name="quiet"]')
    twin = page.request.get(dash.url("/schedules.json")).json()
    assert [s["name"] for s in twin["schedules"]] == ["quiet"]
    client.delete_schedule("quiet")
