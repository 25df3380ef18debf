"""Seed 004's compliance metadata and archived runs in real Chromium against a real `titan
up`: the run page's header and the action inspector show who started the run, its retention
class, its code version and what PII redaction replaced; the Runs page hides archived runs
until "include archived" is ticked, then marks them, and exports them with it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import check_common
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser


def test_inspector_shows_compliance_metadata(cluster: Cluster, dash: Dashboard, page: Any,
                                             artifacts: Path) -> None:
    cluster.api("POST", "/runs", {"id": "br-pii", "agent_id": "support",
                                  "retention_class": "legal_hold"})
    cluster.api("POST", "/runs/br-pii/actions", {"actions": [
        {"id": "a0", "name": "send_mail", "channel": "tool", "started_at": time.time(),
         "inputs": {"to": "jane.doe@example.com", "body": "hi"}, "outputs": {"sent": True}},
        {"id": "a1", "name": "plan", "channel": "custom", "started_at": time.time(),
         "inputs": {"q": "nothing personal"}, "outputs": ["ok"]}]})
    page.goto(dash.url("/runs/br-pii"))
    check_common(page, "run")
    header = page.inner_text("#run-compliance")
    assert "admin token" in header and "legal_hold" in header and "email ×1" in header

    page.wait_for_selector('.action-row[data-seq="1"]')
    # The list marks the redacted action; the inspector says where and what.
    assert page.get_attribute('.action-row[data-seq="1"] .pii-mark', "title") == \
        "PII redacted: email ×1"
    assert not page.query_selector('.action-row[data-seq="2"] .pii-mark')
    page.click('.action-row[data-seq="1"] .a-name')
    page.wait_for_selector("#inspector:not([hidden]) .inspector-compliance")
    text = page.inner_text("#inspector")
    assert "[REDACTED:email]" in text and "jane.doe" not in text
    assert page.inner_text(".compliance-pii-redacted") == "inputs: email ×1"
    assert page.inner_text(".compliance-retention") == "legal_hold"
    assert "admin token" in page.inner_text(".compliance-started-by")
    assert page.is_visible(".pii-note")
    page.screenshot(path=str(artifacts / "run-compliance.png"))

    # An action redaction left alone says so.
    page.click('.action-row[data-seq="2"] .a-name')
    page.wait_for_function("() => document.querySelector('#inspector')?.dataset.seq === '2'"
                           " && !!document.querySelector('.compliance-pii-redacted')")
    assert page.inner_text(".compliance-pii-redacted") == "none found"
    assert not page.query_selector(".pii-note")


def test_runs_page_hides_archived_runs_until_asked(cluster: Cluster, dash: Dashboard,
                                                   page: Any, artifacts: Path) -> None:
    for run_id in ("br-arch-old", "br-arch-live"):
        cluster.api("POST", "/runs", {"id": run_id, "agent_id": "archivist"})
        cluster.api("PATCH", f"/runs/{run_id}", {"status": "completed"})
    cluster.api("POST", "/runs/br-arch-old/archive", {})
    page.goto(dash.url("/runs?agent=archivist"))
    check_common(page, "runs")
    ids = page.eval_on_selector_all(".run-card", "els => els.map(e => e.dataset.runId)")
    assert ids == ["br-arch-live"]
    assert page.inner_text(".archived-note") == "+ 1 archived"
    assert not page.is_checked("#include-archived")

    page.check("#include-archived")
    page.click("#run-filters button[type=submit]")
    page.wait_for_selector('.run-card[data-run-id="br-arch-old"] .flag.archived')
    assert "archived=all" in page.url
    assert page.is_checked("#include-archived")
    ids = page.eval_on_selector_all(".run-card", "els => els.map(e => e.dataset.runId)")
    assert sorted(ids) == ["br-arch-live", "br-arch-old"]
    assert not page.query_selector('.run-card[data-run-id="br-arch-live"] .flag.archived')
    # The export follows the page: archived runs are in it.
    href = page.get_attribute('a.export[data-format="jsonl"]', "href")
    assert href is not None and "archived=all" in href
    page.screenshot(path=str(artifacts / "runs-archived.png"))

    # Still openable by id, marked in its header.
    page.click('.run-card[data-run-id="br-arch-old"] .run-link')
    page.wait_for_selector('body[data-run-id="br-arch-old"] .run-page-head .flag.archived')
    assert "archived" in page.inner_text("#run-compliance").lower()
