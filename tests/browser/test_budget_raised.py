"""A run whose budget was raised after it went over reads as what is true now, in real
Chromium against a real `titan up`.

QA: an operator raised the budget of a blocked run, as its page said to, and the page went on
saying "Over budget: spent $0.0100 of $5.00", its card "over budget" and its intercept "over
budget ($0.0100 of $5.00)", though the run was released. It stays an intercept (it did go
over); the words say it went over and that the budget has been raised since. Every wait is
on the DOM, never a sleep.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import assert_no_reload, check_common, mark_no_reload
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser
WARNING = "#run-summary .over-budget-warning"
CARD = '.run-card[data-run-id="raised"]'
INTERCEPT = '.intercept[data-run-id="raised"]'


def test_a_raised_budget_is_said_so_not_over_budget(cluster: Cluster, dash: Dashboard,
                                                    page: Any) -> None:
    cluster.api("POST", "/runs", {"id": "raised", "agent_id": "frugal", "budget_usd": 0.001})
    cluster.api("POST", "/runs/raised/actions", {"actions": [{
        "id": "r1", "name": "call_llm", "actor": "a", "channel": "llm",
        "started_at": time.time(), "duration_ns": 1000, "inputs": {}, "outputs": {},
        "outcome": "success", "cost_usd": 0.01}]})
    page.goto(dash.url("/runs/raised"))
    check_common(page, "run")
    assert page.inner_text(WARNING).startswith("Over budget: spent $0.0100 of $0.0010")
    registry = dash.new_page()
    registry.goto(dash.url("/runs?q=raised"))
    check_common(registry, "runs")
    assert registry.inner_text(f"{CARD} .over-budget") == "over budget"
    assert registry.inner_text(f"{INTERCEPT} .reasons") == "over budget ($0.0100 of $0.0010)"
    mark_no_reload(page)
    mark_no_reload(registry)

    cluster.api("PATCH", "/runs/raised", {"budget_usd": 5.0})
    page.wait_for_function("(s) => document.querySelector(s)?.textContent.startsWith("
                           "'Went over its budget')", arg=WARNING)
    text = page.inner_text(WARNING)
    assert "raised to $5.00" in text and "spent $0.0100" in text, text
    assert "refused" not in text and "Over budget" not in text, text
    registry.wait_for_function("(s) => document.querySelector(s)?.textContent === "
                               "'went over budget'", arg=f"{CARD} .over-budget")
    # (The API's reasons, which the CLI prints too: costs as formats.dollars writes them.)
    registry.wait_for_function(
        "(s) => document.querySelector(s)?.textContent === "
        "'went over budget (since raised to $5.0000; spent $0.0100)'", arg=f"{INTERCEPT} .reasons")
    assert_no_reload(page)
    assert_no_reload(registry)
