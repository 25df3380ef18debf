"""The Runs pages in real Chromium against a real `titan up`: a run's telemetry filling in
live, the inspector, the keys, a 30,000-action run (virtualised), and the registry and agent
pages updating as runs start and fail.

Runs and actions are made through the HTTP API, as an agent in any language would; every
wait is on the DOM contract the pages implement, never a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Dashboard, first_render_script
from tests.browser.test_dashboard import assert_no_reload, check_common, mark_no_reload, wait_count
from tests.integration.harness import Cluster
from titan.dashboard import run_queries

pytestmark = pytest.mark.browser
BIG = 30_000
BATCH = 5_000


def action(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"a{i}", "name": "call_llm", "actor": "PLAN/plan", "channel": "llm",
            "started_at": time.time(), "duration_ns": 523_000_000,
            "inputs": {"prompt": f"What is {i}+{i}?", "model": "gpt-4o", "max_tokens": 100},
            "outputs": {"response": f"{i} + {i} equals {2 * i}.", "tokens": 15,
                        "cost_usd": 0.0008},
            "outcome": "success", "model": "gpt-4o", "cost_usd": 0.0008,
            "usage": {"input_tokens": 12, "output_tokens": 15}, "cost_source": "pricing",
            "tags": {"step": str(i)}, **kw}


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=False)


def rows(page: Any) -> list[tuple[int, str]]:
    return [(int(s), o) for s, o in page.eval_on_selector_all(
        ".action-row", "els => els.map(e => [e.dataset.seq, e.dataset.outcome])")]


# -- a. one run's telemetry, live ---------------------------------------------------------------


def test_run_page_live_actions_inspector_and_keys(cluster: Cluster, dash: Dashboard, page: Any,
                                                  artifacts: Path) -> None:
    cluster.api("POST", "/runs", {"id": "br-live", "agent_id": "browser-agent",
                                  "budget_usd": 5.0})
    cluster.api("POST", "/runs/br-live/actions", {"actions": [action(0)]})
    page.goto(dash.url("/runs/br-live"))
    check_common(page, "run")
    assert page.get_attribute("body", "data-run-id") == "br-live"
    page.wait_for_selector('.action-row[data-seq="1"]')
    mark_no_reload(page)

    cluster.api("POST", "/runs/br-live/actions", {"actions": [
        action(1), action(2, name="web_search", channel="tool", cost_usd=None, model=None,
                          usage=None, inputs={"query": "<b>titan</b>"}),
        action(3, outcome="error", outputs=None, cost_usd=0.002,
               error={"type": "RateLimit", "message": "429 from the provider"}),
        action(4)]})
    wait_count(page, ".action-row", 5)
    page.wait_for_function("() => document.getElementById('run-actions').textContent === '5'")
    assert sorted(rows(page)) == [(1, "success"), (2, "success"), (3, "success"),
                                  (4, "error"), (5, "success")]
    # The rest of the header (cost per channel) is re-read from the server.
    page.wait_for_function("() => document.querySelector('#cost-by-channel')?.innerText"
                           ".includes('tool')")
    assert_no_reload(page)

    # The inspector: the full action, highlighted, with its metadata.
    page.click('.action-row[data-seq="3"] .a-name')
    page.wait_for_selector("#inspector:not([hidden]) .inspector-meta")
    text = page.inner_text("#inspector")
    assert "web_search" in text and "<b>titan</b>" in text and "a2" in text
    assert page.eval_on_selector("#inspector pre.inputs", "e => e.querySelectorAll('.j-key').length") >= 1
    assert page.eval_on_selector("#inspector .meta-channel", "e => e.textContent") == "tool"
    assert page.query_selector('.action-row.selected[data-seq="3"]')
    shot(page, artifacts, "run-inspector")
    dash.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dash.base)
    page.click("#inspector .json-block:has(pre.inputs) button.copy")
    page.wait_for_selector("#toast:not([hidden])")
    assert '"query": "<b>titan</b>"' in page.evaluate("navigator.clipboard.readText()")
    page.click('.action-row[data-seq="4"] .a-name')
    page.wait_for_function("() => document.querySelector('#inspector .inspector-error')"
                           "?.textContent.includes('429 from the provider')")
    page.keyboard.press("Escape")
    page.wait_for_selector("#inspector", state="hidden")

    # Keys: '/' focuses the search, 't' the telemetry tab — never while typing.
    page.click("h1")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "action-search"
    page.keyboard.type("t/")
    assert page.input_value("#action-search") == "t/"
    page.fill("#action-search", "")
    page.keyboard.press("Escape")
    page.keyboard.press("t")
    assert page.get_attribute("#tab-telemetry", "aria-selected") == "true"
    assert page.evaluate("document.activeElement.id") == "action-scroll"

    # Outcome filter: only the error; then search by content, server-side.
    page.select_option("#outcome-filter", "error")
    page.wait_for_function("() => document.querySelectorAll('.action-row').length === 1")
    assert rows(page) == [(4, "error")]
    assert "outcome=error" in page.url
    page.select_option("#outcome-filter", "")
    page.fill("#action-search", "titan")
    page.wait_for_function("() => document.querySelectorAll('.action-row').length === 1")
    assert rows(page) == [(3, "success")]
    page.fill("#action-search", "")
    wait_count(page, ".action-row", 5)

    # One row unfolds (the rows below it move down), then every row.
    below = page.eval_on_selector('.action-row[data-seq="3"]', "e => e.offsetTop")
    page.click('.action-row[data-seq="2"] .a-toggle')
    page.wait_for_selector('.action-row.open[data-seq="2"] .action-detail pre.json')
    assert page.eval_on_selector('.action-row[data-seq="3"]', "e => e.offsetTop") > below + 200
    page.click('.action-row[data-seq="2"] .a-toggle')
    page.wait_for_function("() => !document.querySelector('.action-row.open')")

    # Expand all: every row shows its inputs and outputs as JSON, each with a copy button.
    page.click("#expand-all")
    wait_count(page, ".action-row.open", 5)
    shot(page, artifacts, "run-expanded")
    assert page.query_selector('.action-row[data-seq="1"] .action-detail pre.json .j-str')
    assert len(page.query_selector_all(".action-row.open button.copy")) == 10
    page.click("#expand-all")
    page.wait_for_function("() => !document.querySelector('.action-row.open')")

    # The run ends: a notice, and the header says so.
    cluster.api("PATCH", "/runs/br-live", {"status": "failed", "error": "gave up"})
    page.wait_for_selector("#run-notice:not([hidden])")
    assert "failed" in page.inner_text("#run-notice")
    page.wait_for_selector('#run-summary[data-status="failed"] .run-error')
    assert_no_reload(page)


def test_a_multi_megabyte_output_shows_a_part_and_the_rest_on_request(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # The inspector laid a 2 MB output out whole (its pretty text larger still): the page
    # froze for seconds. It shows the first 200,000 characters; the rest is one click away,
    # and Copy and Download take the whole value.
    big = "x" * 2_000_000
    cluster.api("POST", "/runs", {"id": "br-huge", "agent_id": "browser-agent"})
    cluster.api("POST", "/runs/br-huge/actions",
                {"actions": [action(0, outputs={"blob": big}, inputs={"q": "small"})]})
    page.goto(dash.url("/runs/br-huge"))
    page.wait_for_selector('.action-row[data-seq="1"]')
    page.click('.action-row[data-seq="1"] .a-name')
    page.wait_for_selector("#inspector:not([hidden]) .inspector-meta")
    shown = page.eval_on_selector("#inspector pre.outputs", "e => e.textContent.length")
    assert shown < 250_000, shown
    button = page.query_selector("#inspector .json-block:has(pre.outputs) button.show-all")
    assert button is not None and "2,000,0" in button.inner_text()
    assert page.query_selector("#inspector .json-block:has(pre.inputs) button.show-all") is None
    with page.expect_download() as got:
        page.click("#inspector .json-block:has(pre.outputs) button.download")
    path = got.value.path()
    assert path is not None and big in Path(path).read_text()
    button.click()
    page.wait_for_function("() => document.querySelector('#inspector pre.outputs')"
                           ".textContent.length > 2000000")
    assert page.query_selector("#inspector button.show-all") is None


def test_the_inspector_says_the_master_is_not_answering_and_retries(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # An action clicked while the master was down showed "Loading…" for good above the
    # browser's raw "Failed to fetch", and nothing to try again with. The request is refused
    # at the browser's edge here (what a stopped master gives it), then let through.
    cluster.api("POST", "/runs", {"id": "br-down", "agent_id": "browser-agent"})
    cluster.api("POST", "/runs/br-down/actions", {"actions": [action(0), action(1)]})
    page.goto(dash.url("/runs/br-down"))
    page.wait_for_selector('.action-row[data-seq="2"]')
    down = "**/api/v1/runs/br-down/actions/*"
    page.route(down, lambda route: route.abort("connectionrefused"))
    page.click('.action-row[data-seq="2"] .a-name')
    page.wait_for_selector("#inspector .load-failed button.retry")
    text = page.inner_text("#inspector")
    assert "Could not load action #2: the master is not answering" in text, text
    assert "Failed to fetch" not in text and "Loading…" not in text, text
    # Still down: Retry says so again.
    page.click("#inspector .load-failed button.retry")
    page.wait_for_selector("#inspector .load-failed button.retry")
    # Back: Retry shows the action.
    page.unroute(down)
    page.click("#inspector .load-failed button.retry")
    page.wait_for_selector("#inspector:not([hidden]) .inspector-meta")
    assert not page.query_selector("#inspector .load-failed")
    # A failure is retried by itself when the page's feed comes back (a resync).
    page.route(down, lambda route: route.abort("connectionrefused"))
    page.click('.action-row[data-seq="1"] .a-name')
    page.wait_for_selector("#inspector .load-failed")
    page.unroute(down)
    page.evaluate("document.dispatchEvent(new CustomEvent('titan:run-resync'))")
    page.wait_for_selector("#inspector:not([hidden]) .inspector-meta")
    assert page.get_attribute("#inspector", "data-seq") == "1"


# -- b. 30,000 actions ----------------------------------------------------------------------------


def test_thirty_thousand_actions_render_virtualised(
        cluster: Cluster, dashboard_factory: Callable[..., Dashboard]) -> None:
    cluster.api("POST", "/runs", {"id": "br-big", "agent_id": "bulk-agent"})
    for start in range(0, BIG, BATCH):
        batch = [action(i, **({"inputs": {"needle": f"haystack-{i}"}} if i % 10_000 == 777
                              else {})) for i in range(start, start + BATCH)]
        got = cluster.api("POST", "/runs/br-big/actions", {"actions": batch})
        assert got["accepted"] == BATCH
    assert cluster.api("GET", "/runs/br-big")["action_count"] == BIG

    dash = dashboard_factory(cluster, [first_render_script(".action-row")])
    page = dash.new_page()
    dash.sign_in(page)
    t0 = time.perf_counter()
    page.goto(dash.url("/runs/br-big"), wait_until="commit")
    page.wait_for_function("() => window.__firstRender !== undefined", timeout=60_000)
    first_ms = float(page.evaluate("window.__firstRender"))
    wall_ms = (time.perf_counter() - t0) * 1000
    print(f"\n30,000-action run: first .action-row rendered {first_ms:.0f} ms after navigation "
          f"start ({wall_ms:.0f} ms as seen from the test)")
    assert first_ms <= 2000, f"first render took {first_ms:.0f} ms"
    check_common(page, "run")
    page.wait_for_selector('.action-row[data-seq="1"]', state="visible")
    shown = len(rows(page))
    assert 0 < shown < 200, f"{shown} rows in the DOM: not virtualised"
    assert page.eval_on_selector("#action-scroll", "e => e.scrollHeight") >= BIG * 34

    # To the bottom: the last action is there, and still only a screenful of rows.
    page.eval_on_selector("#action-scroll", "e => { e.scrollTop = e.scrollHeight; }")
    page.wait_for_selector(f'.action-row[data-seq="{BIG}"]', state="visible")
    assert len(rows(page)) < 200
    # Half way, by wheel: rows load as the viewport reaches them.
    page.eval_on_selector("#action-scroll", "e => { e.scrollTop = e.scrollHeight / 2; }")
    page.hover("#action-scroll")
    page.mouse.wheel(0, 2000)
    page.wait_for_function("() => [...document.querySelectorAll('.action-row')]"
                           ".some(e => Math.abs(e.dataset.seq - 15060) < 200)")

    # Search is the server's: three actions carry the needle.
    page.fill("#action-search", "haystack")
    page.wait_for_function("() => document.querySelectorAll('.action-row').length === 3")
    assert [s for s, _ in rows(page)] == [778, 10778, 20778]
    assert "3 of 30,000" in page.inner_text("#action-count")


# -- c. the registry and the agent page, live ---------------------------------------------------


def test_runs_registry_live_intercepts_and_agent_page(cluster: Cluster, dash: Dashboard,
                                                      page: Any, artifacts: Path) -> None:
    cluster.api("POST", "/runs", {"id": "br-done", "agent_id": "registry-agent"})
    cluster.api("POST", "/runs/br-done/actions", {"actions": [action(i) for i in range(4)]})
    cluster.api("PATCH", "/runs/br-done", {"status": "completed"})
    page.goto(dash.url("/runs"))
    check_common(page, "runs")
    page.wait_for_selector('.run-card[data-run-id="br-done"][data-status="completed"]')
    mark_no_reload(page)

    # A new run appears at the top, live; its card follows its actions in place.
    cluster.api("POST", "/runs", {"id": "br-new", "agent_id": "registry-agent"})
    page.wait_for_selector('.run-card[data-run-id="br-new"][data-status="running"]')
    assert page.eval_on_selector(".run-card", "e => e.dataset.runId") == "br-new"
    assert page.query_selector('.run-card[data-run-id="br-new"] .badge.status-running')
    cluster.api("POST", "/runs/br-new/actions", {"actions": [
        action(0), action(1), action(2, outcome="error", outputs=None, error="boom")]})
    page.wait_for_function("() => document.querySelector('.run-card[data-run-id=\"br-new\"] "
                           ".actions').textContent === '3'")
    assert page.inner_text('.run-card[data-run-id="br-new"] .success') == "66.7%"
    # A call on a model with no known price: the card's cost becomes a lower bound, live.
    cluster.api("POST", "/runs/br-new/actions", {"actions": [
        action(3, cost_usd=None, cost_source="unknown", model="acme/private-model")]})
    page.wait_for_function("() => document.querySelector('.run-card[data-run-id=\"br-new\"] "
                           ".cost').textContent === '≥ $0.0024'")
    assert "1 LLM call on a model with no known price" in page.get_attribute(
        '.run-card[data-run-id="br-new"] .cost', "title")

    # It fails: it turns red and joins the critical intercepts.
    cluster.api("PATCH", "/runs/br-new", {"status": "failed", "error": "the tool broke"})
    page.wait_for_selector('#intercepts a.intercept[data-run-id="br-new"]')
    assert "the tool broke" in page.inner_text('#intercepts a.intercept[data-run-id="br-new"]')
    page.wait_for_selector('.run-card[data-run-id="br-new"][data-status="failed"]')
    assert_no_reload(page)

    # Filters are the server's: failed only.
    page.check('input[name="status"][value="failed"]')
    page.click('#run-filters button[type="submit"]')
    page.wait_for_selector('.run-card[data-run-id="br-new"]')
    statuses = page.eval_on_selector_all(".run-card", "els => els.map(e => e.dataset.status)")
    assert statuses and set(statuses) == {"failed"}
    page.goto(dash.url("/runs"))
    page.wait_for_selector('.run-card[data-run-id="br-new"]')
    shot(page, artifacts, "runs")

    # The agent link opens the agent's page, with its chart.
    page.click('.run-card[data-run-id="br-new"] a.agent-link')
    page.wait_for_selector('body[data-page="agent"]', state="attached")
    check_common(page, "agent")
    assert page.url.endswith("/agents/registry-agent")
    bars = page.eval_on_selector_all("svg#agent-chart rect.bar",
                                     "els => els.map(e => e.dataset.runId)")
    assert bars == ["br-done", "br-new"]
    assert page.query_selector("svg#agent-chart polyline.rate-line")
    assert page.inner_text(".agent-totals .runs") == "2"
    shot(page, artifacts, "agent")
    page.click('.run-card[data-run-id="br-done"] a.run-link')
    page.wait_for_selector('body[data-page="run"][data-run-id="br-done"]', state="attached")
    wait_count(page, ".action-row", 4)


def test_export_includes_every_action_unless_unticked(cluster: Cluster, dash: Dashboard,
                                                      page: Any) -> None:
    """Seed 004: "Click Export to download run data: … Includes runs and all actions". The
    box starts ticked and every format's link asks for the actions; unticked, the runs
    alone; each link still follows the page's filters."""
    cluster.api("POST", "/runs", {"id": "br-export", "agent_id": "export-agent"})
    cluster.api("POST", "/runs/br-export/actions", {"actions": [action(0), action(1)]})
    page.goto(dash.url("/runs?agent=export-agent"))
    page.wait_for_selector('.run-card[data-run-id="br-export"]')
    page.click("#export > summary")
    assert page.is_checked("#export-actions")

    def links() -> dict[str, str]:
        return dict(page.eval_on_selector_all("a.export", """els => els.map(a => [
            a.dataset.format, a.getAttribute('href')])"""))

    assert set(links()) == {"csv", "json", "jsonl"}
    assert all("actions=true" in h and "agent=export-agent" in h for h in links().values())
    # The link the user clicks downloads the run with its actions.
    body = page.evaluate("async (h) => (await fetch(h)).text()", links()["jsonl"])
    kinds = [line.split('"type":"', 1)[1].split('"', 1)[0] for line in body.splitlines()]
    assert kinds == ["run", "action", "action"], body[:300]
    page.uncheck("#export-actions")
    assert all("actions=false" in h for h in links().values())
    body = page.evaluate("async (h) => (await fetch(h)).text()", links()["jsonl"])
    assert body.count('"type":"run"') == 1 and '"type":"action"' not in body


def test_an_ended_run_with_no_action_says_it_recorded_none(cluster: Cluster, dash: Dashboard,
                                                           page: Any) -> None:
    # A completed run with no action said "No action recorded yet: they appear here as the
    # run records them", which a run that has ended never will.
    cluster.api("POST", "/runs", {"id": "br-empty", "agent_id": "empty-agent"})
    page.goto(dash.url("/runs/br-empty"))
    page.wait_for_selector("#actions-empty:not([hidden])")
    assert page.inner_text("#actions-empty").startswith("No action recorded yet")
    cluster.api("PATCH", "/runs/br-empty", {"status": "completed"})  # live, while shown
    page.wait_for_function("() => document.getElementById('actions-empty').textContent "
                           "=== 'This run recorded no action.'")
    page.reload()
    page.wait_for_selector("#actions-empty:not([hidden])")
    assert page.inner_text("#actions-empty") == "This run recorded no action."


def test_a_run_of_cheap_calls_is_not_shown_as_free(cluster: Cluster, dash: Dashboard,
                                                   page: Any) -> None:
    # A run of a few gpt-4o-mini calls ($0.00000585 each) read "$0.0000" on its card, in its
    # header, on each action and on its agent's chart, as if it had cost nothing (a QA pass).
    cheap = {"model": "gpt-4o-mini", "cost_usd": 5.85e-06}
    cluster.api("POST", "/runs", {"id": "br-cheap", "agent_id": "cheap-agent"})
    cluster.api("POST", "/runs/br-cheap/actions", {"actions": [action(0, **cheap)]})
    page.goto(dash.url("/runs?agent=cheap-agent"))
    card = '.run-card[data-run-id="br-cheap"] .cost'
    assert page.inner_text(card) == "$0.0000058"
    cluster.api("POST", "/runs/br-cheap/actions", {"actions": [action(1, **cheap)]})
    page.wait_for_function(f"() => document.querySelector('{card}').textContent === '$0.000012'")

    page.goto(dash.url("/runs/br-cheap"))
    page.wait_for_selector('.action-row[data-seq="2"]')
    assert page.inner_text("#run-cost") == "$0.000012"
    assert page.eval_on_selector_all(".action-row .a-cost", "els => els.map(e => e.textContent)") \
        == ["$0.0000058", "$0.0000058"]
    page.goto(dash.url("/agents/cheap-agent"))
    assert "$0.000012" in page.inner_text("main")


def test_the_agent_field_suggests_agents_past_the_first_five_hundred(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # Seed 004: "By agent - Type to search and select". The page lists the first 500 agent ids
    # in the field's datalist; with 501 agents, typing "zulu" offered nothing, on the Runs
    # page and on the Activity Ledger (a QA pass). The field now asks the master as you type.
    listed = run_queries.AGENT_IDS_LISTED
    ops = [{"run": f"br-fleet-{i:03d}", "create": {"agent_id": f"fleet-{i:03d}"}}
           for i in range(listed)]
    ops.append({"run": "br-zulu", "create": {"agent_id": "zulu-support"}})
    assert cluster.api("POST", "/runs/batch", {"ops": ops})["applied"] == len(ops)
    assert cluster.api("GET", "/agents?q=ZULU&limit=5") == {"agent_ids": ["zulu-support"]}
    options = "() => Array.from(document.querySelectorAll('#agent-ids option'), o => o.value)"
    for path in ("/runs", "/ledger"):
        page.goto(dash.url(path))
        assert "zulu-support" not in page.evaluate(options)  # past the first 500 listed
        page.fill('input[name="agent"]', "ZuLu")
        page.wait_for_function(f"() => ({options})().join() === 'zulu-support'")
        page.fill('input[name="agent"]', "")
        page.wait_for_function(f"() => ({options})().length === {listed}")


def test_a_running_run_joins_a_min_cost_page_when_its_cost_passes(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # Seed 004's "Analyze high-cost runs" while they run: on /runs?status=running&min_cost=1
    # a run that passed $1 stayed off the page, which the API listed, until it ended, and
    # then the running filter dropped it: the page never showed it (a QA pass).
    cluster.api("POST", "/runs", {"id": "br-costly", "agent_id": "costly-agent"})
    page.goto(dash.url("/runs?status=running&min_cost=1&agent=costly-agent"))
    page.wait_for_selector("#runs-empty:not([hidden])")
    mark_no_reload(page)
    cluster.api("POST", "/runs/br-costly/actions", {"actions": [action(0, cost_usd=0.4)]})
    cluster.api("POST", "/runs/br-costly/actions", {"actions": [action(1, cost_usd=0.9)]})
    page.wait_for_selector('.run-card[data-run-id="br-costly"][data-status="running"]')
    assert page.inner_text('.run-card[data-run-id="br-costly"] .cost') == "$1.30"
    assert_no_reload(page)


def test_a_run_over_its_budget_joins_the_intercepts_of_a_page_filtered_to_others(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # Critical intercepts answer only to the time window, yet a running run that went over
    # its budget joined them live only when the page's other filters listed its card: on
    # /runs?agent=another it was missing until the run ended (a QA pass).
    cluster.api("POST", "/runs", {"id": "br-overrun", "agent_id": "overrun-agent",
                                  "budget_usd": 0.01})
    page.goto(dash.url("/runs?agent=another-agent"))
    page.wait_for_selector("#runs-empty:not([hidden])")
    mark_no_reload(page)
    cluster.api("POST", "/runs/br-overrun/actions", {"actions": [action(0, cost_usd=0.02)]})
    page.wait_for_selector('#intercepts a.intercept[data-run-id="br-overrun"]')
    assert "over budget" in page.inner_text('#intercepts a.intercept[data-run-id="br-overrun"]')
    assert page.query_selector('.run-card[data-run-id="br-overrun"]') is None
    assert_no_reload(page)


def test_a_page_sorted_by_cost_reorders_as_a_running_run_costs_more(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # Seed 004's "Sort by cost (descending)" while runs run: cards updated their cost in place
    # but kept their place, so a run that became the most expensive stayed where it was, or
    # off the page, until a reload (a QA pass).
    for run_id, cost in (("br-sort-a", 3.0), ("br-sort-b", 2.0), ("br-sort-c", 1.0)):
        cluster.api("POST", "/runs", {"id": run_id, "agent_id": "sorted-agent"})
        cluster.api("POST", f"/runs/{run_id}/actions", {"actions": [action(0, cost_usd=cost)]})
    order = ("() => Array.from(document.querySelectorAll('#runs-live .run-card'))"
             ".map(c => c.dataset.runId).join()")
    page.goto(dash.url("/runs?sort=cost&agent=sorted-agent&limit=2"))
    page.wait_for_function(f"() => ({order})() === 'br-sort-a,br-sort-b'")
    mark_no_reload(page)
    # Off the page (the third of two): it moves in as it passes the cheapest card here.
    cluster.api("POST", "/runs/br-sort-c/actions", {"actions": [action(1, cost_usd=1.5)]})
    page.wait_for_function(f"() => ({order})() === 'br-sort-a,br-sort-c'")
    # On the page: it moves up as it passes the card above it.
    cluster.api("POST", "/runs/br-sort-c/actions", {"actions": [action(2, cost_usd=5.0)]})
    page.wait_for_function(f"() => ({order})() === 'br-sort-c,br-sort-a'")
    assert page.inner_text('.run-card[data-run-id="br-sort-c"] .cost') == "$7.50"
    assert_no_reload(page)


def test_a_running_run_with_a_high_intervention_rate_joins_the_intercepts(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # Seed 004's "Runs with high intervention rates": a running run with 20 % of its actions
    # blocked, under its budget, joined the critical intercepts only when it ended (a QA pass).
    cluster.api("POST", "/runs", {"id": "br-blocked", "agent_id": "blocked-agent"})
    cluster.api("POST", "/runs/br-blocked/actions", {"actions": [action(i) for i in range(4)]})
    page.goto(dash.url("/runs?agent=blocked-agent"))
    page.wait_for_selector('.run-card[data-run-id="br-blocked"]')
    assert page.query_selector('#intercepts a.intercept[data-run-id="br-blocked"]') is None
    mark_no_reload(page)
    cluster.api("POST", "/runs/br-blocked/actions", {"actions": [action(4, outcome="blocked")]})
    page.wait_for_selector('#intercepts a.intercept[data-run-id="br-blocked"]')
    assert "high intervention rate" in page.inner_text(
        '#intercepts a.intercept[data-run-id="br-blocked"]')
    assert_no_reload(page)


def test_a_page_sorted_by_duration_reorders_as_a_running_run_outlasts_others(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # A running run's duration grows with no event to say so: on a page sorted by duration
    # it kept its place below shorter ended runs until a reload.
    now = time.time()
    cluster.api("POST", "/runs", {"id": "br-dur-ended", "agent_id": "dur-agent",
                                  "started_at": now - 60})
    cluster.api("PATCH", "/runs/br-dur-ended", {"status": "completed", "ended_at": now - 57})
    cluster.api("POST", "/runs", {"id": "br-dur-running", "agent_id": "dur-agent"})
    order = ("() => Array.from(document.querySelectorAll('#runs-live .run-card'))"
             ".map(c => c.dataset.runId).join()")
    page.goto(dash.url("/runs?sort=duration&agent=dur-agent"))
    page.wait_for_function(f"() => ({order})() === 'br-dur-ended,br-dur-running'")
    mark_no_reload(page)
    # Past 3 s (and the second of slack) it outlasts the ended run: it moves up by itself.
    page.wait_for_function(f"() => ({order})() === 'br-dur-running,br-dur-ended'",
                           timeout=15_000)
    assert_no_reload(page)
    cluster.api("PATCH", "/runs/br-dur-running", {"status": "completed"})
