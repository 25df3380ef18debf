"""The Evaluations pages in real Chromium against a real `titan up`: the Data Explorer, a
failed run's chip, the Agent Trace tab of a task (header, judge card, seed panel, timeline
with source badges and the ledger's State/Changes views), the completion warning, Re-run
with the run picker and live polling, the multi-agent card and a coding run's diff and
scorers.

The example support agent (examples/eval_agent) runs as Titan jobs; the simulator and the
judge talk to a scripted hosted model (tests/fake_llm_api.py), as in
tests/integration/test_evaluations.py. Every wait is on the DOM contract, never a sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser.conftest import Dashboard, start_cluster
from tests.browser.test_dashboard import check_common, wait_count
from tests.conftest import free_port
from tests.eval_world import scripted_world
from tests.fake_llm_api import FakeLLMServer, serve
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "eval_agent"
FAIL_MODE = "refused_valid_task"
# Text that would run script if a page ever used innerHTML (or skipped escaping) with it.
HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    with serve() as api:
        # The judge fails the shipped-order task: the explorer has a FAIL and its mode.
        api.responder = scripted_world(failing=("A-1003",), failure_mode=FAIL_MODE)
        yield api


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, browser: Any,
            fake_llm: FakeLLMServer) -> Iterator[Cluster]:
    """This module's `titan up`, its simulator and judge on the scripted model."""
    c = start_cluster(tmp_path_factory.mktemp("evals-browser"), slots=4, env={
        "TITAN_LLM_API_BASE": fake_llm.url, "OPENAI_API_KEY": "test-key",
        "TITAN_EVAL_SIMULATOR_MODEL": "openai/simulator",
        "TITAN_EVAL_JUDGE_MODEL": "openai/judge",
        "TITAN_EGRESS_ALLOW": "127.0.0.1"})  # its agents listen on loopback
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def evaluated(cluster: Cluster) -> dict[str, Any]:
    """Four evaluations, run to the end: the example's five tasks, an HTTP agent nobody
    listens for (agent_unreachable), the agent as a team (multi-agent card), and the coding
    example (diff and scorers)."""
    client = cluster.client()
    assert client.create_evaluation_from(EXAMPLE / "evaluation.yaml")["tasks_added"] == 5
    client.create_evaluation("dead-agent", {"name": "remote-bot", "version": "2.1",
                                            "kind": "http",
                                            "url": f"http://127.0.0.1:{free_port()}/agent"},
                             [{"id": "hello", "user_instruction": "Hello?",
                               "behavior_instructions": HOSTILE}], base=EXAMPLE)
    spec = yaml.safe_load((EXAMPLE / "evaluation.yaml").read_text())
    client.create_evaluation("support-team", spec["agent"] | {"args": ["--team"], "topology": {
        "nodes": [{"id": "lookup", "tools": ["get_order"]},
                  {"id": "billing", "tools": ["cancel_order"]}, {"id": "audit", "tools": []}]}},
        [{"id": "cancel", "user_instruction": "Please cancel my order A-1002.",
          "initial_state": {"order": {"A-1002": {"status": "processing", "total": 19.0}}}},
         # No order named: the agent asks which, calling no tool it declared (the warning).
         {"id": "vague", "user_instruction": "Where is my order?"}],
        base=EXAMPLE)
    client.create_evaluation_from(EXAMPLE / "coding_evaluation.yaml")
    session = yaml.safe_load((EXAMPLE / "session_evaluation.yaml").read_text())
    client.create_evaluation("calc-session", session["agent"] | {"criteria": [
        {"type": "llm_judge", "name": "names the change", "prompt": "Does it say what changed?",
         "scale": "pass_fail"}]}, session["tasks"], base=EXAMPLE)
    names = ("support-bot", "dead-agent", "support-team", "calc-fixer", "calc-session")
    for name in names:
        client.run_evaluation(name)
    return {name: client.wait_evaluation(name, timeout=180) for name in names}


def open_task(page: Any, dash: Dashboard, evaluation: str, task: str) -> None:
    page.goto(dash.url(f"/evaluations/{evaluation}/tasks/{task}"))
    check_common(page, "eval_task")
    page.wait_for_selector("#trace-header")


# -- the list and the Data Explorer ----------------------------------------------------------


def test_explorer_lists_tasks_with_verdicts_chips_and_columns(evaluated: dict[str, Any],
                                                              dash: Dashboard, page: Any,
                                                              artifacts: Path) -> None:
    page.goto(dash.url("/evaluations"))
    check_common(page, "evaluations")
    assert page.inner_text('.nav a[aria-current="page"]') == "Evaluations"
    assert wait_count(page, "#evaluations-table tr.eval-list-row", 5) == 5
    page.click('a.eval-link:text-is("support-bot")')
    check_common(page, "evaluation")
    assert page.url.endswith("/evaluations/support-bot")
    assert wait_count(page, "#eval-table tr.eval-row", 5) == 5
    rows = page.eval_on_selector_all("#eval-table tr.eval-row", """els => els.map(e => [
        e.dataset.taskId, e.dataset.status, e.dataset.verdict])""")
    assert rows == [["status-check", "completed", "PASS"],
                    ["cancel-processing", "completed", "PASS"],
                    ["cancel-shipped", "completed", "FAIL"],
                    ["lookup-outage", "completed", "PASS"],
                    ["other-customer", "completed", "PASS"]]
    cancel = '#eval-table tr[data-task-id="cancel-processing"]'
    assert "support-bot" in page.inner_text(f"{cancel} td.agent")
    assert "v1.0" in page.inner_text(f"{cancel} td.agent")
    assert page.inner_text(f"{cancel} .tool-calls") == "2"
    assert "odyssey 2" in page.get_attribute(f"{cancel} .tool-calls", "title")
    assert "judge" in page.get_attribute(f"{cancel} .cost", "title")
    behavior = page.inner_text(f"{cancel} td.behavior")  # truncated, in full on hover
    assert behavior.startswith("cancel_order sets") and behavior.endswith("...")
    assert "refund_issued" in page.get_attribute(f"{cancel} td.behavior", "title")
    shipped = '#eval-table tr[data-task-id="cancel-shipped"]'
    assert page.inner_text(f"{shipped} .failure-snippet") == FAIL_MODE
    # The optional columns are hidden until the column menu shows them.
    assert not page.is_visible(f"{shipped} td.col-failure-mode")
    page.click("#eval-columns summary")
    page.check('#eval-columns input[data-col="failure-mode"]')
    page.check('#eval-columns input[data-col="violations"]')
    assert page.inner_text(f"{shipped} td.col-failure-mode") == FAIL_MODE
    assert page.inner_text(f"{cancel} td.col-violations") == "0"
    page.uncheck('#eval-columns input[data-col="failure-mode"]')
    assert not page.is_visible(f"{shipped} td.col-failure-mode")
    page.click("#eval-columns summary")
    page.screenshot(path=str(artifacts / "eval-explorer.png"), full_page=True)

    # A failed run: its failure-mode chip, with the one-liner on hover.
    page.goto(dash.url("/evaluations/dead-agent"))
    check_common(page, "evaluation")
    chip = '#eval-table tr[data-task-id="hello"] .chip'
    page.hover(chip)
    assert page.inner_text(chip) == "unreachable"
    assert "chip-danger" in page.get_attribute(chip, "class")
    assert "could not connect" in page.get_attribute(chip, "title")
    assert page.get_attribute('#eval-table tr[data-task-id="hello"]', "data-status") == "failed"
    assert page.inner_text('#eval-table tr[data-task-id="hello"] .verdict') == "PENDING"
    assert page.get_attribute('#eval-table tr[data-task-id="hello"] td.behavior', "title") \
        == HOSTILE
    page.click('#eval-table tr[data-task-id="hello"] td.behavior')  # the row's task modal
    page.wait_for_selector("#task-modal[open] #trace-header")
    assert page.inner_text("#judge-card .verdict") == "NOT APPLICABLE"
    assert "could not connect" in page.inner_text(".run-error")
    assert page.inner_text("#trace-header .chip") == "unreachable"
    page.click("#seed-panel > summary")
    assert page.inner_text("#seed-panel .seed-behavior") == HOSTILE
    assert page.evaluate("window.__xss === undefined")
    page.screenshot(path=str(artifacts / "eval-failed-run.png"), full_page=False)


# -- the Agent Trace tab ---------------------------------------------------------------------


def test_agent_trace_of_a_cancellation(evaluated: dict[str, Any], dash: Dashboard, page: Any,
                                       artifacts: Path) -> None:
    page.goto(dash.url("/evaluations/support-bot"))
    check_common(page, "evaluation")
    page.click('#eval-table tr[data-task-id="cancel-processing"] a.trace-link')  # its page
    page.wait_for_selector("#trace-header")
    assert "/evaluations/support-bot/tasks/cancel-processing" in page.url
    assert page.get_attribute("#tab-trace", "aria-selected") == "true"
    # Top to bottom: header, judge card, seed panel, timeline, debug (no picker, no card).
    order = page.eval_on_selector_all(
        "#panel-trace > *", "els => els.map(e => e.id).filter(Boolean)")
    assert order == ["trace-header", "judge-card", "seed-panel", "timeline", "debug-panel"]
    header = page.inner_text("#trace-header")
    assert "support-bot" in header and "completed" in header and "PASS" in header
    assert page.is_visible("#rerun")
    assert page.get_attribute("#judge-card", "data-verdict") == "PASS"
    assert "Step 1 returned the order" in page.inner_text("#judge-card .judge-reasoning")
    assert page.inner_text('#judge-card .score[data-axis="task_completion"] b') == "5"
    assert not page.is_visible("#seed-panel .seed-user")
    page.click("#seed-panel > summary")
    assert "cancel my order A-1002" in page.inner_text("#seed-panel .seed-user")
    assert "refund_issued" in page.inner_text("#seed-panel .seed-behavior")

    tools = page.eval_on_selector_all("#timeline .tool-row", """els => els.map(e => [
        e.dataset.tool, e.dataset.source, e.querySelector('.source').textContent,
        getComputedStyle(e.querySelector('.source')).backgroundColor])""")
    # Seed 003: source and badge are both "odyssey", drawn in the simulated calls' colour.
    assert [t[:3] for t in tools] == [["get_order", "odyssey", "odyssey"],
                                      ["cancel_order", "odyssey", "odyssey"]]
    plain = page.evaluate("""() => { const b = document.createElement('span');
        b.className = 'badge'; document.body.append(b);
        const c = getComputedStyle(b).backgroundColor; b.remove(); return c; }""")
    assert tools[0][3] != plain, "the odyssey badge lost its colour"
    row = '#timeline .tool-row[data-tool="cancel_order"]'
    assert not page.is_visible(f"{row} .ledger")
    page.click(f"{row} > summary")
    assert '"reason": "customer request"' in page.inner_text(f"{row} .tool-args")
    assert '"status": "cancelled"' in page.inner_text(f"{row} .tool-response")
    state = page.inner_text(f"{row} .ledger-state")
    assert "A-1002" in state and "status=cancelled" in state.replace('"', "")
    assert "refund_issued" in page.inner_text(f"{row} .ledger-flags")
    assert not page.is_visible(f"{row} .ledger-changes")
    page.click(f'{row} .ledger-view[data-view="changes"]')
    assert not page.is_visible(f"{row} .ledger-state")
    ops = page.eval_on_selector_all(f"{row} .ledger-changes .op", "els => els.map(e => e.dataset.op)")
    assert ops == ["update", "set_flag"]
    assert page.get_attribute(f'{row} .ledger-view[data-view="changes"]', "aria-pressed") == "true"
    page.click(f'{row} .ledger-view[data-view="state"]')
    assert page.is_visible(f"{row} .ledger-state")
    assert "cancelled" in page.inner_text("#timeline .final-text")
    assert not page.is_visible("#debug-panel .raw-response")
    page.click("#debug-panel > summary")
    assert "final_response" in page.inner_text("#debug-panel .raw-response")
    page.screenshot(path=str(artifacts / "eval-trace.png"), full_page=True)

    # The Task tab: the seed and the task's runs.
    page.click("#tab-task")
    assert page.is_visible("#panel-task") and not page.is_visible("#panel-trace")
    assert page.url.endswith("#task")
    assert page.eval_on_selector_all("#panel-task .task-runs tbody tr", "els => els.length") == 1



def test_a_phone_reads_the_trace_without_scrolling_sideways(evaluated: dict[str, Any],
                                                            dash: Dashboard, page: Any) -> None:
    # QA: at 375 px a tool call's row pushed its latency past the page (459 px wide), and an
    # unfolded row's world ledger kept 320 px inside a narrower box.
    page.set_viewport_size({"width": 375, "height": 800})
    open_task(page, dash, "support-bot", "cancel-processing")
    row = '#timeline .tool-row[data-tool="cancel_order"]'
    page.click(f"{row} > summary")
    page.wait_for_selector(f"{row} .ledger-state")
    wide = page.evaluate("() => [document.documentElement.scrollWidth, [...document."
                         "querySelectorAll('main *')].filter(e => e.getBoundingClientRect()"
                         ".right > 376).slice(0, 4).map(e => e.className)]")
    assert wide[0] <= 375, wide
    assert page.locator(f"{row} .tl-latency").is_visible()

def test_completion_warning_and_an_injected_failure(evaluated: dict[str, Any], dash: Dashboard,
                                                    page: Any) -> None:
    open_task(page, dash, "support-team", "vague")
    warning = page.inner_text("#completion-warning")
    assert "no tool calls" in warning
    assert page.eval_on_selector_all("#timeline .tool-row", "els => els.length") == 0
    # A refusal the task expects makes no call by design: no warning that the proxy failed.
    open_task(page, dash, "support-bot", "other-customer")
    assert not page.is_visible("#completion-warning")
    open_task(page, dash, "support-bot", "lookup-outage")
    assert not page.is_visible("#completion-warning")
    row = "#timeline .tool-row"
    assert page.get_attribute(row, "data-source") == "injected"
    assert page.inner_text(f"{row} .source") == "injected"
    page.click(f"{row} > summary")
    assert "injected failure" in page.inner_text(f"{row} .tool-error")
    assert "order service unavailable" in page.inner_text(f"{row} .tool-response")


def test_rerun_joins_the_run_picker_and_polls_until_terminal(evaluated: dict[str, Any],
                                                             dash: Dashboard, page: Any,
                                                             artifacts: Path) -> None:
    open_task(page, dash, "support-bot", "status-check")
    assert page.query_selector("#run-picker") is None
    first = page.get_attribute("#trace-header", "data-run-id")
    page.click("#rerun")
    # The new run is shown, and joins the picker, with no reload: the page re-reads itself.
    assert wait_count(page, "#run-picker .run-option", 2) == 2
    # The address names the new run at once; the picker marks it once that run is read (the
    # live feed may redraw the picker with two runs before): wait for both to agree.
    page.wait_for_function("""() => {
        const run = new URLSearchParams(location.search).get('run');
        const on = document.querySelector('#run-picker .run-option[aria-current="true"]');
        return run && on && on.dataset.runId === run;
    }""")
    current = page.get_attribute('#run-picker .run-option[aria-current="true"]', "data-run-id")
    assert current != first
    assert page.eval_on_selector_all("#run-picker .run-option", "els => els.map(e => e.dataset.runId)") \
        == [current, first]
    # Back returns to the run shown before (dashboard.md). The page was opened at its plain
    # address, "the latest run": Back went there, and the latest was now the re-run.
    page.go_back()
    page.wait_for_selector(f'#trace-header[data-run-id="{first}"]')
    assert page.evaluate("new URLSearchParams(location.search).get('run')") == first
    page.go_forward()
    page.wait_for_selector(f'#trace-header[data-run-id="{current}"]')
    # Polling (every 3 s) stops once the run is terminal, with its verdict.
    page.wait_for_selector('#eval-task[data-live="false"] #trace-header[data-status="completed"]',
                           state="attached", timeout=90_000)
    assert "re-run of " + first in page.inner_text("#trace-header")
    page.wait_for_selector('#judge-card[data-verdict="PASS"]')
    page.screenshot(path=str(artifacts / "eval-rerun.png"), full_page=False)
    # The picker goes back to the original run.
    page.click(f'#run-picker .run-option[data-run-id="{first}"]')
    page.wait_for_selector(f'#trace-header[data-run-id="{first}"]')
    assert page.get_attribute('#run-picker .run-option[aria-current="true"]', "data-run-id") == first


def test_multi_agent_card(evaluated: dict[str, Any], dash: Dashboard, page: Any,
                          artifacts: Path) -> None:
    open_task(page, dash, "support-team", "cancel")
    card = "#agent-structure"
    assert page.is_visible(card)
    assert "declared topology" in page.inner_text(f"{card} .card-head")
    assert page.inner_text(f'{card} .structure-stats li[data-key="handoffs"] b') == "2"
    assert page.inner_text(f'{card} .structure-stats li[data-key="sub_agents"] b') == "3"
    roster = page.inner_text(f"{card} .roster")
    rows = [line.split("\t") for line in roster.splitlines()[1:]]
    assert [(r[0], r[-1]) for r in rows] == [
        ("(root)", "observed"), ("audit", "declared"), ("billing", "declared+observed"),
        ("lookup", "declared+observed")]
    assert "audit" in page.inner_text(f"{card} .divergence")
    handoffs = page.eval_on_selector_all(f"{card} .handoff b", "els => els.map(e => e.textContent)")
    assert handoffs == ["lookup", "billing"]
    kinds = page.eval_on_selector_all("#timeline .tl-row", "els => els.map(e => e.className)")
    assert [k.split()[1] for k in kinds] == ["messages-row", "event-row", "tool-row", "event-row",
                                             "tool-row"]
    page.screenshot(path=str(artifacts / "eval-team.png"), full_page=True)


def test_coding_run_shows_its_diff_and_scorers(evaluated: dict[str, Any], dash: Dashboard,
                                               page: Any, artifacts: Path) -> None:
    open_task(page, dash, "calc-fixer", "fix-add")
    assert page.query_selector("#workspace-eval-error") is None
    removed = page.eval_on_selector_all("#final-diff .dl-del", "els => els.map(e => e.textContent)")
    added = page.eval_on_selector_all("#final-diff .dl-add", "els => els.map(e => e.textContent)")
    assert "-    return a - b" in removed and "+    return a + b" in added
    assert page.evaluate("getComputedStyle(document.querySelector('#final-diff .dl-add'))"
                         ".backgroundColor") != page.evaluate(
        "getComputedStyle(document.querySelector('#final-diff .dl-del')).backgroundColor")
    assert "setup.log" not in page.inner_text("#final-diff")
    scorers = page.eval_on_selector_all("#scorers .scorer", "els => els.map(e => e.dataset.verdict)")
    assert scorers == ["PASS", "PASS", "PASS"]
    assert page.inner_text("#scorers .overall .verdict") == "PASS"
    commands = page.inner_text("#coding-trajectory")
    assert "python test_calc.py" in commands
    page.screenshot(path=str(artifacts / "eval-coding.png"), full_page=True)


def test_a_session_shows_each_turn_the_cumulative_diff_and_its_criteria(
        evaluated: dict[str, Any], dash: Dashboard, page: Any, artifacts: Path) -> None:
    open_task(page, dash, "calc-session", "fix-then-extend")
    assert page.get_attribute("#session", "data-turns") == "2"
    turns = page.eval_on_selector_all("#session .session-turn .turn-instruction",
                                      "els => els.map(e => e.textContent)")
    assert turns[0].startswith("add() in calc.py returns the wrong result")
    assert turns[1].startswith("Now add a sub(a, b) function")
    # The last turn is open; the first opens on a click, each with its own diff.
    assert "+def sub(a, b):" in page.inner_text('#session .session-turn[data-turn="2"] .diff')
    first = '#session .session-turn[data-turn="1"]'
    assert not page.is_visible(f"{first} .diff")
    page.click(f"{first} > summary")
    assert "+    return a + b" in page.inner_text(f"{first} .diff")
    assert "sub(" not in page.inner_text(f"{first} .diff")
    assert "cumulative diff" in page.inner_text("#final-diff h3").lower()
    cumulative = page.inner_text("#final-diff")
    assert "+    return a + b" in cumulative and "+def sub(a, b):" in cumulative
    assert "session scorers" in page.inner_text("#scorers h3").lower()
    assert page.inner_text("#scorers .overall .verdict") == "PASS"
    # The workflow's llm_judge criterion, apart from the judge's fixed rubric.
    criterion = '#criteria-card .criterion[data-name="names the change"]'
    assert page.get_attribute(criterion, "data-verdict") == "PASS"
    page.click(f"{criterion} > summary")
    assert page.inner_text(f"{criterion} .criterion-reasoning") == "The reply names the order."
    page.screenshot(path=str(artifacts / "eval-session.png"), full_page=True)


def test_json_twins_are_the_apis_views(evaluated: dict[str, Any], cluster: Cluster) -> None:
    import httpx

    with httpx.Client(base_url=cluster.url, timeout=30, headers={
            "Authorization": f"Bearer {cluster.admin_token}"}) as http:
        listed = http.get("/evaluations.json").json()["evaluations"]
        assert {e["id"] for e in listed} >= {"support-bot", "dead-agent", "calc-fixer"}
        explorer = http.get("/evaluations/dead-agent.json").json()
        assert explorer.pop("polling") is False  # the API's view, plus whether to poll
        assert explorer.pop("links")["api"] == "/api/v1/evaluations/dead-agent"  # and where
        pager = {k: explorer.pop(k) for k in ("total", "limit", "offset", "range", "past_end",
                                              "last_offset", "prev_offset", "next_offset")}
        assert pager["total"] == len(explorer["tasks"]) and pager["offset"] == 0  # one page
        assert explorer == cluster.api("GET", "/evaluations/dead-agent")
        row = explorer["tasks"][0]
        twin = http.get("/evaluations/dead-agent/tasks/hello.json").json()
        assert twin["run_id"] == row["run"]["id"] and twin["task"]["run_count"] == 1
        assert twin["polling"] is False and twin["judging"] is False
        assert twin["trace"] == cluster.api(
            "GET", f"/evaluations/dead-agent/tasks/hello/runs/{row['run']['id']}")
        assert http.get("/evaluations/dead-agent/tasks/hello.json",
                        params={"run": "nope"}).status_code == 404
        assert http.get("/evaluations/nope.json").status_code == 404
        assert http.get("/evaluations/dead-agent/tasks/nope").status_code == 404
        assert http.get("/evaluations.json", headers={"Authorization": ""}).status_code == 401


# -- what a live cluster rarely shows: rendered from a hand-made trace ------------------------


def test_trace_template_edge_cases_render_escaped() -> None:
    """A coding run whose grading failed (the red banner, no diff panel, an N/A scorer, a
    command with no captured output), a judge that could not score, a refused ledger
    operation and a tombstone — and hostile text everywhere, escaped."""
    from titan.dashboard import pages  # noqa: F401  (registers the filters)
    from titan.dashboard.render import env

    header = {"id": "e.t.1", "status": "completed", "chip": None, "agent": {"name": HOSTILE,
              "version": "1"}, "verdict": "PENDING", "tool_calls": 1,
              "by_source": {"odyssey": 1}, "latency_s": 2.0, "live": False,
              "cost": {"agent_usd": 0.0, "simulator_usd": 0.0, "judge_usd": 0.0,
                       "total_usd": 0.0}, "source_run": None, "error_detail": None}
    seed: dict[str, Any] = {"user_instruction": HOSTILE, "behavior_instructions": None, "initial_state": {},
            "failure_rules": [], "expected_outcome": "completion", "expected_steps": None,
            "kind": "coding"}
    call = {"type": "tool", "seq": 1, "actor": "AGENT/agent", "at": 1.0, "tool": "rm",
            "source": "transport_error", "latency_ms": 5.0, "arguments": {"q": HOSTILE},
            "response": None, "error": HOSTILE, "proxied": True,
            "ops": [{"op": "remove", "type": "order", "id": "A-1"}],
            "violations": [{"op": {"op": "update", "type": "order", "id": "B-2"},
                            "reason": "order 'B-2' does not exist"}],
            "state": {"entities": {}, "flags": {}, "removed": {"order": {"A-1": {"x": 1}}}}}
    trace = {"header": header, "completion_warning": None,
             "judge": {"verdict": "NOT_APPLICABLE", "reasoning": HOSTILE},
             "seed": seed, "structure": None, "timeline": [call], "messages": None,
             "final_response": None, "live": False,
             "runs": [{"id": "e.t.1", "status": "completed", "verdict": "PENDING",
                       "created_at": 1.0, "source_run": None, "redispatch_of": None}],
             "coding": {"diff": "", "changed_paths": [], "overall": None,
                        "scorers": [{"name": "lint", "type": "command", "verdict": "N/A",
                                     "summary": HOSTILE, "detail": None}],
                        "trajectory": [{"kind": "command", "command": "make", "exit_code": 2,
                                        "output": None}],
                        "agent_exit_code": 0, "eval_error": "scorer crashed: " + HOSTILE},
             "debug": {"raw_response": HOSTILE, "soft_warnings": [HOSTILE],
                       "proxy_refusals": 2, "error_detail": None}}
    data = {"evaluation": {"id": "e", "description": None, "agent": {"name": "a"}},
            "task": {"id": "t", "seed": seed, "run_count": 1}, "run_id": "e.t.1",
            "judging": False, "polling": False, "trace": trace,
            "links": {"project": None, "page": "/evaluations/e", "api": "/api/v1/evaluations/e",
                      "runs": "runs"}}
    html = env.get_template("eval_task.html").render(d=data, c={
        "page": "eval_task", "role": "viewer", "user": "v", "can_operate": False,
        "signed_in_by_cookie": False, "csrf": ""})
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss=2&lt;/script&gt;" in html
    assert 'id="workspace-eval-error"' in html and "scorer crashed" in html
    assert 'id="final-diff"' not in html  # no diff: the panel hides itself
    assert 'data-verdict="N/A"' in html and "Output not captured" in html
    assert "NOT APPLICABLE" in html and 'id="rerun"' not in html  # a viewer: no button
    assert 'id="run-picker"' not in html and 'id="agent-structure"' not in html
    assert "transport error" in html and "Refused operations" in html
    assert 'class="grid ledger-entities removed"' in html
    # A judge and simulator on models with no known price: never "$0.0000" (it read free).
    header["cost"] = {"agent_usd": 0.0, "simulator_usd": 0.002, "judge_usd": 0.0,
                      "total_usd": 0.002, "agent_unpriced": 0, "simulator_unpriced": 1,
                      "judge_unpriced": 1, "unpriced_calls": 2}
    trace["judge"] = {"verdict": "PASS", "reasoning": "Step 1 shows it.", "cost_usd": None,
                      "model": "openai/judge"}
    html = env.get_template("eval_task.html").render(d=data, c={
        "page": "eval_task", "role": "viewer", "user": "v", "can_operate": False,
        "signed_in_by_cookie": False, "csrf": ""})
    assert '<span class="judge-cost">unknown</span>' in html
    assert ">≥ $0.0020</span>" in html and "2 LLM calls on a model with no known price" in html
