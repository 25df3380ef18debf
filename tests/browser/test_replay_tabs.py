"""A run's Simulation and Determinism tabs in real Chromium against a real `titan up`.

An original run and a replay of it are recorded through the HTTP API, as an agent in any
language would: the replay makes the same calls (same actor, channel, name and ordinal) with
the same inputs, served from the recording — but one with different inputs, an input
mismatch. The tabs must show the replay's report (metrics, the divergence with its diff, the
comparison table), list the replay on the original's page, offer no replay of a run without
recorded code (and score no such run that has no replay either), and score the original's determinism from the
timestamp and UUID in its outputs. Every wait is on the DOM contract, never a sleep.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import assert_no_reload, check_common, mark_no_reload
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser
# Inputs that would run script if the page ever used innerHTML with them.
HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def call(prefix: str, i: int, name: str, inputs: dict[str, Any], outputs: dict[str, Any], *,
         channel: str = "llm", ordinal: int = 0, cost: float = 0.0008,
         **kw: Any) -> dict[str, Any]:
    return {"id": f"{prefix}{i}", "actor": "main/agent", "channel": channel, "name": name,
            "ordinal": ordinal, "started_at": time.time(), "duration_ns": 400_000_000,
            "inputs": inputs, "outputs": outputs, "outcome": "success", "cost_usd": cost, **kw}


def calls(prefix: str, *, replay: bool) -> list[dict[str, Any]]:
    """The original's four calls, or the replay's: served, free, and the second one asked
    with a different prompt."""
    extra: dict[str, Any] = {"outcome": "replayed", "cost_usd": 0.0,
                             "replay_status": "served"} if replay else {}
    second = "Summarise the three reports" if replay else "Summarise the report"
    return [
        {**call(prefix, 1, "call_llm", {"prompt": "Hello"}, {"response": "Hi there!"}), **extra},
        {**call(prefix, 2, "call_llm", {"prompt": second, "max_tokens": 100},
                {"response": "Sales grew 4%."}, ordinal=1), **extra},
        {**call(prefix, 3, "generate_report", {"topic": "sales"},
                {"report": "Q3 sales", "generated_at": "2026-11-20T14:30:00Z",
                 "report_id": "3f2b9c1e-8a4d-4e2b-9b7a-1c2d3e4f5a6b"},
                channel="custom", cost=0.0), **extra},  # the agent's own (trace.action)
        {**call(prefix, 4, "web_search", {"query": HOSTILE}, {"hits": 3}, channel="tool",
                cost=0.0), **extra},
    ]


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def metric(page: Any, key: str) -> str:
    return str(page.inner_text(f'#replay-metrics tr[data-metric="{key}"] .metric-value'))


@pytest.fixture(scope="module")
def recorded(cluster: Cluster) -> None:
    cluster.api("POST", "/runs", {"id": "orig", "agent_id": "a"})
    cluster.api("POST", "/runs/orig/actions", {"actions": calls("o", replay=False)})
    cluster.api("PATCH", "/runs/orig", {"status": "completed"})
    cluster.api("POST", "/runs", {"id": "orig-replay-1", "agent_id": "a", "replay_of": "orig"})
    cluster.api("POST", "/runs/orig-replay-1/actions", {"actions": calls("r", replay=True)})
    cluster.api("PATCH", "/runs/orig-replay-1", {"status": "completed"})


def test_replay_run_shows_its_report(recorded: None, dash: Dashboard, page: Any,
                                     artifacts: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(dash.url("/runs/orig-replay-1"))
    check_common(page, "run")
    page.wait_for_selector(".action-row")
    mark_no_reload(page)

    page.click("h1")
    page.keyboard.press("s")
    assert page.get_attribute("#tab-simulation", "aria-selected") == "true"
    assert page.get_attribute("#tab-telemetry", "aria-selected") == "false"
    page.wait_for_selector("#panel-simulation", state="visible")
    assert page.is_hidden("#panel-telemetry")
    assert page.url.endswith("/runs/orig-replay-1#simulation")
    assert page.get_attribute("#panel-simulation .replay-of-link", "href") == "/runs/orig"

    # The metrics: 3 of the 4 recorded calls matched, one divergence, nothing spent.
    page.wait_for_selector("#replay-metrics")
    assert metric(page, "match_rate") == "75%"
    assert metric(page, "divergences") == "1"
    assert metric(page, "replay_cost") == "$0.0000"
    assert metric(page, "original_cost") == "$0.0016"
    assert metric(page, "savings") == "$0.0016"
    assert "input mismatch" in page.inner_text('#replay-metrics tr[data-metric="divergences"]')
    assert page.get_attribute("#replay-link", "href") == "/runs/orig-replay-1"

    # The divergence: its kind in words, where, both sides, and the path that differs.
    divs = page.query_selector_all("#divergences .divergence")
    assert len(divs) == 1
    div = divs[0]
    assert div.get_attribute("data-kind") == "input_mismatch"
    assert "first" in (div.get_attribute("class") or "")
    text = div.inner_text()
    assert "Input mismatch" in text and "call_llm" in text and "#1" in text
    assert "Summarise the report" in text and "Summarise the three reports" in text
    paths = page.eval_on_selector_all("#divergences .diff-path", "els => els.map(e => e.textContent)")
    assert "$.prompt" in paths

    # The comparison table: three matches, one divergence, the hostile input as text.
    statuses = page.eval_on_selector_all("#comparison tbody tr",
                                         "els => els.map(e => e.dataset.status)")
    assert sorted(statuses) == ["input_mismatch", "match", "match", "match"]
    assert "✅ Match" in page.inner_text('#comparison tr[data-status="match"]')
    row = page.inner_text('#comparison tr[data-status="input_mismatch"]')
    assert "❌ Diverged" in row and "Input mismatch" in row
    assert "<script>window.__xss=2</script>" in page.inner_text("#comparison")
    assert page.evaluate("window.__xss") is None
    shot(page, artifacts, "replay-simulation")

    # t goes back to the telemetry; the address follows the tab.
    page.keyboard.press("t")
    assert page.get_attribute("#tab-telemetry", "aria-selected") == "true"
    assert not page.url.endswith("#simulation")
    assert_no_reload(page)


def test_original_lists_its_replays_and_refuses_without_code(
        recorded: None, dash: Dashboard, page: Any, artifacts: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(dash.url("/runs/orig#simulation"))  # the hash opens the tab
    check_common(page, "run")
    page.wait_for_selector("#panel-simulation", state="visible")
    assert page.get_attribute("#tab-simulation", "aria-selected") == "true"
    item = page.wait_for_selector('#replay-list .replay-item[data-run-id="orig-replay-1"]')
    assert item.get_attribute("data-status") == "completed"
    assert page.get_attribute('#replay-list .replay-item a.run-link', "href") == \
        "/runs/orig-replay-1"
    twin = page.request.get(dash.url("/runs/orig.json")).json()  # the page's JSON twin
    assert [r["run_id"] for r in twin["replays"]] == ["orig-replay-1"]
    # The latest replay's report is shown, linked.
    page.wait_for_selector('#replay-report[data-replay-id="orig-replay-1"] #replay-metrics')
    assert metric(page, "match_rate") == "75%"
    assert page.get_attribute("#replay-link", "href") == "/runs/orig-replay-1"
    mark_no_reload(page)

    # This run was recorded over HTTP, without code: the button says so, and r asks the
    # master nothing (it was enabled, and answered 409 once clicked).
    button = page.locator("#simulate-replay")
    assert button.is_disabled() and "no code recorded" in (button.get_attribute("title") or "")
    page.click("h1")
    page.keyboard.press("r")
    page.wait_for_selector("#replay-error:not([hidden])")  # why, said without asking
    assert page.inner_text("#replay-error").startswith("Replay not available: no code")
    assert button.is_disabled()
    shot(page, artifacts, "replay-not-available")

    # d: the determinism score, from the timestamp and the UUID in the report's outputs.
    page.keyboard.press("d")
    assert page.get_attribute("#tab-determinism", "aria-selected") == "true"
    assert page.url.endswith("#determinism")
    page.wait_for_selector("#determinism-score[data-score]")
    score = int(page.get_attribute("#determinism-score", "data-score") or "-1")
    band = page.get_attribute("#determinism-score", "data-band")
    assert 0 <= score < 100
    assert band in ("green", "yellow", "orange", "red")
    bar = page.eval_on_selector("#determinism-score .det-fill", "e => e.style.width")
    assert bar == f"{score}%"
    findings = page.eval_on_selector_all(
        "#findings .finding", "els => els.map(e => [e.dataset.kind, e.dataset.severity])")
    assert findings, "no finding for a timestamp and a UUID in the outputs"
    assert all(sev in ("critical", "high", "medium", "low") for _, sev in findings)
    text = page.inner_text("#findings")
    assert "generate_report" in text
    assert page.query_selector("#severity-counts .sev-count[data-severity=high]")
    assert page.query_selector("#recommendations")
    shot(page, artifacts, "determinism")

    # Nothing leaks horizontally at 1280 px.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert_no_reload(page)


def test_an_imported_run_is_not_scored_and_offers_no_replay(cluster: Cluster, dash: Dashboard,
                                                           page: Any, artifacts: Path) -> None:
    # An OTLP-imported run showed "100/100 Highly deterministic ... Analyzed 0 files" and an
    # enabled Simulate Replay button that answered 409.
    trace, now = "7b0c8a7e1d3b4c5a6e7f8091a2b3c4d8", time.time_ns()
    sent = httpx.post(cluster.url + "/v1/traces", timeout=30, headers={
        "Authorization": f"Bearer {cluster.admin_token}"}, json={"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name",
                                         "value": {"stringValue": "otel-bot"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": trace, "spanId": "8000000000000001", "name": "answer", "kind": 1,
                "startTimeUnixNano": str(now - 10**9), "endTimeUnixNano": str(now)}]}]}]})
    assert sent.status_code == 200, sent.text
    run_id = f"otel-{trace}"
    report = cluster.api("GET", f"/runs/{run_id}/determinism")
    assert report["score"] is None and report["band"]["label"].startswith("Not applicable")
    page.goto(dash.url(f"/runs/{run_id}#simulation"))
    check_common(page, "run")
    button = page.locator("#simulate-replay")
    assert button.is_disabled() and "no code recorded" in (button.get_attribute("title") or "")
    # Said in the panel, not only in the disabled button's title (seen by hovering): the
    # panel asked to "press r or Simulate Replay", and r did nothing (a QA pass).
    page.wait_for_selector("#replay-report .replay-unavailable")
    assert page.inner_text("#replay-report .replay-unavailable").startswith(
        "Replay not available: no code recorded for this run")
    assert page.inner_text("#replay-list .replay-none") == "No replay yet."
    page.click("h1")
    page.keyboard.press("r")
    page.wait_for_selector("#replay-error:not([hidden])")
    assert page.inner_text("#replay-error").startswith("Replay not available")
    page.click("#tab-determinism")
    page.wait_for_selector("#determinism-score[data-score]", state="attached")
    assert page.inner_text("#determinism-score .det-number") == "—"
    assert page.inner_text("#determinism-score .det-band") == \
        "Not applicable: no code recorded for this run"
    # Not "No non-deterministic pattern found in the code ... Nothing to change." under a
    # "Not applicable" score (a dashboard QA pass): no code was analyzed, and it says so.
    assert page.inner_text("#findings").startswith("No code was recorded for this run, so "
                                                   "none was analyzed")
    assert page.inner_text("#recommendations").startswith("None: record the run's code")
    shot(page, artifacts, "determinism-not-applicable")


def test_a_replay_of_calls_of_unknown_price_shows_unknown_costs(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # The Simulation tab said "Original cost $0.0000", "Savings $0.0000" for a run whose LLM
    # calls have no known price, which its own header shows as unknown (a QA pass).
    def unpriced(prefix: str, i: int, **kw: Any) -> dict[str, Any]:
        a = call(prefix, i, "call_llm", {"prompt": f"q{i}"}, {"text": "a"}, ordinal=i, **kw)
        del a["cost_usd"]  # a model in no price list
        return a

    cluster.api("POST", "/runs", {"id": "unp", "agent_id": "unp"})
    cluster.api("POST", "/runs/unp/actions", {"actions": [unpriced("uo", 0), unpriced("uo", 1)]})
    cluster.api("PATCH", "/runs/unp", {"status": "completed"})
    # A fork: its first call served, its second asked live of the same unpriced model.
    cluster.api("POST", "/runs", {"id": "unp-replay-1", "agent_id": "unp", "replay_of": "unp"})
    cluster.api("POST", "/runs/unp-replay-1/actions", {"actions": [
        {**unpriced("ur", 0), "outcome": "replayed", "cost_usd": 0.0, "replay_status": "served"},
        {**unpriced("ur", 1), "replay_status": "forked"}]})
    cluster.api("PATCH", "/runs/unp-replay-1", {"status": "completed"})
    page.goto(dash.url("/runs/unp#simulation"))
    page.wait_for_selector('#replay-report[data-replay-id="unp-replay-1"] #replay-metrics')
    assert metric(page, "original_cost") == "unknown"
    assert metric(page, "replay_cost") == "unknown"
    assert metric(page, "savings") == "unknown"
    item = '#replay-list .replay-item[data-run-id="unp-replay-1"] .replay-actions'
    assert page.inner_text(item) == "2 actions · unknown"  # as the server rendered it
    report = cluster.api("GET", "/runs/unp-replay-1/replay")
    assert (report["original"]["unpriced_calls"], report["replay"]["unpriced_calls"],
            report["savings_usd"]) == (2, 1, None)


# A run a Python script drove: Titan recorded its code, so it can be replayed for real.
DRIVEN = '''
import titan

@titan.tool
def lookup(query):
    return {"answer": query.upper()}

with titan.trace.run("replayable", run_id="driven") as run:
    lookup("alpha")
    lookup("beta")
'''
SAW_PROGRESS = """new MutationObserver(() => {
  const p = document.getElementById("replay-progress");
  if (p && !p.hidden && p.textContent.includes("replayed")) window.__sawProgress = p.textContent;
}).observe(document, {subtree: true, childList: true, attributes: true});"""


def test_simulate_replay_runs_one_and_shows_its_report(
        cluster: Cluster, dashboard_factory: Any, artifacts: Path) -> None:
    import os
    import subprocess
    import sys

    path = cluster.script("driven.py", DRIVEN)
    env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env,
                          timeout=120, cwd=cluster.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert cluster.api("GET", "/runs/driven")["status"] == "completed"

    dash = dashboard_factory(cluster, [SAW_PROGRESS])
    page = dash.new_page()
    dash.sign_in(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(dash.url("/runs/driven"))
    check_common(page, "run")
    page.keyboard.press("s")
    page.wait_for_selector("#replay-list .replay-none")
    mark_no_reload(page)

    page.click("#simulate-replay")
    # A progress line while it runs, then its report, and it joins the list.
    page.wait_for_selector('#replay-report[data-status="completed"] #replay-metrics',
                           timeout=90_000)
    assert page.evaluate("window.__sawProgress"), "no progress line while the replay ran"
    assert page.is_hidden("#replay-progress")
    replay_id = page.get_attribute("#replay-report", "data-replay-id")
    assert replay_id and replay_id.startswith("driven-replay-")
    assert metric(page, "match_rate") == "100%"
    assert metric(page, "divergences") == "0"
    page.wait_for_selector(f'#replay-list .replay-item[data-run-id="{replay_id}"]')
    assert page.is_hidden("#replay-error")
    assert page.is_enabled("#simulate-replay")
    shot(page, artifacts, "replay-finished")
    assert_no_reload(page)


def test_a_viewer_reads_replays_but_has_no_button_to_start_one(
        recorded: None, cluster: Cluster, dash: Dashboard) -> None:
    # The button was enabled for a viewer, and clicking it (or r) said 403.
    viewer = cluster.client().create_token("viewer", name="replay-reader")["token"]
    page = dash.new_page()
    page.goto(dash.url(f"/login?token={viewer}&next=/runs/orig%23simulation"))
    page.wait_for_selector('#replay-list .replay-item[data-run-id="orig-replay-1"]')
    page.wait_for_selector('#replay-report[data-replay-id="orig-replay-1"] #replay-metrics')
    button = page.locator("#simulate-replay")
    assert button.is_disabled() and "viewer" in (button.get_attribute("title") or "")
    page.keyboard.press("r")  # nothing is asked of the master: the page says why
    page.wait_for_selector("#replay-error:not([hidden])")
    assert page.inner_text("#replay-error") == \
        "Operators and admins start replays; a viewer reads their reports"
    assert button.is_disabled()


def test_a_name_mismatch_row_names_both_calls(cluster: Cluster, dash: Dashboard,
                                              page: Any) -> None:
    # The comparison's Action column showed only the replay's call ("search2") where the
    # recording had made another ("web_search").
    cluster.api("POST", "/runs", {"id": "nm-orig", "agent_id": "nm"})
    cluster.api("POST", "/runs/nm-orig/actions", {"actions": [
        call("nmo", 1, "web_search", {"q": "x"}, {"hits": 1}, channel="tool", cost=0.0)]})
    cluster.api("PATCH", "/runs/nm-orig", {"status": "completed"})
    cluster.api("POST", "/runs", {"id": "nm-replay", "agent_id": "nm", "replay_of": "nm-orig"})
    cluster.api("POST", "/runs/nm-replay/actions", {"actions": [
        call("nmr", 1, "search2", {"q": "x"}, {"hits": 1}, channel="tool", cost=0.0,
             replay_status="live")]})
    cluster.api("PATCH", "/runs/nm-replay", {"status": "completed"})
    page.goto(dash.url("/runs/nm-replay#simulation"))
    row = page.wait_for_selector('#comparison tr[data-status="name_mismatch"]')
    assert row.query_selector(".cmp-action b").inner_text() == "web_search → search2"


# Every text a success-rate cell showed: the live patch must never say what a reload would not.
RATES_SHOWN = """window.__rates = [];
new MutationObserver(() => {
  const el = document.querySelector('.run-card[data-run-id="live-replay"] .success') ||
             document.getElementById("run-success");
  if (el && window.__rates[window.__rates.length - 1] !== el.textContent) {
    window.__rates.push(el.textContent);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});"""


def test_a_replays_success_rate_stays_the_servers_while_it_records_live(
        recorded: None, cluster: Cluster, dashboard_factory: Any) -> None:
    # The card and the run's header recomputed success / actions from the event, where the
    # server counts a replay's served calls as successes: a replay read 0% until a reload.
    dash = dashboard_factory(cluster, [RATES_SHOWN])
    cards, header = dash.new_page(), dash.new_page()
    dash.sign_in(cards)
    cluster.api("POST", "/runs", {"id": "live-replay", "agent_id": "a", "replay_of": "orig"})
    cards.goto(dash.url("/runs"))
    check_common(cards, "runs")
    cards.wait_for_selector('.run-card[data-run-id="live-replay"]')
    header.goto(dash.url("/runs/live-replay"))
    check_common(header, "run")
    mark_no_reload(cards)
    mark_no_reload(header)

    served = calls("lr", replay=True)
    cluster.api("POST", "/runs/live-replay/actions", {"actions": served[:2]})
    cluster.api("POST", "/runs/live-replay/actions", {"actions": served[2:]})
    card = '.run-card[data-run-id="live-replay"]'
    for page, count, rate in ((cards, f"{card} .actions", f"{card} .success"),
                              (header, "#run-actions", "#run-success")):
        page.wait_for_function(f"() => document.querySelector('{count}').textContent === '4'")
        assert cluster.api("GET", "/runs/live-replay")["success_rate"] == 1.0
        assert page.inner_text(rate) == "100%"
        shown = page.evaluate("window.__rates")
        assert set(shown) <= {"—", "100%"}, f"the live patch said {shown}"
        assert_no_reload(page)
