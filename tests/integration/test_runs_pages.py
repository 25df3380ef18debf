"""The Runs pages and their JSON twins against a real `titan up`: the registry's filters give
the API's runs, critical intercepts, one run, one agent, escaping, 404s and sign-in."""

from __future__ import annotations

import contextlib
import html
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from markupsafe import escape

from tests.integration.harness import Cluster, isolated_cluster, sign_in
from tests.integration.test_dashboard_pages import bearer
from titan import TitanJob

HOSTILE_AGENT = "<script>alert('agent')</script>"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_ACTOR = "<b>PLAN</b>/job"
HOSTILE_ERROR = "<script>alert('error')</script> went wrong"
STAGED = "STAGED_ab12cd"


def action(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"a{i}", "name": "call_llm", "actor": "main", "channel": "llm",
            "started_at": time.time(), "duration_ns": 523_000_000 + i,
            "inputs": {"prompt": f"What is {i}+{i}?", "model": "gpt-4o"},
            "outputs": {"response": f"{2 * i}", "tokens": 15}, "outcome": "success",
            "cost_usd": 0.0008, **kw}


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Runs of three agents: completed, failed, over budget, running (with hostile names),
    and one started three days ago."""
    c = isolated_cluster(tmp_path_factory.mktemp("runs-pages"), slots=1)
    try:
        c.api("POST", "/runs", {"id": "rp-old", "agent_id": "researcher",
                                "started_at": time.time() - 3 * 86400})
        c.api("PATCH", "/runs/rp-old", {"status": "completed"})
        c.api("POST", "/runs", {"id": "rp-ok", "agent_id": "researcher", "tags": ["nightly"]})
        c.api("POST", "/runs/rp-ok/actions", {"actions": [action(i) for i in range(5)]})
        c.api("PATCH", "/runs/rp-ok", {"status": "completed"})
        c.api("POST", "/runs", {"id": "rp-fail", "agent_id": "researcher"})
        c.api("POST", "/runs/rp-fail/actions", {"actions": [
            action(0), action(1, outcome="error", outputs=None, cost_usd=0.002,
                              error={"type": "RateLimit", "message": "429 from the provider"})]})
        c.api("PATCH", "/runs/rp-fail", {"status": "failed", "error": HOSTILE_ERROR})
        c.api("POST", "/runs", {"id": "rp-over", "agent_id": "spender", "budget_usd": 0.01})
        c.api("POST", "/runs/rp-over/actions", {"actions": [action(0, cost_usd=0.05)]})
        c.api("POST", "/runs", {"id": "rp-live", "agent_id": HOSTILE_AGENT})
        c.api("POST", "/runs/rp-live/actions", {"actions": [
            action(0, name=HOSTILE_NAME, actor=HOSTILE_ACTOR)]})
        # A run whose stages are Titan DAGs (agent_run_id), its actions made by their jobs.
        client, ok = c.client(), c.script("ok.py", "print('ok')\n")
        for label in ("PLAN", "ITER1"):
            client.submit_dag(f"{STAGED}_{label}", [TitanJob(label.lower(), ok)],
                              agent_run_id=STAGED)
            client.wait_dag(f"{STAGED}_{label}", timeout=60)
        c.api("POST", f"/runs/{STAGED}/actions", {"actions": [
            action(0, actor="PLAN/plan", cost_usd=0.01), action(1, actor="ITER1/iter1"),
            action(2, actor="ITER1/iter1")]})
        yield c
    finally:
        c.stop()


@contextlib.contextmanager
def signed_in(cl: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        sign_in(s, cl.admin_token)
        yield s


def card_ids(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'class="run-card" data-run-id="([^"]*)"', page)]


PAGES = {"/runs": "runs", "/runs/rp-ok": "run", "/agents/researcher": "agent"}


def test_pages_and_twins_with_cookie_and_bearer(cl: Cluster) -> None:
    for way in (signed_in, bearer):
        with way(cl) as s:
            for path, name in PAGES.items():
                r = s.get(path)
                assert r.status_code == 200, (path, r.text[:300])
                assert f'<body data-page="{name}"' in r.text
                assert "script-src 'self'" in r.headers["content-security-policy"]
                assert '<a href="/runs" aria-current="page">Runs</a>' in r.text
                twin = s.get(path + ".json")
                assert twin.status_code == 200 and isinstance(twin.json(), dict), path
    with bearer(cl) as s:
        page = s.get("/runs/rp-ok").text
    assert '<body data-page="run" data-run-id="rp-ok">' in page
    assert 'id="tab-telemetry"' in page and 'id="action-search"' in page
    assert 'id="outcome-filter"' in page and 'id="expand-all"' in page and 'id="inspector"' in page


def test_sign_in_redirects_and_twins_answer_401(cl: Cluster) -> None:
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        for path in PAGES:
            r = s.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"] == "/login?next=" + quote(path, safe="")
            r = s.get(path + ".json")
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("params", [
    {}, {"status": "failed"}, {"status": "running,completed"}, {"min_cost": "0.004"},
    {"window": "24h"}, {"window": "7d", "status": "completed"}, {"agent": "researcher"},
    {"q": "fail"}, {"agent": "spender", "min_cost": "0.01"}, {"limit": "2", "offset": "1"},
    {"sort": "cost"}, {"sort": "duration", "status": "completed,failed"},
    {"sort": "oldest", "limit": "3", "offset": "2"},
])
def test_registry_filters_give_the_apis_runs(cl: Cluster, params: dict[str, str]) -> None:
    with bearer(cl) as s:
        api = s.get("/api/v1/runs", params=params).json()
        twin = s.get("/runs.json", params=params).json()
        page = s.get("/runs", params=params).text
    expected = [r["id"] for r in api["runs"]]
    assert [r["id"] for r in twin["runs"]] == expected
    assert twin["total"] == api["total"]
    assert card_ids(page) == expected
    ticking = ("duration_s",)  # a running run's duration grows between the two reads
    assert [{k: v for k, v in r.items() if k not in ticking} for r in twin["runs"]] == [
        {k: v for k, v in r.items() if k not in ticking} for r in api["runs"]]


def test_registry_form_checkboxes_and_defaults(cl: Cluster) -> None:
    with bearer(cl) as s:
        twin = s.get("/runs.json?status=running&status=completed").json()
        page = s.get("/runs?status=running&status=completed&window=7d").text
        everything = s.get("/runs.json").json()
    api = cl.api("GET", "/runs?status=running,completed")
    assert [r["id"] for r in twin["runs"]] == [r["id"] for r in api["runs"]]
    assert twin["statuses"] == ["running", "completed"]
    assert 'name="status" value="running" checked' in page
    assert 'name="status" value="failed">' in page
    assert '<option value="7d" selected>' in page
    assert "rp-old" in card_ids(page)  # three days old: inside 7d
    assert everything["filters"]["window"] == "all" and everything["total"] == 6
    assert [r["id"] for r in everything["runs"]][-1] == "rp-old"  # most recent first
    assert everything["agent_ids"] == sorted(["researcher", "spender", "STAGED", HOSTILE_AGENT])
    assert '<datalist id="agent-ids">' in page
    # Sorted by cost: highest first, the choice kept in the form and in the export links,
    # whose files list the runs in the page's order (they were newest first whatever it was).
    by_cost = [r["cost_usd"] for r in cl.api("GET", "/runs?sort=cost")["runs"]]
    assert by_cost == sorted(by_cost, reverse=True) and by_cost[0] > by_cost[-1]
    with bearer(cl) as s:
        sorted_page = s.get("/runs?sort=cost").text
        sorted_twin = s.get("/runs.json?sort=cost").json()
    assert '<option value="cost" selected>' in sorted_page
    assert sorted_twin["filters"]["sort"] == "cost"
    assert all("sort=cost" in e["href"] for e in sorted_twin["export"])
    with bearer(cl) as s:
        (jsonl,) = [e["href"] for e in sorted_twin["export"] if e["format"] == "jsonl"]
        exported = [json.loads(line) for line in s.get(jsonl).text.splitlines()]
    assert [r["id"] for r in exported if r["type"] == "run"] == [r["id"] for r in
                                                                 sorted_twin["runs"]]
    assert all("sort=" not in e["href"] for e in everything["export"])  # recent: the default


def test_bad_filters_are_a_400_page(cl: Cluster) -> None:
    with bearer(cl) as s:
        for params in ({"status": "sleeping"}, {"min_cost": "lots"}, {"min_cost": "nan"},
                       {"min_cost": "-1"}, {"window": "5y"},
                       {"limit": "0"}, {"sort": "size"}):
            r = s.get("/runs", params=params)
            assert r.status_code == 400, params
            assert 'class="error-box"' in r.text
            assert s.get("/runs.json", params=params).status_code == 400
        # Numbers in the words a person reads: the offset's bound was 4611686018427387904.
        r = s.get("/runs", params={"offset": "99999999999999999999"})
        assert r.status_code == 400 and "offset must be a whole number from 0 up (no list " \
            "is longer than 2^62), got 99999999999999999999" in html.unescape(r.text)
        r = s.get("/runs.json", params={"limit": "501"})
        assert r.json()["error"]["message"] == "limit must be a whole number from 1 to 500, " \
            "got 501"
        # One run's page filters its actions by ?outcome= as the API does: a value the API
        # refuses is a 400 here too, not every action shown as if it matched.
        run_id = s.get("/runs.json").json()["runs"][0]["id"]
        r = s.get(f"/runs/{run_id}", params={"outcome": "bogus"})
        assert r.status_code == 400 and "outcome must be among" in r.text
        assert s.get(f"/runs/{run_id}", params={"outcome": "error"}).status_code == 200


def test_export_links_carry_the_filters(cl: Cluster) -> None:
    with bearer(cl) as s:
        twin = s.get("/runs.json", params={"status": "failed", "agent": "researcher"}).json()
        links = {e["format"]: e["href"] for e in twin["export"]}
        assert set(links) == {"csv", "json", "jsonl"}
        for fmt, href in links.items():
            assert "status=failed" in href and "agent=researcher" in href
            # Seed 004: the export "includes runs and all actions" unless asked otherwise.
            assert f"format={fmt}" in href and "actions=true" in href
            r = s.get(href)
            assert r.status_code == 200, (href, r.text[:200])
            assert "rp-fail" in r.text and "rp-ok" not in r.text
            assert "429 from the provider" in r.text
        r = s.get(links["jsonl"].replace("actions=true", "actions=false"))
        assert "rp-fail" in r.text and "429 from the provider" not in r.text


def test_the_cli_lists_and_exports_in_a_sort(cl: Cluster) -> None:
    # `titan runs export` had no --sort: a script could not export what the page sorted.
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)

    def titan(*argv: str) -> str:
        done = subprocess.run([sys.executable, "-m", "titan", "runs", *argv], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    want = [r["id"] for r in cl.api("GET", "/runs?sort=cost&limit=1000")["runs"]]
    assert want != [r["id"] for r in cl.api("GET", "/runs?limit=1000")["runs"]]
    lines = titan("export", "--sort", "cost", "--no-actions", "--format", "jsonl").splitlines()
    assert [json.loads(line)["id"] for line in lines] == want
    listed = [line.split()[0] for line in titan("list", "--sort", "cost", "--limit", "1000")
              .splitlines()[1:]]
    assert listed == want
    bad = subprocess.run([sys.executable, "-m", "titan", "runs", "export", "--sort", "size"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "sort must be one of recent, oldest, cost, duration" \
        in bad.stderr, bad.stderr


def test_intercepts_list_failed_and_over_budget_runs(cl: Cluster) -> None:
    with bearer(cl) as s:
        twin = s.get("/runs.json").json()
        page = s.get("/runs").text
    api = cl.api("GET", "/runs/intercepts")
    ids = [r["id"] for r in twin["intercepts"]]
    assert ids == [r["id"] for r in api["intercepts"]]
    assert {"rp-fail", "rp-over"} <= set(ids) and "rp-ok" not in ids
    reasons = {r["id"]: r["reasons"] for r in twin["intercepts"]}
    assert reasons["rp-fail"][0].startswith("failed: ")
    assert reasons["rp-over"][0].startswith("over budget")
    for run_id in ("rp-fail", "rp-over"):
        assert f'<a class="intercept" data-run-id="{run_id}"' in page
        assert f'href="/runs/{run_id}"' in page
    assert str(escape(reasons["rp-fail"][0])) in page


def test_run_page_and_twin_match_the_api(cl: Cluster) -> None:
    with bearer(cl) as s:
        twin = s.get("/runs/rp-fail.json").json()
        page = s.get("/runs/rp-fail").text
    api = cl.api("GET", "/runs/rp-fail")
    run = twin["run"]
    for key in ("id", "agent_id", "status", "action_count", "cost_usd", "error_count",
                "success_rate", "by_actor", "by_channel", "code_version", "error"):
        assert run[key] == api[key], key
    assert twin["action_page"] == 200 and twin["outcomes"] == ["success", "error", "blocked",
                                                               "replayed"]
    assert run["status"] == "failed" and run["action_count"] == 2
    assert 'class="badge run-status status-failed" data-status="failed"' in page
    assert 'data-total="2"' in page  # the telemetry list's size before its first fetch
    assert 'href="/agents/researcher"' in page
    with bearer(cl) as s:
        over = s.get("/runs/rp-over").text
    assert "over-budget-warning" in over and "$0.0500" in over and "$0.0100" in over


def test_agent_page_totals_and_chart(cl: Cluster) -> None:
    with bearer(cl) as s:
        twin = s.get("/agents/researcher.json").json()
        page = s.get("/agents/researcher").text
    api = cl.api("GET", "/agents/researcher")
    agent = twin["agent"]
    for key in ("agent_id", "runs", "cost_usd", "action_count", "success_rate", "failed_runs"):
        assert agent[key] == api[key], key
    assert twin["total_runs"] == 3 and [r["id"] for r in twin["recent"]] == [
        "rp-fail", "rp-ok", "rp-old"]
    assert '<svg id="agent-chart"' in page
    assert page.count('<rect class="bar"') == 3
    assert page.count('<circle class="dot"') == 2  # rp-old recorded no action: no rate
    assert card_ids(page) == ["rp-fail", "rp-ok", "rp-old"]
    for run_id in ("rp-fail", "rp-ok"):
        assert f'href="/runs/{run_id}"' in page


def test_hostile_names_are_escaped(cl: Cluster) -> None:
    with bearer(cl) as s:
        pages = {path: s.get(path).text for path in (
            "/runs", "/runs/rp-live", "/runs/rp-fail", "/agents/" + quote(HOSTILE_AGENT, safe=""))}
        agent = s.get("/agents/" + quote(HOSTILE_AGENT, safe="") + ".json")
    assert agent.status_code == 200 and agent.json()["agent"]["agent_id"] == HOSTILE_AGENT
    for path, text in pages.items():
        for raw in (HOSTILE_AGENT, HOSTILE_NAME, HOSTILE_ACTOR, HOSTILE_ERROR, "<b>PLAN"):
            assert raw not in text, (path, raw)
    assert str(escape(HOSTILE_AGENT)) in pages["/runs"]
    assert 'href="/agents/%3Cscript%3Ealert%28%27agent%27%29%3C%2Fscript%3E"' in pages["/runs"]
    assert str(escape(HOSTILE_ACTOR)) in pages["/runs/rp-live"]  # the cost-per-actor table
    assert str(escape(HOSTILE_ERROR)) in pages["/runs/rp-fail"]


def test_unknown_runs_and_agents_are_404(cl: Cluster) -> None:
    with bearer(cl) as s:
        for path in ("/runs/no-such-run", "/runs/%3Cscript%3Ex", "/agents/nobody"):
            r = s.get(path)
            assert r.status_code == 404, path
            assert "Not found" in r.text and "<script>x" not in r.text
            j = s.get(path + ".json")
            assert j.status_code == 404 and j.json()["error"]["code"] == "not_found"


def test_run_stages_and_cost_per_stage(cl: Cluster) -> None:
    with bearer(cl) as s:
        twin = s.get(f"/runs/{STAGED}.json").json()
        page = s.get(f"/runs/{STAGED}").text
    run = twin["run"]
    assert run["agent_id"] == "STAGED"
    assert [(st["label"], st["status"], st["actions"]) for st in run["stages"]] == [
        ("PLAN", "COMPLETED", 1), ("ITER1", "COMPLETED", 2)]
    assert [(r["stage"], r["actions"]) for r in run["by_stage"]] == [("PLAN", 1), ("ITER1", 2)]
    plan = page.index('<a class="stage" data-label="PLAN" data-status="COMPLETED"')
    arrow = page.index('<span class="arrow" aria-hidden="true">', plan)
    assert plan < arrow < page.index('<a class="stage" data-label="ITER1"')
    assert f'href="/dags/DAG-{STAGED}_PLAN?run=1"' in page
    assert 'id="cost-by-stage"' in page and 'id="cost-by-actor"' in page


def test_a_sub_agent_is_no_stage(cl: Cluster) -> None:
    # A run without stages whose actors are a sub-agent's path (an OTLP span tree, an SDK
    # sub-actor): "support-bot/refunds" showed a stage "support-bot" the run never had.
    cl.api("POST", "/runs", {"id": "rp-subagent", "agent_id": "support-bot"})
    cl.api("POST", "/runs/rp-subagent/actions", {"actions": [
        action(0, actor="support-bot"), action(1, actor="support-bot/refunds")]})
    with bearer(cl) as s:
        run = s.get("/runs/rp-subagent.json").json()["run"]
    assert [(r["stage"], r["actions"]) for r in run["by_stage"]] == [(None, 2)]
    assert {r["actor"] for r in run["by_actor"]} == {"support-bot", "support-bot/refunds"}


def test_more_intercepts_than_shown_are_counted_and_linked(cl: Cluster) -> None:
    # The heading said "Critical intercepts 20" with 42 of them, and linked nothing more.
    for i in range(22):
        cl.api("POST", "/runs", {"id": f"rp-many-{i}", "agent_id": "many-failures"})
        cl.api("PATCH", f"/runs/rp-many-{i}", {"status": "failed", "error": f"boom {i}"})
    total = len(cl.api("GET", "/runs/intercepts?limit=500")["intercepts"])
    assert total >= 22
    few = cl.api("GET", "/runs/intercepts?limit=5")
    assert len(few["intercepts"]) == 5 and few["total"] == total
    with bearer(cl) as s:
        twin = s.get("/runs.json").json()
        page = s.get("/runs").text
    assert len(twin["intercepts"]) == 20 and twin["intercepts_total"] == total
    assert f'Critical intercepts <span class="muted count-note">{total}</span>' in page
    assert "the 20 most recent shown" in page
    assert 'href="/api/v1/runs/intercepts?limit=500"' in page


def test_llm_calls_of_unknown_price_make_the_cost_a_bound(cl: Cluster) -> None:
    # A run on a hosted model in no price list showed $0.0000 everywhere: the API counts
    # those calls, the pages and the CLI say the cost is unknown, or a lower bound.
    unpriced = {"cost_usd": None, "cost_source": "unknown", "model": "acme/private-model"}
    cl.api("POST", "/runs", {"id": "rp-unpriced", "agent_id": "unpriced-agent"})
    cl.api("POST", "/runs/rp-unpriced/actions", {"actions": [action(0, **unpriced)]})
    run = cl.api("GET", "/runs/rp-unpriced")
    assert (run["cost_usd"], run["unpriced_calls"]) == (0.0, 1)
    with bearer(cl) as s:
        page = s.get("/runs/rp-unpriced").text
        registry = s.get("/runs", params={"agent": "unpriced-agent"}).text
    cost = re.search(r'<dd class="cost num" id="run-cost" title="([^"]*)">([^<]*)</dd>', page)
    assert cost is not None and cost.group(2) == "unknown"
    assert "1 LLM call on a model with no known price" in html.unescape(cost.group(1))
    assert re.search(r'<dd class="cost num" title="[^"]+">unknown</dd>', registry)
    # One priced call later: what the priced ones cost, as a lower bound.
    cl.api("POST", "/runs/rp-unpriced/actions", {"actions": [
        action(1), action(2, **unpriced), action(3, channel="tool", cost_usd=None)]})
    run = cl.api("GET", "/runs/rp-unpriced")
    assert (run["cost_usd"], run["unpriced_calls"]) == (0.0008, 2)
    agent = cl.api("GET", "/agents/unpriced-agent")
    assert agent["unpriced_calls"] == 2 and agent["series"][0]["unpriced_calls"] == 2
    with bearer(cl) as s:
        page = s.get("/runs/rp-unpriced").text
        agent_page = s.get("/agents/unpriced-agent").text
    assert ">≥ $0.0008</dd>" in page and ">≥ $0.0008</dd>" in agent_page
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)
    shown = subprocess.run([sys.executable, "-m", "titan", "runs", "show", "rp-unpriced"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert ">=$0.0008 (2 LLM calls on a model with no known price" in shown.stdout
    listed = subprocess.run([sys.executable, "-m", "titan", "runs", "list", "--agent",
                             "unpriced-agent"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and ">=$0.0008" in listed.stdout, listed.stderr
    # In any case, as jobs' and DAGs' states are everywhere else: `--status RUNNING` was
    # refused ("status must be among running, completed, failed, cancelled").
    upper = subprocess.run([sys.executable, "-m", "titan", "runs", "list", "--agent",
                            "unpriced-agent", "--status", "RUNNING,Failed"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert upper.returncode == 0 and "rp-unpriced" in upper.stdout, upper.stderr


def test_the_cost_breakdowns_say_unknown_for_calls_of_unknown_price(cl: Cluster) -> None:
    # The run's cost said "unknown" (an Ollama or vLLM model, priced nowhere) while every row
    # of its breakdowns — each stage, actor and channel, on the page, in `titan runs show`
    # and GET /runs/{id} — said $0.0000.
    run_id = "UNPRICED_ab12cd"
    client = cl.client()
    client.submit_dag(f"{run_id}_PLAN", [TitanJob("plan", cl.script("ok.py", "print('ok')\n"))],
                      agent_run_id=run_id)
    client.wait_dag(f"{run_id}_PLAN", timeout=60)
    unpriced = {"cost_usd": None, "cost_source": "unknown", "model": "openai/llama3"}
    cl.api("POST", f"/runs/{run_id}/actions", {"actions": [
        action(0, actor="PLAN/plan", **unpriced), action(1, actor="PLAN/write"),
        action(2, actor="PLAN/write", **unpriced), action(3, actor="PLAN/tool",
                                                          channel="tool", cost_usd=None)]})
    run = cl.api("GET", f"/runs/{run_id}")
    assert [(r["actor"], r["cost_usd"], r["unpriced_calls"]) for r in run["by_actor"]] == [
        ("PLAN/plan", 0.0, 1), ("PLAN/tool", 0.0, 0), ("PLAN/write", 0.0008, 1)]
    assert [(r["channel"], r["unpriced_calls"]) for r in run["by_channel"]] == [
        ("llm", 2), ("tool", 0)]
    assert [(r["stage"], r["unpriced_calls"]) for r in run["by_stage"]] == [("PLAN", 2)]
    assert [(s["label"], s["unpriced_calls"]) for s in run["stages"]] == [("PLAN", 2)]
    with bearer(cl) as s:
        page = s.get(f"/runs/{run_id}").text
    by_actor = page.split('id="cost-by-actor"', 1)[1].split("</table>", 1)[0]
    cells = dict(re.findall(r'<td class="mono ident">([^<]*)</td><td class="num">\d+</td>'
                            r'<td class="num"(?: title="[^"]+")?>([^<]*)</td>', by_actor))
    assert cells == {"PLAN/plan": "unknown", "PLAN/tool": "$0.0000",
                     "PLAN/write": "≥ $0.0008"}, by_actor
    assert '<span class="stage-cost">≥ $0.0008</span>' in page
    # The agent's chart: the run's bar says so in its title too.
    with bearer(cl) as s:
        agent_page = s.get("/agents/UNPRICED").text
    bar = re.search(rf'data-run-id="{run_id}"[^>]*><title>([^<]*)</title>', agent_page)
    assert bar is not None and " · ≥ $0.0008 · " in html.unescape(bar.group(1)), bar
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)
    shown = subprocess.run([sys.executable, "-m", "titan", "runs", "show", run_id],
                           env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[2] for line in shown.stdout.splitlines()
            if line.startswith("PLAN/")}
    assert rows == {"PLAN/plan": "unknown", "PLAN/tool": "$0.0000",
                    "PLAN/write": ">=$0.0008"}, shown.stdout


def test_an_agents_totals_group_their_digits(cl: Cluster) -> None:
    # "ACTIONS 1200" on the agent page, "1,200" on its run's card and everywhere else.
    cl.api("POST", "/runs", {"id": "rp-many", "agent_id": "many-agent"})
    for start in range(0, 1200, 600):
        cl.api("POST", "/runs/rp-many/actions", {"actions": [
            {"id": f"m{i}", "name": "step", "actor": "main", "started_at": time.time(),
             "outcome": "success"} for i in range(start, start + 600)]})
    with bearer(cl) as s:
        page = s.get("/agents/many-agent").text
    assert '<dd class="actions num">1,200</dd>' in page
    assert '<dd class="runs num">1</dd>' in page


def test_an_agents_run_count_leaves_replays_out_as_its_totals_do(cl: Cluster) -> None:
    # The Runs tile counted a replay its cost and success rate left out, and the page then
    # said "Totals count its latest 2 runs" of an agent far from the cap.
    for run_id in ("rp-tot-1", "rp-tot-2"):
        cl.api("POST", "/runs", {"id": run_id, "agent_id": "totals-agent"})
    cl.api("POST", "/runs", {"id": "rp-tot-r", "agent_id": "totals-agent",
                             "replay_of": "rp-tot-1"})
    with bearer(cl) as s:
        twin = s.get("/agents/totals-agent.json").json()
        page = s.get("/agents/totals-agent").text
    assert twin["total_runs"] == twin["agent"]["runs"] == 2
    assert '<dd class="runs num">2</dd>' in page and "Totals count its latest" not in page
    assert "rp-tot-r" in [r["id"] for r in twin["recent"]]  # still among its recent runs


def test_ledger_durations_are_written_as_the_run_page_writes_them(cl: Cluster) -> None:
    # The ledger wrote the raw milliseconds ("523.0", "0.014") where the run page's
    # formatter writes "523 ms".
    with signed_in(cl) as s:
        page = s.get("/ledger", params={"run": "rp-ok"}).text
        twin = s.get("/ledger.json", params={"run": "rp-ok"}).json()
    cells = re.findall(r'<td class="duration num">([^<]*)</td>', page)
    assert cells == ["523 ms"] * 5
    assert "523.0" not in page
    assert '<th class="num">Duration</th>' in page
    # The twin keeps the number, for programs.
    assert {a["duration_ms"] for a in twin["actions"]} == {523.0}
