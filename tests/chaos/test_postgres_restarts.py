"""Chaos: PostgreSQL "restarts" again and again while jobs and recorded actions flow.

The master reaches PostgreSQL through a TCP proxy that the test cuts: every connection closed
at once and new ones refused for a second or two — what a client sees of a server restart
(the server side ends those sessions, so their locks go with them too). The master waits the
database out (its writer retries a batch, in order, until the database is back; a COMMIT whose
answer was lost is looked up, never repeated), the SDK and the worker ride out the 503s, and
nothing acknowledged is lost: every job of every acknowledged submission completes exactly
once (leases are long, so none may expire) and every recorded action is stored exactly once.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import Report, scale
from tests.chaos.tcp_proxy import TcpProxy
from tests.conftest import fresh_postgres_database
from titan_sdk import TitanJob

pytestmark = pytest.mark.slow

JOB = """
import os
from titan import TitanClient

client = TitanClient()
client.store_incr("pg-counter")
client.store_sadd("pg-ran", os.environ["TITAN_JOB_ID"] + ":" + os.environ["TITAN_ATTEMPT"])
"""

ACTIONS = """
import sys, time
from titan import trace

n = int(sys.argv[1])
with trace.run(agent_id="chaos-actions") as run:
    for i in range(n):
        with trace.action("step", inputs={"i": i}) as a:
            a.outputs = {"twice": 2 * i}
        if i % 100 == 99:
            time.sleep(0.02)
assert trace.flush(300), "flush() timed out"
print(run.id)
"""


def test_postgres_restarts_while_jobs_and_actions_flow(make_cluster: Any, tmp_path: Path,
                                                        chaos_report: Report) -> None:
    jobs_total = scale(200, 1000)
    actions_total = scale(2000, 10_000)
    restarts = scale(3, 8)
    gap = scale((1.0, 2.5), (5.0, 40.0))
    down = scale((0.5, 1.5), (1.0, 3.0))
    with fresh_postgres_database("titan_pgchaos") as url:
        host_port = url.split("@", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "5432")
        proxy = TcpProxy((host, int(port)))
        proxied = url.replace(host_port, f"127.0.0.1:{proxy.port}")
        c = make_cluster(lease_seconds=60, database_url=proxied)
        try:
            c.start_master()
            c.add_worker(slots=4, name="pg-chaos")
            client = c.client()
            script = c.script("pg_job.py", JOB)
            acked: list[str] = []
            failures: list[BaseException] = []

            def submit() -> None:
                try:
                    for b in range(jobs_total // 50):
                        dag = client.submit_dag(f"pg-{b}", [
                            TitanJob(job_id=f"j{b}_{i}", filename=script, retries=0)
                            for i in range(50)])
                        acked.append(dag["id"])
                        time.sleep(scale(0.3, 2.0))
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    failures.append(exc)

            submitter = threading.Thread(target=submit)
            submitter.start()
            actions_py = tmp_path / "actions.py"
            actions_py.write_text(textwrap.dedent(ACTIONS))
            env = dict(c.env, TITAN_URL=c.url, TITAN_TOKEN=c.admin_token)
            recorder = subprocess.Popen([sys.executable, str(actions_py), str(actions_total)],
                                        env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, cwd=tmp_path)
            rng = random.Random(19)
            recovery: list[float] = []
            for _ in range(restarts):
                time.sleep(rng.uniform(*gap))
                proxy.cut(down_for=rng.uniform(*down))
                began = time.monotonic()
                while True:  # back when a write through the master commits again
                    try:
                        client.store_put("pg-probe", str(began))
                        break
                    except Exception:  # noqa: BLE001 - still away
                        time.sleep(0.05)
                recovery.append(time.monotonic() - began)
            submitter.join(timeout=300)
            assert not failures, failures
            out, _ = recorder.communicate(timeout=300)
            assert recorder.returncode == 0, out.decode(errors="replace")[-3000:]
            run_id = out.decode().strip().splitlines()[-1]
            completed = duplicated = 0
            for dag_id in acked:
                done = client.wait_dag(dag_id, timeout=300)
                assert done["status"] == "COMPLETED", (done, c.log())
                for job in client.get_dag(dag_id)["jobs"]:
                    completed += job["state"] == "COMPLETED"
                    duplicated += job["attempt"] != 1
            ran = client.store_smembers("pg-ran")
            counter = int(client.store_get("pg-counter") or 0)
            stored_actions = c.api("GET", f"/runs/{run_id}")["action_count"]
            lost = len(acked) * 50 - completed + (actions_total - min(stored_actions,
                                                                      actions_total))
            chaos_report("PostgreSQL restarted under load", faults=restarts,
                         attempted=f"{jobs_total} jobs + {actions_total} actions",
                         acknowledged=f"{len(acked) * 50} jobs + {stored_actions} actions",
                         lost=lost, duplicated=duplicated + counter - len(ran),
                         recovery=f"max {max(recovery):.1f}s")
            assert len(acked) * 50 == jobs_total and completed == jobs_total
            assert duplicated == 0 and counter == len(ran) == jobs_total
            assert stored_actions == actions_total, (stored_actions, c.log())
        finally:
            c.stop()
            proxy.close()


def test_a_database_away_longer_than_the_credential_cache_loses_no_worker(
        make_cluster: Any) -> None:
    """PostgreSQL away for 14 s, past the 10 s cache of the worker's credential: its channel
    cannot be re-checked, which does not make it revoked. The worker was lost (and its
    running job ran again as attempt 2), then reconnected ~130 times a second, each refusal
    an internal error with a traceback in the master's log."""
    with fresh_postgres_database("titan_pgaway") as url:
        host_port = url.split("@", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "5432")
        proxy = TcpProxy((host, int(port)))
        c = make_cluster(lease_seconds=60,
                         database_url=url.replace(host_port, f"127.0.0.1:{proxy.port}"))
        try:
            c.start_master()
            c.add_worker(slots=1, name="pg-away")
            client = c.client()
            slow = c.script("pg_away.py", "import time\ntime.sleep(20)\nprint('done')\n")
            dag = client.submit_dag("pg-away", [TitanJob(job_id="slow", filename=slow)])
            deadline = time.monotonic() + 60
            while client.get_dag(dag["id"])["jobs"][0]["state"] != "RUNNING":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            proxy.cut(down_for=14)
            time.sleep(14)
            job = client.wait(f"{dag['ref']}/slow", timeout=120)
            log = (c.root / "master.log").read_text(errors="replace")
            assert job["state"] == "COMPLETED" and job["attempt"] == 1, (job, log[-3000:])
            # The worker's own loss line, not psycopg's "the connection is lost" in the outage
            # warning (that string, matched bare, failed a green run once).
            assert "(pg-away) is lost" not in log, log[-3000:]
            assert "Exception in ASGI application" not in log, log[-3000:]
        finally:
            c.stop()
            proxy.close()


def test_a_database_outage_logs_its_start_and_end_not_tracebacks(make_cluster: Any) -> None:
    """Reads refused while PostgreSQL is away answer 503 with Retry-After, and the log says
    the outage in warnings: its start, the first refused read, its end. Each refused read was
    also uvicorn's "Exception in ASGI application" with two psycopg/SQLAlchemy tracebacks:
    Starlette's Exception handler re-raised every answered error to the server."""
    import httpx

    with fresh_postgres_database("titan_pglog") as url:
        host_port = url.split("@", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "5432")
        proxy = TcpProxy((host, int(port)))
        c = make_cluster(database_url=url.replace(host_port, f"127.0.0.1:{proxy.port}"))
        try:
            c.start_master()
            client = c.client()
            dag = client.submit_dag("outage", [TitanJob(job_id="a", filename=c.script(
                "noop.py", "print('ok')\n"))])
            client.store_put("before", "1")
            log_path = c.root / "master.log"
            seen = len(log_path.read_text(errors="replace"))
            proxy.cut(down_for=5)
            written = threading.Thread(target=client.store_put, args=("during", "2"))
            written.start()  # waits in the writer until the database is back
            statuses, retry_after = [], set()
            headers = {"Authorization": f"Bearer {c.admin_token}"}
            with httpx.Client(base_url=c.url + "/api/v1", headers=headers, timeout=10) as http:
                for _ in range(8):
                    answer = http.get(f"/dags/{dag['id']}")
                    statuses.append(answer.status_code)
                    if answer.status_code == 503:
                        assert answer.json()["error"]["code"] == "database_unavailable"
                        retry_after.add(answer.headers.get("Retry-After"))
                    time.sleep(0.4)
            written.join(timeout=60)
            assert not written.is_alive()
            assert client.store_get("during") == "2"
            deadline = time.monotonic() + 30
            while "the database is back after" not in log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, c.log()
                time.sleep(0.1)
            log = log_path.read_text(errors="replace")[seen:]
            assert statuses.count(503) >= 3 and retry_after == {"1"}, statuses
            assert "Exception in ASGI application" not in log, log[-3000:]
            assert "Traceback" not in log and "internal error" not in log, log[-3000:]
            assert "the database is unavailable (" in log, log[-3000:]
            # The first refused read is said; the next ones (within 30 s) are only counted.
            assert log.count("database unavailable on GET /api/v1/dags/") == 1, log[-3000:]
        finally:
            c.stop()
            proxy.close()
