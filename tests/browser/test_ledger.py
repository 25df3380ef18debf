"""The Activity Ledger in real Chromium against a real `titan up`: from a run's page through
"View in Activity Ledger", the filter form, keyset pages, and a row whose chain was broken
in the database shown as broken."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import assert_no_reload, check_common, mark_no_reload
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser


def action(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"a{i}", "name": ("web_search", "call_llm")[i % 2], "actor": "main",
            "started_at": time.time() + i * 1e-3, "inputs": {"q": i}, "outputs": {"a": i},
            "cost_usd": 0.001, **kw}


def rows(page: Any) -> list[tuple[str, int, str, str]]:
    return [(r, int(s), o, c) for r, s, o, c in page.eval_on_selector_all(
        ".ledger-row", "els => els.map(e => [e.dataset.runId, e.dataset.seq, "
                       "e.dataset.outcome, e.dataset.chain])")]


def test_ledger_from_a_run_filters_pages_and_shows_a_broken_chain(
        cluster: Cluster, dash: Dashboard, page: Any, artifacts: Path) -> None:
    for run_id, agent in (("bl-one", "ledger-alpha"), ("bl-two", "ledger-beta")):
        cluster.api("POST", "/runs", {"id": run_id, "agent_id": agent})
        cluster.api("POST", f"/runs/{run_id}/actions", {"actions": [
            action(i, **({"error": {"type": "Boom", "message": "no"}} if i == 2 else {}))
            for i in range(5)]})

    # From a run's telemetry to its actions in the ledger.
    page.goto(dash.url("/runs/bl-one"))
    page.click("#ledger-link")
    page.wait_for_url("**/ledger?run=bl-one")
    check_common(page, "ledger")
    assert page.get_attribute('nav.nav a[href="/ledger"]', "aria-current") == "page"
    assert rows(page) == [("bl-one", s, "error" if s == 3 else "success", "verified")
                          for s in range(5, 0, -1)]
    page.screenshot(path=str(artifacts / "ledger.png"), full_page=False)
    # The newest page follows the run live, each new row with its chain status.
    mark_no_reload(page)
    cluster.api("POST", "/runs/bl-one/actions", {"actions": [action(5)]})
    page.wait_for_selector('.ledger-row[data-seq="6"][data-chain="verified"]')
    assert_no_reload(page)

    # The form: every run, only errors of the beta agent.
    page.fill('#ledger-filters input[name="run"]', "")
    page.fill('#ledger-filters input[name="agent"]', "ledger-beta")
    page.check('#ledger-filters input[name="outcome"][value="error"]')
    page.click('#ledger-filters button[type="submit"]')
    page.wait_for_url("**/ledger?*agent=ledger-beta*")
    assert rows(page) == [("bl-two", 3, "error", "verified")]
    assert "Boom" in page.inner_text(".ledger-row .error-type")

    # Keyset pages, three rows each, over both runs.
    page.goto(dash.url("/ledger?limit=3&agent=ledger-alpha"))
    first = rows(page)
    page.click(".ledger-pager a.next")
    page.wait_for_url("**before=*")
    second = rows(page)
    assert [s for _, s, _, _ in first + second] == [6, 5, 4, 3, 2, 1]
    page.click(".ledger-pager a.prev")
    page.wait_for_url("**after=*")
    assert rows(page) == first

    # Someone edits an action in the database; the next verification says so on the page.
    with sqlite3.connect(cluster.data / "titan.db") as conn:
        conn.execute("UPDATE actions SET name = 'forged' WHERE run_id = 'bl-two' AND seq = 4")
    assert cluster.api("GET", "/runs/bl-two/verify")["break"]["seq"] == 4
    page.goto(dash.url("/ledger?run=bl-two"))
    chain = {s: c for _, s, _, c in rows(page)}
    assert chain == {5: "broken", 4: "broken", 3: "verified", 2: "verified", 1: "verified"}
    note = page.get_attribute('.ledger-row[data-seq="4"] .chain', "title")
    assert note is not None and "action #4 was edited" in note
    page.screenshot(path=str(artifacts / "ledger-broken.png"), full_page=False)
