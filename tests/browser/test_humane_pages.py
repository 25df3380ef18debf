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
from tests.browser.test_dashboard import check_common, node
from tests.browser.test_runs import action
from tests.integration.harness import Cluster
from titan import TitanJob

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


def test_a_finished_job_says_it_never_ran_or_printed_nothing_not_yet(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # A skipped job's panel said "Not started yet." and "No output yet.", as if it might
    # still run; a job that ended without printing said "No output yet." for ever.
    fails = cluster.script("hp_fails.py", "import sys\nsys.exit(1)\n")
    silent = cluster.script("hp_silent.py", "pass\n")
    cluster.client().submit_dag("hp-ended", [
        TitanJob("quiet", silent), TitanJob("boom", fails, retries=0),
        TitanJob("never", silent, parents=["boom"])], wait=True)
    page.goto(dash.url("/dags/DAG-hp-ended"))
    check_common(page, "dag")
    page.click(node("never", "SKIPPED"))
    page.wait_for_selector("#job-panel .attempts tr.empty")
    page.wait_for_selector("#log-lines .log-empty")
    assert page.inner_text("#job-panel .attempts tr.empty") == "Never ran: it ended SKIPPED."
    assert page.inner_text("#log-lines .log-empty") == "No output: it never ran."
    page.click(node("quiet", "COMPLETED"))
    page.wait_for_selector("#job-panel .attempts tr.attempt")
    page.wait_for_function("() => document.querySelector('#log-lines .log-empty')"
                           "?.textContent === 'It printed nothing.'")
    quiet = page.evaluate("location.hash").removeprefix("#job=")
    # The job's own page, rendered on the server and then kept live, says the same.
    page.goto(dash.url(f"/jobs/{int(quiet) + 2}"))
    check_common(page, "job")
    assert page.inner_text(".attempts tr.empty") == "Never ran: it ended SKIPPED."
    page.wait_for_selector("#log-lines .log-empty")
    assert page.inner_text("#log-lines .log-empty") == "No output: it never ran."


def test_large_counts_are_written_with_thousands_separators(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # The run's header read "Tokens in · out 1234567 · 98765" and the Store "(70000
    # characters)" where the action count beside them read "1,204".
    cluster.api("POST", "/runs", {"id": "hp-tokens", "agent_id": "hp-agent"})
    cluster.api("POST", "/runs/hp-tokens/actions", {"actions": [
        action(0, usage={"input_tokens": 1_234_567, "output_tokens": 98_765})]})
    page.goto(dash.url("/runs/hp-tokens"))
    check_common(page, "run")
    assert page.inner_text("#run-summary dd.tokens") == "1,234,567 · 98,765"
    assert "1,234,567 · 98,765" in page.inner_text("#run-summary table")
    client = cluster.client()
    client.store_put("hp:big", "y" * 70_000)
    for i in range(1_200):
        client.store_sadd("hp:set", f"m{i:05d}")
    page.goto(dash.url("/store?prefix=hp:"))
    check_common(page, "store")
    big = page.inner_text('tr.store-key[data-key="hp:big"] summary')
    assert "(70,000 characters)" in big, big
    members = 'tr.store-key[data-key="hp:set"]'
    assert page.inner_text(f"{members} summary") == "1,200 members"
    page.click(f"{members} summary")
    assert page.inner_text(f"{members} p.muted") == "showing 200 of 1,200"
