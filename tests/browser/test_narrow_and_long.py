"""What a walk through the pages at odd sizes found, in real Chromium against a real `titan
up`: a long schedule name widened the Schedules page, and a run's action list widened its
page in a window under 900 px (a laptop's half screen, a tablet, a phone).

The rule (docs/dashboard.md, *Colours*): no page scrolls sideways; a long name wraps in its
column, a wide table scrolls in its own box.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import OK
from tests.integration.harness import Cluster
from titan import TitanJob

pytestmark = pytest.mark.browser


def sideways(page: Any) -> tuple[int, int, list[str]]:
    """The page's scroll width, its window width, and what sticks out (to say so)."""
    return page.evaluate(
        "() => { const w = document.documentElement.clientWidth;"
        " return [document.documentElement.scrollWidth, w, [...document.querySelectorAll('main *')]"
        ".filter(e => e.getBoundingClientRect().right > w + 1).slice(0, 4)"
        ".map(e => e.tagName + '.' + e.className)]; }")


def test_a_long_schedule_name_wraps_in_its_column(cluster: Cluster, dash: Dashboard,
                                                   page: Any) -> None:
    # QA: a 150-character schedule name made /schedules 1,874 px wide in a 1,400 px window.
    name = "nightly-" + "z" * 150
    cluster.client().schedule_dag(name, [TitanJob(job_id="beat", filename=cluster.script(
        "ok.py", OK))], cron="0 3 * * *")
    page.goto(dash.url("/schedules"))
    page.wait_for_selector(f'.schedule-row[data-name="{name}"]')
    scroll, width, wide = sideways(page)
    assert scroll <= width, (scroll, width, wide)
    # Its buttons' cell is a cell of the row (it was a flex box, its borders off the row's).
    row = page.locator(f'.schedule-row[data-name="{name}"]')
    heights = row.evaluate("r => [r.getBoundingClientRect().height,"
                           " r.querySelector('td.actions').getBoundingClientRect().height]")
    assert abs(heights[0] - heights[1]) <= 1, heights
    # Wrapped, not cut: the whole name is there to read.
    assert page.inner_text(f'.schedule-row[data-name="{name}"] .schedule-name') == name


def test_a_narrow_window_scrolls_the_action_list_not_the_page(cluster: Cluster,
                                                              dash: Dashboard,
                                                              page: Any) -> None:
    # QA: under 1,100 px the list stacks above the inspector, laid out at its content's width
    # (900 px), so in an 800 px window the whole run page scrolled sideways.
    cluster.api("POST", "/runs", {"id": "narrow-run", "agent_id": "narrow-agent"})
    cluster.api("POST", "/runs/narrow-run/actions", {"actions": [
        {"id": f"n{i}", "name": "call_llm", "actor": "PLAN/plan", "channel": "llm",
         "started_at": time.time(), "duration_ns": 1_000_000, "inputs": {"prompt": f"q{i}"},
         "outputs": {"response": f"answer {i}"}, "outcome": "success", "cost_usd": 0.001}
        for i in range(3)]})
    for width in (1000, 800, 375):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(dash.url("/runs/narrow-run"))
        page.wait_for_selector('.action-row[data-seq="3"]')
        scroll, client, wide = sideways(page)
        assert scroll <= client, (width, scroll, wide)
        # The list takes the page's width, and scrolls sideways in its own box to its last
        # columns (outputs, the ▸ toggle), which stay usable.
        table = page.locator(".action-table")
        box = table.evaluate("e => [e.getBoundingClientRect().width, e.parentElement.clientWidth]")
        assert abs(box[0] - box[1]) <= 1, (width, box)
        table.evaluate("e => { e.scrollLeft = e.scrollWidth; }")
        toggle = page.locator('.action-row[data-seq="2"] .a-toggle')
        right = toggle.evaluate("e => e.getBoundingClientRect().right")
        assert right <= client, (width, right, client)
        toggle.click()
        page.wait_for_selector('.action-row.open[data-seq="2"]')
        assert "answer 1" in page.inner_text('.action-row[data-seq="2"] .action-detail')


def test_the_header_fits_a_laptops_width(cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # QA: at 1,280 px (a common laptop) the header, one 1,340 px line fixed at 46 px tall,
    # broke its labels ("New / DAG", "Activity / Ledger", "Sign / out") and the current page's
    # pill stuck out below it.
    for width in (1400, 1280, 1200, 1120):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(dash.url("/runs"))
        page.wait_for_selector("header.top .logout button")
        boxes = page.evaluate(
            "() => { const h = document.querySelector('header.top').getBoundingClientRect();"
            " const labels = [...document.querySelectorAll('header.top .nav a, header.top .who,"
            " header.top .logout button')];"
            " return {bottom: h.bottom, lines: labels.filter(e => e.getClientRects().length !== 1"
            " || e.getBoundingClientRect().height > 36).map(e => e.textContent.trim()),"
            " out: labels.filter(e => e.getBoundingClientRect().bottom > h.bottom + 0.5)"
            ".map(e => e.textContent.trim())}; }")
        assert not boxes["lines"], (width, "labels broken over lines", boxes["lines"])
        assert not boxes["out"], (width, "below the header", boxes["out"])
        assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_a_long_failure_in_the_critical_intercepts_wraps_in_its_row(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # QA: a run whose error named its 200-character stage (or any long word: a path, a URL)
    # pushed its intercept row's cost and time off the box, and /runs scrolled sideways.
    run_id = "LONG_" + "averyverylongagentrunidentifier" * 6
    error = f"its last stage {run_id}_ITER1 ended FAILED: 1 of 1 job failed"
    cluster.api("POST", "/runs", {"id": run_id, "agent_id": run_id})
    cluster.api("PATCH", f"/runs/{run_id}", {"status": "failed", "error": error})
    row = f'#intercepts a.intercept[data-run-id="{run_id}"]'
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(dash.url("/runs"))
        page.wait_for_selector(row)
        scroll, client, wide = sideways(page)
        assert scroll <= client, (width, scroll, wide)
        # Its cost and time stay inside the section, the error whole to read.
        box = page.locator("#intercepts").evaluate("e => e.getBoundingClientRect().right")
        for part in (".intercept-cost", ".intercept-when"):
            right = page.locator(f"{row} {part}").evaluate("e => e.getBoundingClientRect().right")
            assert right <= box, (width, part, right, box)
        assert page.inner_text(f"{row} .reasons") == f"failed: {error}"
        # ... and has room to be read: the long id beside it does not squeeze it to a
        # column of single letters.
        reasons = page.locator(f"{row} .reasons").evaluate("e => e.getBoundingClientRect().width")
        assert reasons >= 0.3 * width, (width, reasons)
