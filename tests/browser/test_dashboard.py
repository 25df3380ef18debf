"""The dashboard in real Chromium against a real `titan up`: live DAG graphs, streamed logs,
agent runs, approval gates, a 10,000-node DAG, and a screenshot of every main page.

Every wait is on the DOM contract the pages implement (``data-page``, ``data-state``...),
never a sleep; jobs that must still be running while the page looks at them wait for a
flag file the test writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.browser.conftest import Dashboard, first_render_script, start_cluster
from tests.integration.harness import Cluster
from titan import TitanJob

pytestmark = pytest.mark.browser

WAIT_FOR_FLAG = """
    import os, sys, time
    deadline = time.time() + 120
    while not os.path.exists(sys.argv[1]) and time.time() < deadline:
        time.sleep(0.05)
    print("released" if os.path.exists(sys.argv[1]) else "gave up waiting")
"""
SLEEPER = """
    import time
    time.sleep(1.5)
    print("slept 1.5 s")
"""
OK = """
    print("ok")
"""
FAILS = """
    import sys
    print("failing on purpose")
    sys.exit(1)
"""
# Five lines over a second, then (once the test says so) five more over a second.
CHATTY = """
    import os, sys, time
    for i in range(5):
        print(f"tick {i}", flush=True)
        time.sleep(0.2)
    deadline = time.time() + 120
    while not os.path.exists(sys.argv[1]) and time.time() < deadline:
        time.sleep(0.05)
    for i in range(5, 10):
        print(f"tick {i}", flush=True)
        time.sleep(0.2)
"""
PUBLISHES = """
    from titan import TitanClient
    with open("report.txt", "w") as fh:
        fh.write("the browser test's report\\n")
    with TitanClient() as c:
        c.publish_artifact("browser:report", "report.txt")
    print("published report.txt")
"""
# Pages every test checks the common contract of.
COLOURS = ("background-color", "border-top-color", "color", "fill", "stroke")


def node(job_id: str, state: str | None = None) -> str:
    sel = f'.node[data-job-id="{job_id}"]'
    return sel + (f'[data-state="{state}"]' if state else "")


def states(page: Any, job_ids: list[str]) -> dict[str, str | None]:
    return {j: page.get_attribute(node(j), "data-state") for j in job_ids}


def wait_count(page: Any, selector: str, at_least: int) -> int:
    page.wait_for_function("([s, n]) => document.querySelectorAll(s).length >= n",
                           arg=[selector, at_least])
    return int(page.eval_on_selector_all(selector, "els => els.length"))


def check_common(page: Any, data_page: str) -> None:
    """What every page carries: its name, a connected live feed, the role; and the browser
    holds the session's write key (in its storage, never in the page)."""
    page.wait_for_selector(f'body[data-page="{data_page}"]', state="attached")
    page.wait_for_selector('#live[data-state="open"]', state="attached")
    assert page.evaluate("Titan.writeKey()"), "no write key in this origin's storage"
    assert page.locator('meta[name="csrf-token"], meta[name="titan-write-key"]').count() == 0
    assert page.locator("#rekey").is_hidden()
    assert page.get_attribute('meta[name="titan-role"]', "content") == "admin"


def mark_no_reload(page: Any) -> None:
    page.evaluate("window.__sameDocument = true")


def assert_no_reload(page: Any) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"


# -- a. a running DAG turns COMPLETED node by node, live -------------------------------------


def test_dag_graph_updates_live_until_completed(cluster: Cluster, dash: Dashboard,
                                                page: Any) -> None:
    flag = cluster.root / "release-live"
    gate = cluster.script("wait_for_flag.py", WAIT_FOR_FLAG)
    sleeper = cluster.script("sleeper.py", SLEEPER)
    ok = cluster.script("ok.py", OK)
    client = cluster.client()
    client.submit_dag("live", [
        TitanJob("start", gate, args=[str(flag)]),
        TitanJob("nap", sleeper, parents=["start"]),
        TitanJob("side", ok, parents=["start"]),
        TitanJob("finish", ok, parents=["nap", "side"]),
    ])
    page.goto(dash.url("/dags/DAG-live"))
    check_common(page, "dag")
    page.wait_for_selector("#graph")
    page.wait_for_selector(node("start", "RUNNING"))
    assert states(page, ["nap", "side", "finish"]) == dict.fromkeys(
        ["nap", "side", "finish"], "PENDING")
    assert page.get_attribute("#dag-status", "data-status") == "RUNNING"
    assert page.inner_text("#dag-duration-label") == "running for"
    first = page.inner_text("#dag-duration")
    page.wait_for_function("(t) => document.querySelector('#dag-duration').textContent !== t",
                           arg=first)  # it ticks

    mark_no_reload(page)
    flag.write_text("go")
    page.wait_for_selector(node("nap", "RUNNING"))  # the 1.5 s sleeper is seen running
    page.wait_for_selector(node("finish", "COMPLETED"))
    assert states(page, ["start", "nap", "side", "finish"]) == dict.fromkeys(
        ["start", "nap", "side", "finish"], "COMPLETED")
    page.wait_for_selector('#dag-status[data-status="COMPLETED"]', state="attached")
    # Finished: "took" and its real duration, no longer "running for" (QA).
    page.wait_for_function("() => document.querySelector('#dag-duration-label').textContent"
                           " === 'took'")
    assert_no_reload(page)
    dag = client.get_dag("live")
    assert dag["status"] == "COMPLETED"
    took = float(page.inner_text("#dag-duration").split()[0])
    assert abs(took - (dag["finished_at"] - dag["started_at"])) < 0.2, took


# -- b. a running job's log lines stream into the panel ---------------------------------------


def test_job_panel_streams_log_lines(cluster: Cluster, dash: Dashboard, page: Any) -> None:
    flag = cluster.root / "release-logs"
    chatty = cluster.script("chatty.py", CHATTY)
    client = cluster.client()
    client.submit_dag("logs", [TitanJob("chatty", chatty, args=[str(flag)])])
    page.goto(dash.url("/dags/DAG-logs"))
    check_common(page, "dag")
    page.click(node("chatty", "RUNNING"))
    page.wait_for_selector("#job-panel", state="visible")

    lines = "#log-lines .log-line"
    page.wait_for_function(
        "(s) => [...document.querySelectorAll(s)].some(e => e.textContent.includes('tick 4'))",
        arg=lines)
    before = wait_count(page, lines, 5)
    assert not any("tick 9" in t for t in page.locator(lines).all_text_contents())
    assert page.get_attribute(node("chatty"), "data-state") == "RUNNING"

    mark_no_reload(page)
    flag.write_text("go")
    page.wait_for_function(
        "(s) => [...document.querySelectorAll(s)].some(e => e.textContent.includes('tick 9'))",
        arg=lines)
    texts = page.locator(lines).all_text_contents()
    assert len(texts) > before
    ticks = [int(t.split("tick ", 1)[1].split()[0]) for t in texts if "tick " in t]
    assert ticks == list(range(10)), texts
    assert_no_reload(page)
    assert client.wait_job("logs/chatty", timeout=30)["state"] == "COMPLETED"


def test_a_panel_opened_from_its_address_follows_the_log(cluster: Cluster, dash: Dashboard,
                                                         page: Any) -> None:
    # /dags/DAG-x#job=<id> opened the panel before the socket was up: the subscription to
    # its log was never sent, and the log stood still (QA).
    flag = cluster.root / "release-logs-deep"
    chatty = cluster.script("chatty.py", CHATTY)
    client = cluster.client()
    client.submit_dag("logs_deep", [TitanJob("chatty", chatty, args=[str(flag)])])
    job = client.get_job("logs_deep/chatty")
    page.goto(dash.url(f"/dags/DAG-logs_deep#job={job['id']}"))
    page.wait_for_selector("#job-panel", state="visible")
    lines = "#log-lines .log-line"
    page.wait_for_function(
        "(s) => [...document.querySelectorAll(s)].some(e => e.textContent.includes('tick 4'))",
        arg=lines)
    mark_no_reload(page)
    flag.write_text("go")
    page.wait_for_function(
        "(s) => [...document.querySelectorAll(s)].some(e => e.textContent.includes('tick 9'))",
        arg=lines)
    assert_no_reload(page)
    assert client.wait_job("logs_deep/chatty", timeout=30)["state"] == "COMPLETED"


def test_a_panel_opens_from_an_address_naming_the_job(cluster: Cluster, dash: Dashboard,
                                                     page: Any) -> None:
    # #job= took the numeric id the panel writes, not the job's name a person types:
    # /dags/DAG-x#job=train opened nothing (a dashboard QA pass).
    quick = cluster.script("quick.py", "print('ok')\n")
    client = cluster.client()
    dag = client.submit_dag("by_name", [TitanJob("extract", quick),
                                        TitanJob("train", quick, parents=["extract"])],
                            wait=True, timeout=60)
    train = next(j for j in dag["jobs"] if j["job_id"] == "train")
    page.goto(dash.url("/dags/DAG-by_name#job=train"))
    page.wait_for_selector("#job-panel", state="visible")
    page.wait_for_function("() => document.querySelector('#job-panel .job-title')"
                           ".textContent.includes('train')")
    assert page.evaluate("location.hash") == f"#job={train['id']}"
    page.goto(dash.url("/dags/DAG-by_name#job=nosuchjob"))
    page.reload()  # a new hash alone is no new page
    page.wait_for_selector("#graph")
    assert page.locator("#job-panel").is_hidden()


def test_a_long_finished_log_opens_at_its_end_in_one_request(cluster: Cluster, dash: Dashboard,
                                                              page: Any) -> None:
    # 50,000 lines took 11 requests and 18 s, to keep the last 20,000 with no word of the rest.
    loud = cluster.script("loud.py", "for i in range(25_000):\n    print(f'line {i + 1}')\n")
    client = cluster.client()
    dag = client.submit_dag("loud", [TitanJob("loud", loud)], wait=True, timeout=60)
    job_id = dag["jobs"][0]["id"]
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/logs" in r.url else None)
    page.goto(dash.url(f"/jobs/{job_id}"))
    page.wait_for_function("() => [...document.querySelectorAll('#log-lines .log-line')]"
                           ".some(e => e.textContent === 'line 25000')")
    note = page.wait_for_selector("#log-lines .log-earlier")
    assert "5,000 earlier lines" in note.inner_text()
    assert note.query_selector("a").get_attribute("href") == f"/api/v1/jobs/%23{job_id}/logs.txt?attempt=1"
    assert page.locator("#log-lines .log-line").count() == 20_000
    assert page.locator("#log-lines .log-line").first.inner_text() == "line 5001"
    assert len([u for u in requests if "/logs?" in u]) == 1, requests


ANSI = r"""
import os, sys, time
print("\x1b[31mred\x1b[0m plain", flush=True)
print("\x1b]0;a title\x07\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\ after", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print("\x1b[1;32mbold green\x1b[m \x1b[2K\x1b[10Dmoved", flush=True)
"""


def test_terminal_escapes_are_not_shown_raw_in_the_log(cluster: Cluster, dash: Dashboard,
                                                       page: Any) -> None:
    # A job's colours showed as "\x1b[31mred\x1b[0m" in the log view. Read on a job page
    # (fetched, then pushed live), in words only; the plain-text log keeps the bytes.
    flag = cluster.root / "release-ansi"
    client = cluster.client()
    client.submit_dag("ansi", [TitanJob("ansi", cluster.script("ansi.py", ANSI),
                                        args=[str(flag)])])
    job_id = client.get_job("ansi/ansi")["id"]
    page.goto(dash.url(f"/jobs/{job_id}"))
    # On a loaded box the job may start late: the master has its two lines first (else
    # the page has nothing to show yet), then the page must show them.
    deadline = time.monotonic() + 90
    while "after" not in client.fetch_logs("ansi/ansi") and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = "#log-lines .log-line"
    wait_count(page, lines, 2)
    flag.write_text("go")
    wait_count(page, lines, 3)
    assert page.locator(lines).all_text_contents() == [
        "red plain", "link after", "bold green moved"]
    assert client.wait_job("ansi/ansi", timeout=30)["state"] == "COMPLETED"
    raw = page.request.get(dash.url(f"/api/v1/jobs/{job_id}/logs.txt")).text()
    assert "\x1b[31mred\x1b[0m plain" in raw and "\x1b[1;32mbold green" in raw


WAIT_THEN_PRINT = r"""
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print("one", flush=True)
print("two", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
"""


def test_a_jobs_first_lines_show_when_they_come_during_the_pages_first_load(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # The page's first load of the log (made before the job started) was still in flight when
    # the job's first lines came: the load for the new attempt was dropped, and a job that
    # printed two lines and waited showed none (a flaky run of the test above).
    go, done = cluster.root / "go-first", cluster.root / "done-first"
    client = cluster.client()
    client.submit_dag("first-lines", [
        TitanJob("gate", cluster.script("gate.py", "import os, sys, time\n"
                                        "while not os.path.exists(sys.argv[1]):\n"
                                        "    time.sleep(0.05)\n"), args=[str(go)]),
        TitanJob("talker", cluster.script("talker.py", WAIT_THEN_PRINT),
                 args=[str(go), str(done)], parents=["gate"])])
    job_id = client.get_job("first-lines/talker")["id"]
    held: list[Any] = []
    released = [False]

    def hold(route: Any) -> None:  # the page's first loads wait until released
        if released[0]:
            route.continue_()
        else:
            held.append(route)

    page.route(f"**/api/v1/jobs/%23{job_id}/logs?*", hold)
    page.goto(dash.url(f"/jobs/{job_id}"))
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the page never asked for the log"
    go.write_text("go")  # the talker runs and prints while the page's first load waits
    while "two" not in client.fetch_logs("first-lines/talker") and time.monotonic() < deadline:
        time.sleep(0.1)
    page.wait_for_timeout(500)  # its log_lines event reaches the page, the load still held
    released[0] = True
    for route in held:
        route.continue_()
    wait_count(page, "#log-lines .log-line", 2)
    assert page.locator("#log-lines .log-line").all_text_contents() == ["one", "two"]
    done.write_text("done")
    assert client.wait_job("first-lines/talker", timeout=30)["state"] == "COMPLETED"


# -- c. an agent run's stages, in order, coloured by status, linking to their DAGs ------------


def test_agent_run_stages_on_agents_page(cluster: Cluster, dash: Dashboard, page: Any) -> None:
    ok = cluster.script("ok.py", OK)
    fails = cluster.script("fails.py", FAILS)
    client = cluster.client()
    run_id = "RESEARCH_browser"
    stages = {"PLAN": [ok], "ITER1": [ok, fails], "EVAL1": [ok], "SYNTH": [ok]}
    for label, scripts in stages.items():
        name = f"{run_id}_{label}"
        client.submit_dag(name, [TitanJob(f"{label.lower()}_{i}", s, retries=0)
                                 for i, s in enumerate(scripts)], agent_run_id=run_id)
        client.wait_dag(name, timeout=60)
    expected = {"PLAN": "COMPLETED", "ITER1": "PARTIAL", "EVAL1": "COMPLETED",
                "SYNTH": "COMPLETED"}
    assert {s["label"]: s["status"] for s in client.agent_run(run_id)["stages"]} == expected

    page.goto(dash.url("/agents"))
    check_common(page, "agents")
    row = page.locator(f'.agent-run[data-run-id="{run_id}"]')
    row.wait_for()
    boxes = row.locator("a.stage")
    got = [(boxes.nth(i).get_attribute("data-label"), boxes.nth(i).get_attribute("data-status"))
           for i in range(boxes.count())]
    assert got == list(expected.items())

    def colours(label: str) -> list[str]:
        # A live update may redraw the row between finding a box and reading its style: a
        # box read as the page replaced it has no style at all (every property ""). Read
        # the new one then.
        deadline = time.monotonic() + 10
        while True:
            got = list(row.locator(f'a.stage[data-label="{label}"]').evaluate(
                "(el, props) => { const cs = getComputedStyle(el);"
                " return props.map(p => cs.getPropertyValue(p)); }", list(COLOURS)))
            if any(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    assert colours("ITER1") != colours("PLAN"), "PARTIAL and COMPLETED stages look the same"
    assert colours("PLAN") == colours("EVAL1"), "two COMPLETED stages look different"

    for label in expected:
        href = row.locator(f'a.stage[data-label="{label}"]').get_attribute("href")
        target = urlparse(href or "")
        assert (target.path, target.query) == (f"/dags/DAG-{run_id}_{label}", "run=1"), href
    mark_no_reload(page)
    row.locator('a.stage[data-label="ITER1"]').click()
    page.wait_for_url(f"**/dags/DAG-{run_id}_ITER1?run=1")
    check_common(page, "dag")
    page.wait_for_selector(node("iter1_0", "COMPLETED"))
    page.wait_for_selector(node("iter1_1", "FAILED"))
    page.wait_for_selector('#dag-status[data-status="PARTIAL"]', state="attached")


def test_the_targeted_run_stays_outlined_and_a_narrow_page_keeps_its_header(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # /agents#<id> lost its outline at the first refresh (the row it matched was replaced);
    # and the header, one 1,060 px line, pushed the page sideways below that width, "Sign
    # out" off-screen on a phone.
    ok = cluster.script("ok.py", OK)
    client = cluster.client()
    run_id = "TARGET_browser"
    client.submit_dag(f"{run_id}_PLAN", [TitanJob("plan", ok)], agent_run_id=run_id)
    client.wait_dag(f"{run_id}_PLAN", timeout=60)
    page.goto(dash.url(f"/agents#{run_id}"))
    row = page.locator(f'.agent-run[data-run-id="{run_id}"]')
    row.wait_for()
    client.submit_dag(f"{run_id}_ITER1", [TitanJob("iter", ok)], agent_run_id=run_id)
    page.wait_for_selector(f'.agent-run[data-run-id="{run_id}"] a.stage[data-label="ITER1"]')
    outline = page.locator(f'.agent-run[data-run-id="{run_id}"]').evaluate(
        "el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"
    for width in (1024, 768, 375):
        page.set_viewport_size({"width": width, "height": 800})
        for path in ("/", "/dags", "/schedules", "/agents", "/runs", "/ledger", "/store"):
            page.goto(dash.url(path))
            scroll = page.evaluate("() => document.documentElement.scrollWidth")
            wide = page.evaluate(  # what sticks out, to say so when it fails
                "w => [...document.querySelectorAll('body *')]"
                ".filter(e => e.getBoundingClientRect().right > w + 1).slice(0, 5)"
                ".map(e => e.tagName + '.' + e.className)", width)
            assert scroll <= width, (path, width, scroll, wide)
            box = page.locator("header.top .logout button, header.top .logout").first
            right = box.evaluate("el => el.getBoundingClientRect().right")
            assert right <= width, (path, width, right)


def test_runs_without_stages_are_a_tick_away_and_the_address_keeps_it(
        cluster: Cluster, dash: Dashboard, page: Any) -> None:
    # Runs recorded with titan.trace alone swamped Agent Runs: by default it lists the runs
    # that submitted stages; a box, kept in the address, adds the others.
    ok = cluster.script("ok.py", OK)
    client = cluster.client()
    client.submit_dag("TICK_browser_PLAN", [TitanJob("plan", ok)],
                      agent_run_id="TICK_browser", wait=True, timeout=60)
    cluster.api("POST", "/runs", {"id": "tick-traced-browser", "agent_id": "traced"})
    page.goto(dash.url("/agents"))
    check_common(page, "agents")
    page.wait_for_selector('.agent-run[data-run-id="TICK_browser"]')
    assert not page.query_selector('.agent-run[data-run-id="tick-traced-browser"]')
    assert "hidden)" in page.inner_text("#agent-filters")
    page.check("#include-stageless")  # submits the filter by itself
    page.wait_for_url("**/agents?stages=all")
    page.wait_for_selector('.agent-run[data-run-id="tick-traced-browser"] .stages-note')
    assert page.is_checked("#include-stageless")
    # The live refresh keeps the choice: a new run without stages joins the list.
    cluster.api("POST", "/runs", {"id": "tick-traced-browser-2", "agent_id": "traced"})
    client.submit_dag("TICK_browser_ITER1", [TitanJob("iter", ok)], agent_run_id="TICK_browser")
    page.wait_for_selector('.agent-run[data-run-id="tick-traced-browser-2"]')
    page.uncheck("#include-stageless")
    page.wait_for_url("**/agents?")
    page.wait_for_selector('.agent-run[data-run-id="TICK_browser"]')
    assert not page.query_selector('.agent-run[data-run-id="tick-traced-browser"]')


def test_a_stage_box_follows_its_jobs_without_a_dag_event(cluster: Cluster, dash: Dashboard,
                                                          page: Any) -> None:
    # A job ending inside a stage that stays RUNNING sends no DAG event: the box kept saying
    # one job was executing until a reload (seed 000: the page auto-refreshes every 3 s).
    quick = cluster.script("quick.py", "import time\ntime.sleep(2)\n")
    run_id = "STALE_check"
    cluster.client().submit_dag(
        f"{run_id}_PLAN", [TitanJob("quick", quick),
                           TitanJob("gpu", quick, requirement="GPU_NONE_HERE")],
        agent_run_id=run_id)
    client = cluster.client()
    deadline = time.monotonic() + 30
    while client.get_job(f"{run_id}_PLAN/quick")["state"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    page.goto(dash.url("/agents"))
    stage = f'.agent-run[data-run-id="{run_id}"] a.stage[data-label="PLAN"]'
    box = page.locator(stage)
    assert box.get_attribute("data-executing") == "1"
    mark_no_reload(page)
    page.wait_for_selector(f'{stage}[data-status="RUNNING"][data-executing="0"]')
    assert "GPU_NONE_HERE" in (box.locator(".stage-hint").text_content() or "")
    assert_no_reload(page)
    cluster.client().cancel(f"DAG-{run_id}_PLAN")


# -- the panel's and the DAG's buttons -------------------------------------------------------


def test_cancel_retry_and_cancel_dag_buttons(cluster: Cluster, dash: Dashboard,
                                             page: Any) -> None:
    flag = cluster.root / "release-never"
    gate = cluster.script("wait_for_flag.py", WAIT_FOR_FLAG)
    ok = cluster.script("ok.py", OK)
    cluster.client().submit_dag("ctl", [TitanJob("hold", gate, args=[str(flag)], retries=0),
                                        TitanJob("next", ok, parents=["hold"])])
    page.goto(dash.url("/dags/DAG-ctl"))
    check_common(page, "dag")
    page.click(node("hold", "RUNNING"))
    page.wait_for_selector("#job-panel", state="visible")
    mark_no_reload(page)
    page.click("#job-panel button[data-action=cancel-job]")
    page.wait_for_selector(node("hold", "CANCELLED"))
    page.wait_for_selector(node("next", "SKIPPED"))

    page.click("#job-panel button[data-action=retry-job]")  # sent with the write key
    page.wait_for_selector(node("hold", "RUNNING"))
    page.wait_for_selector(node("next", "PENDING"))
    # The page asks first; answered "no" the first time (the fixture accepts every dialog,
    # so the page's confirm is answered here), nothing is cancelled.
    page.evaluate("() => { window.asked = []; window.confirm = (m) => window.asked.push(m) > 1; }")
    page.click("button[data-action=cancel-dag]")
    page.wait_for_timeout(300)
    asked = page.evaluate("window.asked")
    assert len(asked) == 1 and "Cancel this DAG?" in asked[0], asked
    assert cluster.client().get_dag("ctl")["status"] == "RUNNING"
    page.click("button[data-action=cancel-dag]")
    page.wait_for_selector('#dag-status[data-status="CANCELLED"]', state="attached")
    page.wait_for_selector(node("hold", "CANCELLED"))
    assert_no_reload(page)
    assert cluster.client().get_dag("ctl")["status"] == "CANCELLED"


# A service that listens until SIGTERM, which it takes as "leave now".
SERVES = """
    import os, signal, socket, sys
    sock = socket.create_server((os.environ["TITAN_SERVICE_HOST"], int(os.environ["PORT"])))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening", flush=True)
    while True:
        sock.accept()[0].close()
"""


def test_a_service_on_the_cluster_page_stopped_from_its_page(cluster: Cluster, dash: Dashboard,
                                                             page: Any) -> None:
    client = cluster.client()
    client.submit_dag("svc", [TitanJob("api", cluster.script("serves.py", SERVES),
                                       job_type="SERVICE")])
    deadline = time.time() + 60
    while (job := client.get_job("svc/api"))["health"] != "ready":
        assert time.time() < deadline, job
        time.sleep(0.1)
    page.goto(dash.url("/workers"))
    check_common(page, "cluster")
    row = page.wait_for_selector(f'tr.service[data-job-id="{job["id"]}"][data-health="ready"]')
    assert job["address"] in row.inner_text() and "READY" in row.inner_text()
    page.goto(dash.url(f"/jobs/{job['id']}"))
    check_common(page, "job")
    assert job["address"] in page.inner_text(".service-line")
    page.click("button[data-action=stop-job]")  # not the cancel beside it
    page.wait_for_selector('#job-panel[data-state="COMPLETED"]', state="attached")
    assert client.get_job("svc/api")["reason"] == "stopped on request"


# -- d. an approval gate, decided in the banner -----------------------------------------------


def _gated_dag(cluster: Cluster, name: str) -> None:
    ok = cluster.script("ok.py", OK)
    cluster.client().submit_dag(name, [
        TitanJob("build", ok),
        TitanJob("deploy", ok, parents=["build"], hitl_message="Ship it?",
                 max_wait_seconds=600),
        TitanJob("announce", ok, parents=["deploy"]),
    ])


def _open_gate(page: Any, dash: Dashboard, name: str) -> Any:
    page.goto(dash.url(f"/dags/DAG-{name}"))
    check_common(page, "dag")
    banner = page.wait_for_selector('#approval-banner[data-job-id="deploy.approval"]')
    assert "Ship it?" in banner.inner_text()
    page.wait_for_selector(node("deploy", "COMPLETED"))
    page.wait_for_selector(node("deploy.approval", "WAITING_APPROVAL"))
    assert page.get_attribute(node("announce"), "data-state") == "PENDING"
    return banner


def test_approving_a_gate_releases_its_children(cluster: Cluster, dash: Dashboard,
                                                page: Any) -> None:
    _gated_dag(cluster, "ship")
    banner = _open_gate(page, dash, "ship")
    comment = "looks good, shipping (browser test)"
    banner.query_selector("textarea[name=comment]").fill(comment)
    mark_no_reload(page)
    banner.query_selector("button[data-action=approve]").click()

    page.wait_for_selector(node("deploy.approval", "APPROVED"))
    page.wait_for_selector(node("announce", "COMPLETED"))
    page.wait_for_selector('#dag-status[data-status="COMPLETED"]', state="attached")
    assert_no_reload(page)
    gate = cluster.client().get_job("ship/deploy.approval")
    assert gate["state"] == "APPROVED"
    # The decision is on the page: the gate's panel names it, with the comment.
    page.click(node("deploy.approval"))
    panel = page.wait_for_selector("#job-panel", state="visible")
    page.wait_for_function("(c) => document.querySelector('#job-panel').innerText.includes(c)",
                           arg=comment)
    assert "APPROVED" in panel.inner_text().upper()


def test_rejecting_a_gate_skips_its_descendants(cluster: Cluster, dash: Dashboard,
                                                page: Any) -> None:
    _gated_dag(cluster, "hold")
    banner = _open_gate(page, dash, "hold")
    banner.query_selector("textarea[name=comment]").fill("not today")
    banner.query_selector("button[data-action=reject]").click()
    page.wait_for_selector(node("deploy.approval", "REJECTED"))
    page.wait_for_selector(node("announce", "SKIPPED"))
    page.wait_for_selector("#approval-banner", state="hidden")
    assert cluster.client().get_job("hold/announce")["state"] == "SKIPPED"


# After each (re)connect the DAG page refetches its JSON twin; events the socket delivers
# while that fetch is in flight are newer than the snapshot it returns. Counts, per page, the
# JSON bodies read (bumped in a task queued after the reader's continuation has run).
COUNT_JSON_READS = """
    window.__jsonReads = 0;
    const read = Response.prototype.json;
    Response.prototype.json = function () {
      return read.call(this).then((v) => { setTimeout(() => { window.__jsonReads++; }, 0); return v; });
    };
"""


def test_a_slow_resync_does_not_undo_newer_events(
        cluster: Cluster, dashboard_factory: Callable[..., Dashboard]) -> None:
    flag = cluster.root / "release-resync"
    gate = cluster.script("wait_for_flag.py", WAIT_FOR_FLAG)
    ok = cluster.script("ok.py", OK)
    client = cluster.client()
    client.submit_dag("resync", [
        TitanJob("build", gate, args=[str(flag)]),
        TitanJob("deploy", ok, parents=["build"], hitl_message="Ship it?", max_wait_seconds=600),
        TitanJob("announce", ok, parents=["deploy"]),
    ])
    dash = dashboard_factory(cluster, [COUNT_JSON_READS])
    page = dash.new_page()
    dash.sign_in(page)
    held: list[tuple[Any, Any]] = []  # the first twin fetch: its snapshot, delivered late

    def hold(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append((route, route.fetch()))  # the snapshot as of now: build running

    page.route("**/dags/DAG-resync.json*", hold)
    page.goto(dash.url("/dags/DAG-resync"))
    page.wait_for_selector(node("build", "RUNNING"))
    # The node shows from the first render; the twin is fetched once the socket connects.
    deadline = time.time() + 30
    while not held:
        assert time.time() < deadline, "the page did not fetch its JSON twin on connecting"
        page.wait_for_timeout(50)

    flag.write_text("go")  # build, then deploy complete; the gate starts waiting
    page.wait_for_selector(node("deploy.approval", "WAITING_APPROVAL"))  # from the events
    page.wait_for_selector('#approval-banner[data-job-id="deploy.approval"]')
    reads = page.evaluate("() => window.__jsonReads")
    route, stale = held[0]
    route.fulfill(response=stale)  # the older snapshot arrives last
    page.wait_for_function("(n) => window.__jsonReads > n", arg=reads)

    assert states(page, ["build", "deploy", "deploy.approval", "announce"]) == {
        "build": "COMPLETED", "deploy": "COMPLETED", "deploy.approval": "WAITING_APPROVAL",
        "announce": "PENDING"}, "a stale snapshot overwrote newer states"
    assert page.is_visible('#approval-banner[data-job-id="deploy.approval"]')
    client.reject("resync/deploy.approval")


# -- e. a 10,000-node DAG: virtualised, scrollable, clickable ---------------------------------


def layered_jobs(script: str, n: int, width: int, requirement: str) -> list[TitanJob]:
    """``n`` jobs in layers of ``width``, each with two parents in the layer above."""
    jobs = []
    for i in range(n):
        layer, pos = divmod(i, width)
        parents = [] if layer == 0 else sorted(
            {f"n{(layer - 1) * width + pos}", f"n{(layer - 1) * width + (pos + 1) % width}"})
        jobs.append(TitanJob(f"n{i}", script, parents=parents, requirement=requirement))
    return jobs


@pytest.fixture
def big_cluster(tmp_path: Path, browser: Any) -> Iterator[Cluster]:
    c = start_cluster(tmp_path / "big", slots=2)
    try:
        yield c
    finally:
        c.stop()


def test_ten_thousand_node_dag_renders_virtualised(
        big_cluster: Cluster, dashboard_factory: Callable[..., Dashboard]) -> None:
    ok = big_cluster.script("ok.py", OK)
    client = big_cluster.client()
    # No worker has BROWSER_NOWHERE: nothing runs, the graph stays still.
    client.submit_dag("big", layered_jobs(ok, 10_000, 100, "BROWSER_NOWHERE"))
    assert client.get_dag("big")["job_count"] == 10_000
    dash = dashboard_factory(big_cluster, [first_render_script(".node")])
    page = dash.new_page()
    dash.sign_in(page)

    t0 = time.perf_counter()
    page.goto(dash.url("/dags/DAG-big"), wait_until="commit")
    page.wait_for_function("() => window.__firstRender !== undefined", timeout=60_000)
    first_ms = float(page.evaluate("window.__firstRender"))
    wall_ms = (time.perf_counter() - t0) * 1000
    print(f"\n10,000-node DAG: first .node rendered {first_ms:.0f} ms after navigation start "
          f"({wall_ms:.0f} ms as seen from the test)")
    assert first_ms < 20_000
    check_common(page, "dag")
    page.wait_for_selector(".node", state="visible")

    ids = "els => els.map(e => e.dataset.id)"
    first = set(page.eval_on_selector_all(".node", ids))
    assert 0 < len(first) < 10_000, f"{len(first)} nodes rendered: not virtualised"
    assert all(i and i.isdigit() for i in first)
    page.hover("#graph")
    page.mouse.wheel(1500, 3000)
    page.wait_for_function("([sel, seen]) => [...document.querySelectorAll(sel)]"
                           ".some(e => !seen.includes(e.dataset.id))",
                           arg=[".node", sorted(first)])
    after = set(page.eval_on_selector_all(".node", ids))
    fresh = sorted(after - first, key=int)
    assert fresh and len(after) < 10_000

    target = page.locator(f'.node[data-id="{fresh[len(fresh) // 2]}"]')
    job_id = target.get_attribute("data-job-id")
    target.click()
    panel = page.wait_for_selector("#job-panel", state="visible")
    page.wait_for_function("(j) => document.querySelector('#job-panel').innerText.includes(j)",
                           arg=job_id)
    assert job_id and job_id in panel.inner_text()

    # The same cluster, for the pages' empty and waiting states.
    page.goto(dash.url("/agents"))
    check_common(page, "agents")
    page.wait_for_selector("#empty-state")
    page.goto(dash.url("/workers"))
    page.wait_for_selector(".worker[data-worker-id]")
    page.wait_for_function(
        "() => document.querySelector('#unschedulable')?.innerText.includes('BROWSER_NOWHERE')")


# -- f. every main page, with a screenshot ----------------------------------------------------


def test_main_pages_and_screenshots(cluster: Cluster, dash: Dashboard, page: Any,
                                    artifacts: Path) -> None:
    publishes = cluster.script("publishes.py", PUBLISHES)
    ok = cluster.script("ok.py", OK)
    client = cluster.client()
    client.submit_dag("x", [TitanJob("report", publishes), TitanJob("after", ok,
                                                                     parents=["report"])])
    assert client.wait_dag("x", timeout=60)["status"] == "COMPLETED"
    client.store_put("browser:greeting", "hello from the browser test")
    report = client.get_job("x/report")

    def shot(name: str) -> None:
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    # / and /workers: the cluster, its worker in the state the API reports.
    api_workers = {w["id"]: w["state"] for w in client.list_workers()}
    for path in ("/", "/workers"):
        page.goto(dash.url(path))
        check_common(page, "cluster")
        page.wait_for_selector(".worker[data-worker-id]")
        shown = {e.get_attribute("data-worker-id"): e.get_attribute("data-state")
                 for e in page.query_selector_all(".worker[data-worker-id]")}
        assert {str(k): v for k, v in api_workers.items()} == shown
        page.wait_for_selector("#unschedulable", state="attached")
    shot("cluster")

    page.goto(dash.url("/dags"))
    check_common(page, "dags")
    row = page.wait_for_selector('tr.dag-row[data-status="COMPLETED"]'
                                 f'[data-dag-id="{client.get_dag("x")["id"]}"]')
    assert "x" in row.inner_text()
    shot("dags")

    page.goto(dash.url("/dags/DAG-x"))
    check_common(page, "dag")
    page.wait_for_selector(node("after", "COMPLETED"))
    link = page.wait_for_selector("#files a.file")
    assert "report.txt" in link.inner_text()
    page.click(node("report"))
    page.wait_for_selector("#job-panel", state="visible")
    page.wait_for_function("() => [...document.querySelectorAll('#log-lines .log-line')]"
                           ".some(e => e.textContent.includes('published report.txt'))")
    shot("dag")

    page.goto(dash.url("/agents"))
    check_common(page, "agents")
    page.wait_for_selector(".agent-run, #empty-state", state="attached")
    shot("agents")

    page.goto(dash.url(f"/jobs/{report['id']}"))
    check_common(page, "job")
    page.wait_for_selector("#follow", state="attached")
    page.wait_for_function("() => [...document.querySelectorAll('#log-lines .log-line')]"
                           ".some(e => e.textContent.includes('published report.txt'))")
    shot("job")

    page.goto(dash.url("/store"))
    check_common(page, "store")
    page.wait_for_function("() => document.body.innerText.includes('browser:greeting')")
    shot("store")

    for name in ("cluster", "dags", "dag", "agents", "job", "store"):
        assert (artifacts / f"{name}.png").stat().st_size > 1000


# -- signing in -------------------------------------------------------------------------------


def test_pages_need_a_session(cluster: Cluster, dash: Dashboard) -> None:
    page = dash.new_page()
    page.goto(dash.url("/dags"))
    page.wait_for_selector('body[data-page="login"]', state="attached")
    page.goto(dash.url("/login?token=not-a-real-token"))
    page.wait_for_selector('body[data-page="login"]', state="attached")
    assert "titan_session" not in dash.cookies(), "a bad token got a session"
    dash.sign_in(page)
    page.goto(dash.url("/dags"))
    check_common(page, "dags")
    # The JSON twin of a page answers the same session.
    twin = page.evaluate("async () => { const r = await fetch('/dags/DAG-x.json');"
                         " return [r.status, await r.json()]; }")
    assert twin[0] == 200 and isinstance(twin[1], dict), twin
