"""What `titan eval run --wait` reports: the runs it dispatched and nothing else, and a run
that did not complete never as a pass; runs the master had not started when it stopped; and
deleting an evaluation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster
from tests.integration.test_evaluations import evals_cluster, fake_llm  # noqa: F401 (fixtures)

TOOLS = [{"name": "get_order", "description": "Look up an order.",
          "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
                           "required": ["order_id"]}}]
ANSWERS_THEN_CRASHES = '''
import sys
from titan import evals

evals.task()
evals.call_tool("get_order", {"order_id": "A-1001"})
evals.respond("Order A-1001 is processing.")
sys.exit(3)
'''


def cli(c: Cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "titan", *args, "--host", "127.0.0.1",
                           "--port", str(c.port), "--token", c.admin_token],
                          capture_output=True, text=True, timeout=timeout, env=c.env)


def agent(c: Cluster, name: str, source: str, **extra: Any) -> dict[str, Any]:
    script = Path(c.script(f"{name}.py", source))
    return {"name": name, "script": script.name, "tools": TOOLS, "timeout_s": 60, **extra}


def test_an_agent_that_answers_then_crashes_is_not_judged_a_pass(
        evals_cluster: Cluster) -> None:  # noqa: F811
    c = evals_cluster
    c.client().create_evaluation("crashes", agent(c, "crasher", ANSWERS_THEN_CRASHES), [
        {"id": "exit3", "user_instruction": "What is the status of order A-1001?",
         "initial_state": {"order": {"A-1001": {"status": "processing"}}}}],
        base=c.scripts)
    done = cli(c, "eval", "run", "crashes", "--task", "exit3", "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0 PASS, 0 FAIL, 1 PENDING" in done.stdout, done.stdout
    row = c.client().evaluation("crashes")["tasks"][0]["run"]
    assert (row["status"], row["error_class"]) == ("failed", "agent_5xx"), row
    assert row["verdict"] == "PENDING" and row["judge_verdict"] == "NOT_APPLICABLE"
    assert row["cost"]["judge_usd"] == 0.0
    trace = c.client().evaluation_run("crashes", "exit3", row["id"])
    assert trace["final_response"] == "Order A-1001 is processing."  # kept, not judged
    assert "did not complete (failed, agent_5xx)" in trace["judge"]["reasoning"]
    assert trace["judge"]["model"] != "checks"


SLOW_OR_HANGING = '''
import time
from titan import evals

task = evals.task()
time.sleep(300 if "hang" in task["user_instruction"] else 6)
order = evals.call_tool("get_order", {"order_id": "A-1001"})
evals.respond(f"Order A-1001 is {order['status']}.")
'''


def slow_and_hanging(c: Cluster, name: str, *tasks: str) -> None:
    """An evaluation of ``tasks``: "slow" answers after 6 s, "hang" after 300."""
    seed = {"initial_state": {"order": {"A-1001": {"status": "processing"}}}}
    said = {"slow": "What is the status of order A-1001?",
            "hang": "hang, then tell me about order A-1001"}
    c.client().create_evaluation(name, agent(c, "slow", SLOW_OR_HANGING), [
        seed | {"id": t, "user_instruction": said[t]} for t in tasks], base=c.scripts)


def waiting_cli(c: Cluster, name: str, *args: str) -> subprocess.Popen[str]:
    """``titan eval run NAME --wait ARGS`` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "titan", "eval", "run", name, "--wait", *args, "--host",
         "127.0.0.1", "--port", str(c.port), "--token", c.admin_token],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=c.env)


def test_waiting_reports_the_runs_this_command_dispatched(
        evals_cluster: Cluster) -> None:  # noqa: F811
    import json
    import time

    c = evals_cluster
    client = c.client()
    slow_and_hanging(c, "waits", "slow", "hang")
    (hanging,) = client.run_evaluation("waits", ["hang"])
    try:
        waiting = waiting_cli(c, "waits", "--task", "slow", "--timeout", "90", "--json")
        deadline = time.time() + 30
        while time.time() < deadline:
            row = {r["task_id"]: r for r in client.evaluation("waits")["tasks"]}["slow"]
            if row["run"] is not None:
                break
            time.sleep(0.2)
        mine = row["run"]["id"]
        # Another command's run of the same task (a dashboard Re-run), cancelled: the latest
        # run, and what the waiting command reported as its own.
        (other,) = client.run_evaluation("waits", ["slow"])
        # Its agent's job is submitted just after the reply: cancelled once it is running.
        deadline = time.time() + 30
        while time.time() < deadline and client.api(
                "GET", "/evaluations/waits/tasks/slow/runs")["runs"][0]["status"] == "pending":
            time.sleep(0.1)
        client.cancel(f"{other['id']}_AGENT")
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, out + err
        (reported,) = json.loads(out)["tasks"]
        assert reported["run"]["id"] == mine and reported["run"]["verdict"] == "PASS"
        assert json.loads(out)["summary"]["pass"] == 1
        # A re-run waits for its new run, not for the hanging task beside it.
        again = cli(c, "eval", "rerun", "waits", "slow", "--wait", timeout=90)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "slow: completed  verdict PASS  (3 runs)" in again.stdout, again.stdout
        assert client.evaluation("waits")["summary"]["in_flight"] == 1  # still hanging
    finally:
        client.cancel(f"{hanging['id']}_AGENT")


CANCELS_THEN_WAITS = '''
import time
from titan import evals

evals.task()
evals.call_tool("cancel_order", {"order_id": "A-1002"})
time.sleep(30)  # its worker is killed meanwhile
evals.respond("Order A-1002 has been cancelled.")
'''


def test_a_run_whose_agent_job_lost_its_worker_ends_as_internal_error(
        make_cluster: Any) -> None:
    # Run again from the start, the agent's second attempt stacked its calls on the first
    # one's: two cancel_order calls on one trajectory, the world changed twice.
    import os
    import signal
    import time

    from tests.integration.test_durability import wait_for

    c = make_cluster(lease_seconds=2)
    c.start_master()
    doomed = c.add_worker(slots=1, name="doomed")
    tool = {"name": "cancel_order", "input_schema": {"type": "object"}}
    rule = {"tool": "cancel_order", "payload": {"status": "cancelled"}, "error": False}
    client = c.client()
    client.create_evaluation("lost", agent(c, "canceller", CANCELS_THEN_WAITS, tools=[tool],
                                           judge=False),
                             [{"id": "t1", "user_instruction": "Cancel order A-1002.",
                               "failure_rules": [rule]}], base=c.scripts)
    (run,) = client.run_evaluation("lost")

    def row() -> dict[str, Any]:
        found: dict[str, Any] = c.api("GET", "/evaluations/lost")["tasks"][0]["run"]
        return found

    wait_for(lambda: row()["tool_calls"] == 1, 30, "the agent's first tool call")
    os.killpg(doomed.pid, signal.SIGKILL)  # the worker and the agent's process with it
    c.add_worker(slots=1, name="spare", wait=False)
    wait_for(lambda: row()["status"] != "running", 30, "the run to end")
    ended = row()
    assert (ended["status"], ended["error_class"]) == ("failed", "internal_error"), ended
    assert "lost its worker mid-run" in ended["error_detail"]
    time.sleep(3)  # a second attempt, had it run, would have called by now
    assert row()["tool_calls"] == 1
    (job,) = c.api("GET", f"/dags/{run['id']}_AGENT")["jobs"]
    assert job["state"] == "CANCELLED", job


def test_ctrl_c_on_a_wait_says_the_runs_go_on_and_how_to_cancel_them(
        evals_cluster: Cluster) -> None:  # noqa: F811
    import signal
    import time

    c = evals_cluster
    client = c.client()
    slow_and_hanging(c, "interrupted", "hang")
    waiting = waiting_cli(c, "interrupted")
    run = None
    try:
        deadline = time.time() + 30
        while run is None and time.time() < deadline:
            run = client.evaluation("interrupted")["tasks"][0]["run"]
            time.sleep(0.5)
        assert run is not None
        time.sleep(1)
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 130, out + err
        assert f"interrupted: the run(s) go on ({run['id']}); follow them with `titan eval " \
               "show interrupted`, cancel them with `titan eval cancel interrupted`" in err, err
        # What the message says works: one command for the evaluation (it was `titan cancel
        # <run id>_AGENT` run by run), saying what it cancelled.
        cancelled = cli(c, "eval", "cancel", "interrupted")
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert cancelled.stdout == (f"cancelled 1 run(s) of interrupted\n"
                                    f"  {'hang':<24} {run['id']}\n"), cancelled.stdout
        view = client.evaluation("interrupted")
        ended = view["tasks"][0]["run"]
        assert (ended["status"], ended["chip"], ended["verdict"]) == ("cancelled", None,
                                                                       "PENDING"), ended
        assert (view["summary"]["cancelled"], view["summary"]["pending"]) == (1, 0)
        # Its job and its agent run end just after the reply.
        deadline = time.time() + 30
        while time.time() < deadline and (
                c.api("GET", f"/dags/{run['id']}_AGENT")["jobs"][0]["state"] != "CANCELLED"
                or c.api("GET", f"/runs/{run['id']}")["status"] != "cancelled"):
            time.sleep(0.3)
        assert c.api("GET", f"/dags/{run['id']}_AGENT")["jobs"][0]["state"] == "CANCELLED"
        assert c.api("GET", f"/runs/{run['id']}")["status"] == "cancelled"
        shown = cli(c, "eval", "show", "interrupted")
        assert "0 PASS, 0 FAIL, 0 PENDING, 1 cancelled of 1 tasks" in shown.stdout, shown.stdout
        again = cli(c, "eval", "cancel", "interrupted")
        assert again.stdout == "nothing to cancel: no run of interrupted is pending or " \
                               "running\n", again.stdout + again.stderr
    finally:
        if waiting.poll() is None:
            waiting.kill()


def test_eval_cancel_drops_an_http_agent_s_call_and_says_what_it_cancelled(
        evals_cluster: Cluster) -> None:  # noqa: F811
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.conftest import free_port

    asked = threading.Event()

    class Hangs(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            asked.set()
            time.sleep(20)  # an agent still thinking when the evaluation is cancelled

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hangs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    c = evals_cluster
    client = c.client()
    try:
        client.create_evaluation("hangs-http", {
            "name": "hangs", "kind": "http", "url": f"http://127.0.0.1:{server.server_port}/",
            "timeout_s": 60, "judge": False}, [
            {"id": f"t{i}", "user_instruction": "Anything?"} for i in range(3)])
        runs = client.run_evaluation("hangs-http", ["t0", "t1"])
        assert asked.wait(10)
        cancelled = client.cancel_evaluation("hangs-http", ["t1"])
        assert [r["id"] for r in cancelled] == [runs[1]["id"]]
        rows = {r["task_id"]: r["run"] for r in client.evaluation("hangs-http")["tasks"]}
        assert rows["t1"]["status"] == "cancelled" and rows["t0"]["status"] == "running"
        assert [r["task_id"] for r in client.cancel_evaluation("hangs-http")] == ["t0"]
        time.sleep(1)
        view = client.evaluation("hangs-http")
        assert [r["run"]["status"] if r["run"] else None for r in view["tasks"]] == [
            "cancelled", "cancelled", None]
        assert view["summary"]["cancelled"] == 2 and view["summary"]["in_flight"] == 0
        assert client.cancel_evaluation("hangs-http") == []
    finally:
        server.shutdown()


ANSWERS = '''
from titan import evals

evals.respond("Hello: " + evals.task()["user_instruction"])
'''


def test_the_longest_evaluation_and_task_ids_allowed_can_run(
        evals_cluster: Cluster) -> None:  # noqa: F811
    # Each id may have 100 characters; their run id ("<e>.<t>.<hex>") and its job's DAG
    # ("<run id>_AGENT") were too long for 200: the run was refused ("invalid run: id: must
    # be 1-200 characters") or failed as internal_error ("DAG name is longer than 200").
    c = evals_cluster
    client = c.client()
    name = "e" * 100
    tasks = ["t" * 99 + "a", "t" * 99 + "b", "t" * 89]
    client.create_evaluation(name, agent(c, "answers", ANSWERS, judge=False),
                             [{"id": t, "user_instruction": "hi"} for t in tasks],
                             base=c.scripts)
    runs = client.run_evaluation(name)
    view = client.wait_evaluation_runs(name, runs, timeout=120)
    ids = [r["run"]["id"] for r in view["tasks"]]
    assert [r["run"]["status"] for r in view["tasks"]] == ["completed"] * 3, view["tasks"]
    assert len(set(i[:-9] for i in ids)) == 3 and all(len(i) <= 194 for i in ids), ids
    assert all(i.startswith(name + ".t") for i in ids)
    trace = client.evaluation_run(name, tasks[0], ids[0])
    assert trace["final_response"] == "Hello: hi"


def test_a_large_suite_is_answered_at_once_and_then_runs_whole(
        make_cluster: Any, postgres_url: str) -> None:
    # Runs were started one by one inside the request: 1,000 tasks outlasted the client's
    # 60 s, so `titan eval run` said "did not answer in time" (and --wait waited for
    # nothing) while the runs went on. Every run is now recorded before the reply and
    # started after it.
    import httpx

    endpoint = _Endpoint()
    endpoint.release.set()  # it answers at once
    # On PostgreSQL, where each start's commits cost most (about 13 runs a second here).
    c: Cluster = make_cluster(database_url=postgres_url,
                              env={"TITAN_EGRESS_ALLOW": "127.0.0.1"}).up()
    client = c.client()
    n = 300
    try:
        client.create_evaluation("large-suite", {
            "name": "answers", "kind": "http", "timeout_s": 30, "judge": False,
            "url": endpoint.url},
            [{"id": f"t{i}", "user_instruction": "Anything?"} for i in range(n)])
        # The reply says what was dispatched without waiting for the agents to start (it
        # took some 23 s here for 300 tasks; the CLI gives up at 60).
        reply = httpx.post(f"{c.url}/api/v1/evaluations/large-suite/runs", timeout=8.0,
                           headers={"Authorization": f"Bearer {c.admin_token}"}).json()
        runs = reply["runs"]
        assert len(runs) == n and {r["status"] for r in runs} <= {"pending", "running"}
        # Runs not started yet are cancelled before they start: none is left pending.
        cancelled = client.cancel_evaluation("large-suite")
        view = client.wait_evaluation("large-suite", timeout=120)
        statuses = [r["run"]["status"] for r in view["tasks"]]
        assert view["summary"]["runs"] == n and set(statuses) <= {"completed", "cancelled"}
        assert statuses.count("cancelled") == len(cancelled) == view["summary"]["cancelled"]
    finally:
        endpoint.close()


class _Endpoint:
    """An HTTP agent's endpoint that holds each call until ``release`` is set, counting the
    calls it got and the most it held at once."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.conftest import free_port

        lock, self.release = threading.Lock(), threading.Event()
        self.now = self.most = self.calls = 0
        outer = self

        class Waits(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                import json

                self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    outer.calls += 1
                    outer.now += 1
                    outer.most = max(outer.most, outer.now)
                outer.release.wait(60)
                with lock:
                    outer.now -= 1
                body = json.dumps({"final_response": "done"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # an endpoint's backlog, not the 5 of http.server

        self.server = Server(("127.0.0.1", free_port()), Waits)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


def test_an_http_agent_gets_at_most_the_concurrency_setting_s_calls_at_once(
        evals_cluster: Cluster) -> None:  # noqa: F811
    # Every run's call was sent at once: a suite of 1,000 tasks was 1,000 requests to the
    # agent's endpoint together. The cluster allows 2 (TITAN_EVAL_HTTP_CONCURRENCY).
    import time

    endpoint = _Endpoint()
    release = endpoint.release
    client = evals_cluster.client()
    try:
        client.create_evaluation("two-at-once", {
            "name": "waits", "kind": "http", "timeout_s": 60, "judge": False,
            "url": endpoint.url},
            [{"id": f"t{i}", "user_instruction": "Anything?"} for i in range(5)])
        runs = client.run_evaluation("two-at-once")
        deadline = time.time() + 20
        while endpoint.most < 2 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # time for more calls, had they been sent
        statuses = [r["run"]["status"] for r in client.evaluation("two-at-once")["tasks"]]
        assert (endpoint.most, sorted(statuses)) == (2, ["pending"] * 3 + ["running"] * 2), statuses
        release.set()
        view = client.wait_evaluation_runs("two-at-once", runs, timeout=60)
        assert [r["run"]["status"] for r in view["tasks"]] == ["completed"] * 5
        assert endpoint.most == 2
    finally:
        endpoint.close()


def test_runs_not_started_when_the_master_stopped_start_after_it_is_back(
        make_cluster: Any) -> None:
    # A suite's runs are recorded at once and started a few at a time after the reply: those
    # still waiting when the master stopped ended as internal_error ("the agent's job was
    # never submitted" for a job agent, "the master restarted while waiting" for an HTTP
    # one) though nothing of them had begun. They start when the master is back.
    import json
    import time

    endpoint = _Endpoint()
    release = endpoint.release
    c: Cluster = make_cluster(env={"TITAN_EGRESS_ALLOW": "127.0.0.1",
                                   "TITAN_EVAL_HTTP_CONCURRENCY": "2"}).up()
    try:
        client = c.client()
        client.create_evaluation("resumed", {
            "name": "waits", "kind": "http", "timeout_s": 60, "judge": False,
            "url": endpoint.url},
            [{"id": f"t{i}", "user_instruction": "Anything?"} for i in range(5)])
        client.run_evaluation("resumed")
        deadline = time.time() + 20
        while endpoint.calls < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert endpoint.calls == 2
        c.kill_master()
        c.start_master()
        release.set()  # the endpoint answers from now on
        view = c.client().wait_evaluation("resumed", timeout=90)
        runs = [t["run"] for t in view["tasks"]]
        # The two calls the stop cut off end as documented; the three waiting ones ran.
        cut = [r for r in runs if r["status"] != "completed"]
        assert len(cut) == 2 and all("master restarted" in json.dumps(r) for r in cut), cut
        assert sum(r["status"] == "completed" for r in runs) == 3, runs
    finally:
        endpoint.close()


def test_an_evaluation_is_deleted_with_its_tasks_and_runs_but_not_while_they_run(
        evals_cluster: Cluster) -> None:  # noqa: F811
    # There was no way to delete an evaluation: its tasks and runs stayed for good.
    import time

    from titan.errors import Conflict, NotFound

    endpoint = _Endpoint()
    client = evals_cluster.client()
    try:
        client.create_evaluation("doomed", {
            "name": "waits", "kind": "http", "timeout_s": 60, "judge": False,
            "url": endpoint.url}, [{"id": f"t{i}", "user_instruction": "Anything?"}
                                   for i in range(3)])
        runs = client.run_evaluation("doomed")
        deadline = time.time() + 20
        while endpoint.calls < 2 and time.time() < deadline:
            time.sleep(0.1)
        with pytest.raises(Conflict, match="3 run.s. still pending or running"):
            client.delete_evaluation("doomed")
        said = cli(evals_cluster, "eval", "delete", "doomed")
        assert said.returncode != 0 and "titan eval cancel doomed" in said.stderr, said
        out = client.delete_evaluation("doomed", force=True)
        assert (out["deleted"], out["runs"]) == (True, 3)
        assert sorted(out["cancelled"]) == sorted(r["id"] for r in runs)
        with pytest.raises(NotFound):
            client.evaluation("doomed")
        assert "doomed" not in [e["id"] for e in client.api("GET", "/evaluations")["evaluations"]]
        # The agent runs the runs recorded are telemetry: they stay, for retention.
        assert client.api("GET", f"/runs/{runs[0]['id']}")["status"] == "cancelled"
        with pytest.raises(NotFound):
            client.delete_evaluation("doomed")
        # Deleted, its name is free again.
        client.create_evaluation("doomed", {"name": "waits", "kind": "http", "judge": False,
                                            "url": endpoint.url}, [])
        said = cli(evals_cluster, "eval", "delete", "doomed")
        assert said.returncode == 0 and "deleted evaluation doomed: its tasks and 0 run(s)" \
            in said.stdout, said
    finally:
        endpoint.close()


LONG_LOG_THEN_CRASH = '''
import sys
from titan import evals

evals.task()
for i in range(15_000):
    print(f"step {i}: still working through the order history")
print("FATAL: the order service refused our token (401)", flush=True)
sys.exit(4)
'''


def test_a_crash_is_explained_by_the_end_of_a_long_log(evals_cluster: Cluster) -> None:  # noqa: F811
    # An agent that said nothing on stderr and exited 4 after 15,000 lines: its run read "the
    # agent crashed (exit code 4): exit code 4", and the log was read from its start (its
    # first 10,000 lines), never reaching the last one, which says why.
    c = evals_cluster
    c.client().create_evaluation("long-log", agent(c, "long_log", LONG_LOG_THEN_CRASH), [
        {"id": "crash", "user_instruction": "What is the status of order A-1001?",
         "initial_state": {"order": {"A-1001": {"status": "processing"}}}}],
        base=c.scripts)
    done = cli(c, "eval", "run", "long-log", "--task", "crash", "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    row = c.client().evaluation("long-log")["tasks"][0]["run"]
    assert (row["status"], row["error_class"]) == ("failed", "agent_5xx"), row
    assert row["error_detail"] == ("the agent crashed (exit code 4): FATAL: the order service "
                            "refused our token (401)"), row
