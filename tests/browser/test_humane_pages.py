"""A user's pass over the dashboard in real Chromium against a real `titan up`: numbers,
durations and sizes written for people, names shown as they were given, and pages that
stay quick with many rows.

Runs and actions are made through the HTTP API, store keys through the client; every wait
is on the DOM contract the pages implement, never a sleep.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import check_common
from tests.browser.test_runs import action
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser


def test_the_action_list_writes_durations_as_the_rest_of_the_dashboard(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # The list said "123,456" under a column headed "ms"; the Ledger and the header say
    # "2m 03s" for the same action.
    cluster.api("POST", "/runs", {"id": "hp-durations", "agent_id": "hp-agent"})
    cluster.api("POST", "/runs/hp-durations/actions", {"actions": [
        action(0, duration_ns=123_456_000_000), action(1, duration_ns=523_000_000),
        action(2, duration_ns=1_500_000_000)]})
    page.goto(dash.url("/runs/hp-durations"))
    check_common(page, "run")
    page.wait_for_selector('.action-row[data-seq="3"]')
    shown = page.eval_on_selector_all(".action-row .a-ms", "els => els.map(e => e.textContent)")
    assert shown == ["2m 03s", "523 ms", "1.5 s"], shown
    assert page.inner_text(".action-head").split("\t").count("ms") == 0
    assert "Duration" in page.inner_text(".action-head")
    page.click('.action-row[data-seq="1"] .a-name')
    page.wait_for_selector("#inspector:not([hidden]) .inspector-meta")
    meta = page.inner_text("#inspector .inspector-meta")
    assert "2m 03s" in meta and "123,456 ms" not in meta, meta
