"""Keys and addresses on the Runs pages, in real Chromium against a real `titan up`: seed 004's
`/` (focus search) on the run registry (it worked on a run's page only), and a run's tab in
the address kept through signing in (a shared `/runs/<id>#determinism` opened on Telemetry)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import check_common
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser
SEARCH = '#run-filters input[name="q"]'


def test_slash_focuses_the_registrys_search(cluster: Cluster, dash: Dashboard,
                                            page: Any) -> None:
    for i in range(2):
        cluster.api("POST", "/runs", {"id": f"slash-{i}", "agent_id": "slash-agent"})
    page.goto(dash.url("/runs?q=slash"))
    check_common(page, "runs")
    page.click("h1")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "q"
    # Its text selected, to type over; and '/' typed in a field is a '/', not a jump.
    page.keyboard.type("slash-1")
    assert page.input_value(SEARCH) == "slash-1"
    page.keyboard.type("/")
    assert page.input_value(SEARCH) == "slash-1/"
    page.fill(SEARCH, "slash-1")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=slash-1**")
    page.wait_for_selector('.run-card[data-run-id="slash-1"]')
    assert page.locator(".run-card").count() == 1
    # Typing in another field (the agent's) keeps its '/': agent ids hold them.
    page.click('#run-filters input[name="agent"]')
    page.keyboard.type("team/a")
    assert page.input_value('#run-filters input[name="agent"]') == "team/a"


def test_signing_in_keeps_the_tab_the_address_named(cluster: Cluster, dash: Dashboard,
                                                    browser: Any) -> None:
    # Signed out, /runs/x#determinism redirects to /login?next=/runs/x (the browser keeps the
    # #determinism), but the sign-in form's POST dropped it: the run opened on Telemetry.
    cluster.api("POST", "/runs", {"id": "shared-tab", "agent_id": "slash-agent"})
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(dash.url("/runs/shared-tab#determinism"))
        page.wait_for_selector('body[data-page="login"]', state="attached")
        page.fill("#token", cluster.admin_token)
        page.click(".login button[type=submit]")
        page.wait_for_selector('body[data-page="run"]', state="attached")
        assert page.url.endswith("/runs/shared-tab#determinism"), page.url
        page.wait_for_selector('#tab-determinism[aria-selected="true"]')
    finally:
        context.close()
