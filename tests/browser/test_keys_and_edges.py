"""What a QA pass of the dashboard found at its edges, in real Chromium against a real
`titan up`: the keyboard reaching a run's inspector and a job's panel, error pages keeping the
header, long unbroken names not widening pages, relative times that move, and the sections a
gate or a stopped service has no use for.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import FAILS, OK, SERVES, WAIT_FOR_FLAG, node
from tests.integration.harness import Cluster
from titan import TitanJob

pytestmark = pytest.mark.browser


def focused(page: Any, attr: str) -> str | None:
    return page.evaluate("(a) => document.activeElement.getAttribute(a)", attr)


def test_the_keyboard_opens_the_inspector_and_a_jobs_panel(cluster: Cluster, dash: Dashboard,
                                                          page: Any) -> None:
    cluster.api("POST", "/runs", {"id": "keys-run", "agent_id": "keys-agent"})
    cluster.api("POST", "/runs/keys-run/actions", {"actions": [
        {"id": f"k{i}", "name": f"step_{i}", "actor": "PLAN/plan", "channel": "tool",
         "started_at": time.time(), "duration_ns": 1_000_000, "inputs": {"i": i},
         "outputs": {"ok": True}, "outcome": "success"} for i in range(3)]})
    page.goto(dash.url("/runs/keys-run"))
    page.wait_for_selector('.action-row[data-seq="3"]')
    page.click("h1")
    page.keyboard.press("t")
    page.keyboard.press("ArrowDown")
    assert focused(page, "data-seq") == "1"
    page.keyboard.press("ArrowDown")
    assert focused(page, "data-seq") == "2"
    # One row in the tab order (roving tabindex), with a visible focus.
    assert page.eval_on_selector_all(".action-row", "els => els.map(e => e.tabIndex)") == [-1, 0, -1]
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    page.wait_for_selector('#inspector:not([hidden])[data-seq="2"] .inspector-meta')
    assert "step_1" in page.inner_text("#inspector")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    page.wait_for_selector('#inspector[data-seq="1"] .inspector-meta')
    page.keyboard.press("Escape")
    page.wait_for_selector("#inspector", state="hidden")
    page.keyboard.press("End")
    assert focused(page, "data-seq") == "3"

    flag = cluster.root / "release-keys"
    client = cluster.client()
    client.submit_dag("keys", [TitanJob("hold", cluster.script("hold.py", WAIT_FOR_FLAG),
                                        args=[str(flag)]),
                               TitanJob("after", cluster.script("ok.py", OK), parents=["hold"])])
    try:
        page.goto(dash.url("/dags/DAG-keys"))
        page.wait_for_selector(node("after"))
        assert page.eval_on_selector(node("after"), "e => [e.tabIndex, e.getAttribute('role'),"
                                     " e.getAttribute('aria-label')]")[:2] == [0, "button"]
        assert "after" in page.get_attribute(node("after"), "aria-label")
        page.focus("#graph")
        page.keyboard.press("Tab")
        job = focused(page, "data-job-id")
        assert job in ("hold", "after")
        page.keyboard.press("Enter")
        page.wait_for_function("() => location.hash.startsWith('#job=')")
        page.wait_for_selector("#job-panel:not([hidden])")
        assert page.is_visible(f'{node(job)}.selected')
        page.keyboard.press("Escape")
        page.wait_for_selector("#job-panel", state="hidden")
        page.focus(node(job))
        page.keyboard.press(" ")
        page.wait_for_selector("#job-panel:not([hidden])")
    finally:
        flag.write_text("go")


def page_width(page: Any) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")


def test_long_unbroken_names_do_not_widen_the_pages(cluster: Cluster, dash: Dashboard,
                                                    page: Any) -> None:
    """At 1400 px no page scrolls sideways for a 200-character name, value or action name:
    they wrap inside their column or box (QA: /dags was 1652 px wide)."""
    name = "wide" + "x" * 196
    cluster.client().submit_dag(name, [TitanJob("a", cluster.script("ok.py", OK))])
    cluster.client().store_put("wide/long", "y" * 5000)
    cluster.client().store_put("wide/json", "{\"" + "k" * 300 + "\":1}")
    cluster.api("POST", "/runs", {"id": "wide-run", "agent_id": "wide-agent"})
    cluster.api("POST", "/runs/wide-run/actions", {"actions": [
        {"id": "w1", "name": "n" * 190, "actor": "wide", "channel": "custom",
         "started_at": time.time(), "duration_ns": 1_000_000, "inputs": {},
         "outputs": {"generated_at": "2024-12-28T14:30:00Z"}, "outcome": "success"}]})
    wide = {}
    for path, ready in ((f"/dags?name={name}", "a.dag-link"), (f"/dags/DAG-{name}", "#graph .node"),
                        ("/store?prefix=wide/", ".store-key"),
                        ("/runs/wide-run#determinism", "#findings .finding-action")):
        page.goto(dash.url(path))
        page.wait_for_selector(ready)
        scroll, client = page_width(page)
        if scroll > client:
            wide[path[:20]] = scroll
    wide.update(ids_and_names_wide(cluster, dash, page))
    wide.update(stages_wide(cluster, dash, page))
    assert not wide, f"wider than the {client} px window: {wide}"
    # The whole name is still there to read (wrapped, not cut).
    page.goto(dash.url(f"/dags/DAG-{name}"))
    assert name in page.inner_text(".dag-head h1")


def ids_and_names_wide(cluster: Cluster, dash: Dashboard, page: Any) -> dict[str, int]:
    """The pages a 200-character run id, agent id, actor and action name, a 100-character
    task id and an unbroken task seed widened (QA: the run page's crumbs, the Ledger's run and
    agent columns, an Agent Runs row's id, the Data Explorer's Behavior config)."""
    rid, agent = "R" + "0123456789" * 19 + "abcdefghi", "A" * 200
    cluster.api("POST", "/runs", {"id": rid, "agent_id": agent})
    cluster.api("POST", f"/runs/{rid}/actions", {"actions": [
        {"id": "w2", "name": "N" * 200, "actor": "X" * 150, "started_at": time.time()}]})
    cluster.api("PATCH", f"/runs/{rid}", {"status": "completed"})
    cluster.api("PUT", "/evaluations/wide-eval", {
        "agent": {"name": "agent-" + "G" * 80, "version": "1", "kind": "http",
                  "url": "https://example.com/agent", "tools": []},
        "tasks": [{"id": "t" * 100, "user_instruction": "hello",
                   "behavior_instructions": "B" * 300}]})
    wide = {}
    for path, ready in ((f"/runs/{rid}", ".action-row"), (f"/ledger?run={rid}", "td.run a.run-link"),
                        (f"/runs?q={rid}", ".run-card"), (f"/agents/{agent}", ".run-card"),
                        (f"/agents?stages=all&run={rid}", ".agent-run .run-id"),
                        ("/evaluations/wide-eval", "td.behavior")):
        page.goto(dash.url(path))
        page.wait_for_selector(ready)
        scroll, client = page_width(page)
        if scroll > client:
            wide[path[:20]] = scroll
    # Cut with an ellipsis in a card: the whole id on hover.
    page.goto(dash.url(f"/runs?q={rid}"))
    assert page.get_attribute(f'.run-card[data-run-id="{rid}"] a.agent-link', "title") == agent
    return wide


def stages_wide(cluster: Cluster, dash: Dashboard, page: Any) -> dict[str, Any]:
    """The pages a stage of a 200-character agent run widened, its DAG and job 200 characters
    too (QA: an Agent Runs stage box and failure link, the DAG header's "agent run" link)."""
    rid, stage = "R" * 200, "W" * 200
    client = cluster.client()
    client.submit_dag(stage, [TitanJob("J" * 200, cluster.script("fails.py", FAILS))],
                      agent_run_id=rid)
    client.wait_dag(stage, timeout=60)
    wide = {}
    for path, ready in ((f"/agents?run={rid}", ".agent-run a.run-failure"),
                        (f"/dags/DAG-{stage}", "#graph .node"), (f"/runs/{rid}", ".stage")):
        page.goto(dash.url(path))
        page.wait_for_selector(ready)
        scroll, client_width = page_width(page)
        if scroll > client_width:
            wide[path[:20]] = (scroll, page.evaluate(  # what sticks out, to say so
                "w => [...document.querySelectorAll('main *')].filter(e => "
                "e.getBoundingClientRect().right > w + 1).slice(-3).map(e => e.className)",
                client_width))
    return wide


def test_relative_times_keep_up_with_the_ticking_duration(cluster: Cluster, dash: Dashboard,
                                                          page: Any) -> None:
    """A running run's card: "STARTED 20 s ago" moves on as its DURATION ticks, not ten
    seconds later (QA: "DURATION 21.1 s" beside "STARTED 13 s ago")."""
    cluster.api("POST", "/runs", {"id": "tick-run", "agent_id": "tick-agent",
                                  "started_at": time.time() - 20})
    page.goto(dash.url("/runs?q=tick-run"))
    card = '.run-card[data-run-id="tick-run"]'
    page.wait_for_selector(f"{card} .started time")
    first = page.inner_text(f"{card} .started time")
    page.wait_for_function("([c, t]) => document.querySelector(c + ' .started time').textContent"
                           " !== t", arg=[card, first], timeout=3000)
    ago = int(page.inner_text(f"{card} .started time").split()[0])
    took = float(page.inner_text(f"{card} .duration").split()[0])
    assert abs(ago - took) <= 1.5, (ago, took)


def test_a_gates_panel_and_a_stopped_services_line_hold_no_empty_parts(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    """A gate never runs: its panel has no "Attempts: Not started yet." nor "Logs: No output
    yet.". A stopped service (no health, no address) reads "restarts 0 · readiness HTTP GET
    /health", not "· restarts 0 · readiness http:/health"."""
    client = cluster.client()
    client.submit_dag("gated", [
        TitanJob("build", cluster.script("ok.py", OK)),
        TitanJob("deploy", cluster.script("ok.py", OK), parents=["build"],
                 hitl_message="Ship it?", max_wait_seconds=600)])
    page.goto(dash.url("/dags/DAG-gated"))
    page.wait_for_selector(node("deploy.approval", "WAITING_APPROVAL"))
    page.click(node("deploy.approval"))
    page.wait_for_selector('#job-panel[data-state="WAITING_APPROVAL"]')
    assert page.is_hidden("#job-panel .job-run")
    text = page.inner_text("#job-panel")
    assert "Not started yet." not in text and "No output yet." not in text
    page.click(node("build"))  # a job that ran shows both again
    page.wait_for_selector("#job-panel .attempts tr.attempt")
    assert page.is_visible("#job-panel .job-run")

    client.submit_dag("svc-stop", [TitanJob("api", cluster.script("serves.py", SERVES),
                                            job_type="SERVICE", readiness="http:/health")])
    deadline = time.time() + 60
    while (job := client.get_job("svc-stop/api"))["state"] != "RUNNING":
        assert time.time() < deadline, job
        time.sleep(0.1)
    cluster.api("POST", f"/jobs/{job['id']}/stop")
    while (job := client.get_job("svc-stop/api"))["state"] != "COMPLETED":
        assert time.time() < deadline, job
        time.sleep(0.1)
    for where, path in (("page", f"/jobs/{job['id']}"), ("panel", f"/dags/DAG-svc-stop#job={job['id']}")):
        page.goto(dash.url(path))
        page.wait_for_selector('#job-panel[data-state="COMPLETED"] .service-line')
        line = page.inner_text("#job-panel .service-line").strip()
        assert line.startswith("restarts") and "readiness HTTP GET /health" in line, (where, line)


def test_an_ended_over_budget_run_speaks_of_its_hold_in_the_past(cluster: Cluster,
                                                                 dash: Dashboard,
                                                                 page: Any) -> None:
    # Ended, it still said its further calls "are refused and its jobs are held until an
    # operator raises the budget"; and one action read "1 actions".
    cluster.api("POST", "/runs", {"id": "spent-run", "agent_id": "spender", "budget_usd": 0.01})
    cluster.api("POST", "/runs/spent-run/actions", {"actions": [
        {"id": "s1", "name": "call_llm", "channel": "llm", "model": "gpt-4o",
         "started_at": time.time(), "cost_usd": 0.5}]})
    assert cluster.api("GET", "/runs/spent-run")["blocked"] is True
    page.goto(dash.url("/runs/spent-run"))
    box = page.wait_for_selector(".over-budget-warning")
    assert "further LLM calls are refused and its jobs are held until an operator" in \
        box.inner_text()
    page.wait_for_function("() => document.getElementById('action-count').textContent"
                           " === '1 action'")

    # It ends while the page is open: the notice counts it right, and the box says it was.
    cluster.api("PATCH", "/runs/spent-run", {"status": "completed"})
    page.wait_for_selector('#run-notice:not([hidden])')
    assert page.inner_text("#run-notice").startswith("This run completed — 1 action, ")
    page.reload()
    said = page.inner_text(".over-budget-warning")
    assert "are refused" not in said and "raises the budget" not in said
    assert "Until it ended, its further LLM calls were refused and its jobs held." in said
    assert page.inner_text("#action-count") == "1 action"


def test_the_explorers_links_to_missing_things_say_what_is_missing(cluster: Cluster,
                                                                   dash: Dashboard,
                                                                   page: Any) -> None:
    # ?task=<task>&run=<no such run> said "could not be loaded: open its page for the reason"
    # while the master had answered 404 with the reason itself.
    cluster.api("PUT", "/evaluations/links-eval", {
        "agent": {"name": "links-agent", "version": "1", "kind": "http",
                  "url": "https://example.com/agent", "tools": []},
        "tasks": [{"id": "crash-1", "user_instruction": "hello"}]})
    page.goto(dash.url("/evaluations/links-eval?task=crash-1&run=bogus"))
    failed = page.wait_for_selector("#task-modal[open] #eval-task.error-box")
    assert failed.inner_text() == \
        "This task could not be loaded: task 'crash-1' has no run 'bogus'"
    # A task the workflow does not have: the modal stays shut, and a notice names it.
    page.goto(dash.url("/evaluations/links-eval?task=no-such-task"))
    page.wait_for_selector("#toast:not([hidden])")
    assert page.inner_text("#toast") == "No task no-such-task in this workflow"
    assert page.evaluate("document.getElementById('task-modal').open") is False
    assert "task=" not in page.url


RLO = "\u202e"


def test_direction_controls_in_names_show_as_marks_and_reorder_nothing(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # An agent named 'pay \u202eevil' read "pay live" on Runs, the Ledger and its own page;
    # an instruction holding U+202E flipped the rest of its cell in the Data Explorer.
    agent, shown = f"pay {RLO}evil", "pay [U+202E]evil"
    cluster.api("POST", "/runs", {"id": "bidi-run", "agent_id": agent})
    cluster.api("PUT", "/evaluations/bidi-eval", {
        "agent": {"name": "bidi-agent", "version": "1", "kind": "http",
                  "url": "https://example.com/agent", "tools": []},
        "tasks": [{"id": "bidi-1", "user_instruction": f"refund {RLO}order 42"}]})

    page.goto(dash.url("/runs?q=bidi-run"))
    link = page.locator('.run-card[data-run-id="bidi-run"] a.agent-link')
    link.wait_for()
    assert link.text_content() == shown and link.get_attribute("title") == shown
    # Asked of the card as it is now: the page may re-render it live (the run's event), and a
    # detached element has no computed style.
    page.wait_for_function("""() => {
        const e = document.querySelector('.run-card[data-run-id="bidi-run"] a.agent-link');
        return e && getComputedStyle(e).unicodeBidi === "isolate";
    }""")
    link.click()  # its address still names the agent itself
    page.wait_for_selector('body[data-page="agent"]', state="attached")
    assert shown in page.inner_text("main") and RLO not in page.inner_text("main")

    # Text a page's script puts in later: an action recorded while the run page is open.
    page.goto(dash.url("/runs/bidi-run"))
    page.wait_for_selector("#run-summary")
    cluster.api("POST", "/runs/bidi-run/actions", {"actions": [
        {"id": "b1", "name": f"send {RLO}money", "started_at": time.time()}]})
    row = page.wait_for_selector(".action-row")
    assert "send [U+202E]money" in row.inner_text() and RLO not in row.inner_text()

    # A form keeps what was asked exactly (a filter sent back must match).
    page.goto(dash.url("/ledger?agent=" + agent.replace(" ", "%20")))
    cell = page.wait_for_selector('.ledger-row[data-run-id="bidi-run"] td.agent')
    assert cell.inner_text() == shown
    assert page.input_value('input[name="agent"]') == agent

    page.goto(dash.url("/evaluations/bidi-eval"))
    sub = page.wait_for_selector('tr[data-task-id="bidi-1"] .task .sub')
    assert sub.inner_text() == "refund [U+202E]order 42"
    assert sub.get_attribute("title") == "refund [U+202E]order 42"


@pytest.mark.parametrize("agent", ["..", "."])
def test_an_agent_named_with_dots_has_a_page_its_links_reach(cluster: Cluster, dash: Dashboard,
                                                            page: Any, agent: str) -> None:
    # /agents/.. is resolved by the browser to / (the Cluster page), and so is /agents/%2E%2E
    # (the URL standard reads %2E as a dot in a path): a QA pass clicked such an agent's
    # link on the Runs page and the Activity Ledger and landed elsewhere.
    run_id = "dots-run-" + str(len(agent))
    cluster.api("POST", "/runs", {"id": run_id, "agent_id": agent})
    cluster.api("POST", f"/runs/{run_id}/actions", {"actions": [
        {"id": "d1", "name": "step", "actor": "main", "started_at": time.time(),
         "outcome": "success"}]})
    for start, link in ((f"/runs?q={run_id}", f'.run-card[data-run-id="{run_id}"] a.agent-link'),
                        (f"/ledger?run={run_id}", ".ledger-row td.agent a")):
        page.goto(dash.url(start))
        page.click(link)
        page.wait_for_selector('body[data-page="agent"]', state="attached")
        assert page.inner_text("h1.agent-id") == agent
        assert page.get_attribute("body", "data-agent-id") == agent
        assert page.eval_on_selector_all(".run-card", "els => els.map(e => e.dataset.runId)") \
            == [run_id]
    twin = page.evaluate("async () => (await fetch(location.pathname + '.json' + "
                         "location.search)).json()")
    assert twin["agent"]["agent_id"] == agent
