"""Acceptance: approval gates (human in the loop) on a real cluster — SDK, CLI, YAML,
deadlines, roles, a script's fields refused, and a master killed while a gate waits."""

from __future__ import annotations

import json
import re
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import fresh_postgres_database
from tests.integration.harness import Cluster, shared_cluster, sign_in
from tests.integration.test_cli import titan
from titan import TitanClient, TitanJob
from titan.errors import Conflict, Forbidden

cluster = shared_cluster()  # one `titan up` for the module (see harness.py)

MakeCluster = Callable[..., Cluster]


def wait_state(client: TitanClient, ref: str, state: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        job = client.get_job(ref)
        if job["state"] == state:
            return job
        assert time.time() < deadline, f"{ref} is {job['state']}, never {state}"
        time.sleep(0.05)


def ship(cluster: Cluster, name: str = "ship", max_wait: float | None = None) -> TitanClient:
    build = cluster.script("build.py", "print('built')\n")
    deploy = cluster.script("deploy.py", "print('deployed')\n")
    client = cluster.client()
    client.submit_dag(name, [
        TitanJob(job_id="build", filename=build, hitl_message="Ship build 42?",
                 max_wait_seconds=max_wait),
        TitanJob(job_id="deploy", filename=deploy, parents=["build"]),
    ])
    return client


def test_approve_from_the_sdk_releases_the_downstream_job(cluster: Cluster) -> None:
    client = ship(cluster)
    gate = wait_state(client, "ship/build.approval", "WAITING_APPROVAL")
    assert gate["kind"] == "approval" and gate["hitl_message"] == "Ship build 42?"
    assert gate["worker_id"] is None
    # Waiting holds no worker slot, and the child has not started.
    assert all(gate["id"] not in w["running"] for w in cluster.live_workers())
    assert client.get_job_status("ship/deploy") == "PENDING"
    decided = client.approve("ship/build.approval", comment="tests pass")
    assert decided["state"] == "APPROVED"
    assert decided["decided_by"] == "admin (titan up)"
    assert decided["decision_comment"] == "tests pass" and decided["decided_at"] > 0
    dag = client.wait("ship", timeout=30)
    assert dag["status"] == "COMPLETED"
    assert [j["state"] for j in dag["jobs"]] == ["COMPLETED", "APPROVED", "COMPLETED"]
    # Followed to its end, an approved gate succeeded (it exited 1: only COMPLETED did), and
    # the follow says how it was decided (its log is empty).
    followed = titan(cluster, "logs", "ship/build.approval", "--follow")
    assert followed.returncode == 0 and followed.stdout == ""
    assert re.fullmatch(r"ship#\d+/build\.approval: APPROVED by admin \(titan up\); "
                        r"comment: tests pass\n", followed.stderr), followed.stderr
    with pytest.raises(Conflict, match="APPROVED: not waiting"):
        client.reject("ship/build.approval")
    # A new run of the same DAG asks again: it never inherits the old decision.
    ship(cluster)
    again = wait_state(client, "ship/build.approval", "WAITING_APPROVAL")
    assert again["run"] == 2 and again["decided_by"] is None


def test_reject_from_the_cli_skips_descendants(cluster: Cluster) -> None:
    client = ship(cluster)
    wait_state(client, "ship/build.approval", "WAITING_APPROVAL")
    out = titan(cluster, "reject", "ship/build.approval", "--comment", "not on a Friday")
    assert "REJECTED by admin (titan up)" in out.stdout
    dag = client.wait("ship", timeout=30)
    assert dag["status"] == "PARTIAL"
    states = {j["job_id"]: j["state"] for j in dag["jobs"]}
    assert states == {"build": "COMPLETED", "build.approval": "REJECTED", "deploy": "SKIPPED"}
    followed = titan(cluster, "logs", "ship/build.approval", "--follow", check=False)
    assert followed.returncode == 1 and re.fullmatch(
        r"ship#\d+/build\.approval: REJECTED by admin \(titan up\); comment: not on a "
        r"Friday\n", followed.stderr), followed.stderr
    shown = titan(cluster, "status", "ship/build.approval").stdout
    assert "not on a Friday" in shown and "admin (titan up)" in shown
    late = titan(cluster, "approve", "ship/build.approval", check=False)
    assert late.returncode != 0 and "not waiting for approval" in late.stderr


def test_no_decision_by_the_deadline_expires_the_gate(cluster: Cluster) -> None:
    client = ship(cluster, max_wait=2)
    wait_state(client, "ship/build.approval", "WAITING_APPROVAL")
    # Followed while it waits: the follow ends at the deadline, saying so.
    followed = titan(cluster, "logs", "ship/build.approval", "--follow", check=False)
    assert followed.returncode == 1 and re.fullmatch(
        r"ship#\d+/build\.approval: EXPIRED \(no decision within 2s\)",
        followed.stderr.splitlines()[-1]), followed.stderr
    dag = client.wait("ship", timeout=30)
    states = {j["job_id"]: j["state"] for j in dag["jobs"]}
    assert states["build.approval"] == "EXPIRED" and states["deploy"] == "SKIPPED"
    gate = client.get_job("ship/build.approval")
    assert "no decision within 2s" in gate["reason"]


def test_only_people_with_operator_rights_decide(cluster: Cluster) -> None:
    client = ship(cluster)
    wait_state(client, "ship/build.approval", "WAITING_APPROVAL")
    viewer = cluster.client(token=cluster.api("POST", "/tokens", {"role": "viewer"})["token"])
    with pytest.raises(Forbidden):
        viewer.approve("ship/build.approval")
    operator = cluster.client(
        token=cluster.api("POST", "/tokens", {"role": "operator", "name": "carol"})["token"])
    assert operator.approve("ship/build.approval")["decided_by"] == "carol"


def test_a_retried_gate_keeps_who_decided_before_when_and_why(cluster: Cluster) -> None:
    """Retrying a rejected gate wiped its decision, comment and all, from the database (an
    audit QA pass): it asks again, and the earlier decisions are kept as its history."""
    client = ship(cluster, "audit")
    gate = "audit/build.approval"
    wait_state(client, gate, "WAITING_APPROVAL")
    bob = cluster.client(
        token=cluster.api("POST", "/tokens", {"role": "operator", "name": "opbob"})["token"])
    rejected = bob.reject(gate, comment="metrics regressed 12%")
    assert client.wait("audit", timeout=30)["status"] == "PARTIAL"
    titan(cluster, "retry", gate)  # the DAG had finished: revived from its rows
    job = wait_state(client, gate, "WAITING_APPROVAL")
    assert (job["decided_by"], job["decided_at"], job["decision_comment"]) == (None, None, None)
    [first] = job["decisions"]
    assert first["state"] == "REJECTED" and first["decided_by"] == "opbob"
    assert first["decided_at"] == rejected["decided_at"]
    assert first["comment"] == "metrics regressed 12%"
    assert first["retried_by"] == "admin (titan up)"
    assert first["retried_at"] >= first["decided_at"]
    shown = titan(cluster, "status", gate).stdout
    assert re.search(r"decisions:\n  REJECTED by opbob .*; comment: metrics regressed 12% "
                     r"\(asked again .*, retried by admin \(titan up\)\)", shown), shown

    titan(cluster, "reject", gate, "--comment", "still slow")
    client.wait("audit", timeout=30)
    client.retry_dag("audit")  # a DAG's retry asks its rejected gate again too
    wait_state(client, gate, "WAITING_APPROVAL")
    approved = bob.approve(gate, comment="fixed in 43")
    assert client.wait("audit", timeout=30)["status"] == "COMPLETED"
    job = client.get_job(gate)
    assert job["state"] == "APPROVED" and job["decision_comment"] == "fixed in 43"
    assert approved["decisions"] == job["decisions"]
    assert [(d["state"], d["decided_by"], d["comment"]) for d in job["decisions"]] == [
        ("REJECTED", "opbob", "metrics regressed 12%"),
        ("REJECTED", "admin (titan up)", "still slow")]
    with httpx.Client(base_url=cluster.url, timeout=30) as s:  # the dashboard's job page
        sign_in(s, cluster.admin_token)
        page = s.get(f"/jobs/{job['id']}").text
    assert "Earlier decisions" in page and "metrics regressed 12%" in page
    assert "still slow" in page and 'class="retried-by"' in page


def test_a_comment_over_the_limit_is_refused_naming_it_not_cut(cluster: Cluster) -> None:
    """Comments were cut to 2,000 characters without a word: the end of a long "why" lost."""
    client = ship(cluster, "long-why")
    gate = "long-why/build.approval"
    wait_state(client, gate, "WAITING_APPROVAL")
    out = titan(cluster, "reject", gate, "--comment", "x" * 2001, check=False)
    assert out.returncode != 0
    assert "comment is 2,001 characters long; a decision's comment holds at most 2,000" \
        in out.stderr, out.stderr
    assert client.get_job_status(gate) == "WAITING_APPROVAL"  # nothing decided
    longest = "why " * 500
    assert client.reject(gate, comment=longest)["decision_comment"] == longest


def test_gate_declared_in_yaml(cluster: Cluster, tmp_path: Path) -> None:
    cluster.script("train.py", "print('trained')\n")
    cluster.script("publish.py", "print('published')\n")
    pipeline = cluster.scripts / "release.yaml"
    pipeline.write_text(
        "name: release\njobs:\n"
        "  - id: train\n    file: train.py\n"
        "  - id: review\n    type: APPROVAL\n    depends_on: train\n"
        "    hitl_message: Is the model good enough?\n"
        "  - id: publish\n    file: publish.py\n    depends_on: review\n"
    )
    client = cluster.client()
    client.submit_yaml(str(pipeline))
    gate = wait_state(client, "release/review", "WAITING_APPROVAL")
    assert gate["hitl_message"] == "Is the model good enough?"
    client.approve(gate["id"])
    assert client.wait("release", timeout=30)["status"] == "COMPLETED"


def test_a_gate_with_a_scripts_fields_is_refused_naming_the_field(cluster: Cluster) -> None:
    # They were taken and dropped: a gate given timeout 3 and retries 2 showed neither.
    for field, value in (("filename", "deploy.py"), ("timeout", 3), ("retries", 2),
                         ("readiness", "tcp")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            cluster.api("POST", "/dags", {"name": "gf", "jobs": [
                {"job_id": "g", "job_type": "APPROVAL", "hitl_message": "m", field: value}]})
        error = json.loads(refused.value.read())["error"]
        assert refused.value.code == 400 and error["details"]["field"] == field, error
        assert f"{field} does not apply to an approval gate" in error["message"]
    # What the SDK sends for a gate is fine.
    client = cluster.client()
    client.submit_dag("gf", [TitanJob("g", job_type="APPROVAL", hitl_message="m")])
    assert wait_state(client, "gf/g", "WAITING_APPROVAL")["timeout"] is None
    client.cancel("gf")


def test_gates_wait_without_blocking_other_work(make_cluster: MakeCluster) -> None:
    c = make_cluster().up(slots=1)
    quick = c.script("quick.py", "print('ok')\n")
    client = c.client()
    client.submit_dag("gated", [
        TitanJob(job_id=f"g{i}", filename=quick, hitl_message="ok?") for i in range(3)
    ])
    for i in range(3):
        wait_state(client, f"gated/g{i}.approval", "WAITING_APPROVAL")
    client.submit_dag("other", [TitanJob(job_id="work", filename=quick)])
    assert client.wait("other", timeout=30)["status"] == "COMPLETED"  # the one slot was free


def test_a_waiting_gate_and_its_deadline_survive_kill_9(make_cluster: MakeCluster) -> None:
    c = make_cluster().up()
    # 12 s: a restart on a loaded box took longer than the 4 s this gave once, and the gate
    # had expired by the time the fresh master was asked.
    client = ship(c, max_wait=12)
    gate = wait_state(client, "ship/build.approval", "WAITING_APPROVAL")
    assert gate["approval_deadline"] > time.time()
    c.kill_master()
    c.start_master()
    fresh = c.client()
    assert fresh.get_job_status("ship/build.approval") == "WAITING_APPROVAL"
    dag = fresh.wait("ship", timeout=30)  # the re-armed deadline fires after the restart
    assert {j["job_id"]: j["state"] for j in dag["jobs"]}["build.approval"] == "EXPIRED"


def test_a_gate_whose_deadline_passed_while_the_master_was_down_ended_then(
        make_cluster: MakeCluster) -> None:
    # It expired at the restart, and said so: finished_at was the master's start time.
    c = make_cluster().up()
    client = ship(c, max_wait=1)
    gate = wait_state(client, "ship/build.approval", "WAITING_APPROVAL")
    c.kill_master()
    time.sleep(max(0.0, gate["approval_deadline"] - time.time()) + 2)
    c.start_master()
    fresh = c.client()
    fresh.wait("ship", timeout=30)
    expired = fresh.get_job("ship/build.approval")
    assert expired["state"] == "EXPIRED", expired
    assert expired["finished_at"] == expired["decided_at"] == gate["approval_deadline"]


_REFUSE = """
CREATE FUNCTION refuse() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_comment BEFORE UPDATE ON jobs FOR EACH ROW
    WHEN (NEW.decision_comment = 'refused') EXECUTE FUNCTION refuse();
CREATE TRIGGER refuse_cancel BEFORE UPDATE ON dags FOR EACH ROW
    WHEN (NEW.cancelled) EXECUTE FUNCTION refuse();
"""


def test_a_decision_or_cancel_that_fails_to_commit_changes_nothing(
        make_cluster: MakeCluster) -> None:
    # On PostgreSQL a NUL in a comment was a 500 and left the gate stuck until a restart:
    # APPROVED in the scheduler's memory (decided before the commit), WAITING_APPROVAL in
    # the database, every later decision refused. The NUL is refused before anything is
    # decided; any other commit that fails (a trigger stands in for a refusal no check
    # foresees) leaves memory as the database has it, and no kill goes out for it.
    with fresh_postgres_database("titan_gates") as url:
        c = make_cluster(database_url=url).up()
        client = ship(c)
        gate = "ship/build.approval"
        wait_state(client, gate, "WAITING_APPROVAL")
        headers = {"Authorization": f"Bearer {c.admin_token}"}
        with httpx.Client(base_url=f"{c.url}/api/v1", headers=headers, timeout=30) as api:
            r = api.post(f"/jobs/{gate}/approve", json={"comment": "x\u0000y"})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "unstorable_value"
            assert r.json()["error"]["details"] == {"field": "comment"}
            r = api.post(f"/jobs/{gate}/reject", json={"comment": "\u0000"})
            assert r.json()["error"]["code"] == "unstorable_value", r.text

            engine = sa.create_engine(url)
            with engine.begin() as conn:
                conn.exec_driver_sql(_REFUSE)
            for verb in ("approve", "reject"):
                r = api.post(f"/jobs/{gate}/{verb}", json={"comment": "refused"})
                # Refused by the database, not 409 "not waiting" by a scheduler ahead of it.
                assert r.status_code == 500 and "refused by the test" in r.text, r.text
                assert client.get_job_status(gate) == "WAITING_APPROVAL"
                assert client.get_job_status("ship/deploy") == "PENDING"

            nap = c.script("nap.py", "import time\ntime.sleep(3)\nprint('slept')\n")
            client.submit_dag("nap", [TitanJob(job_id="sleeper", filename=nap)])
            wait_state(client, "nap/sleeper", "RUNNING")
            assert api.post("/dags/nap/cancel").status_code >= 400
            assert client.get_job_status("nap/sleeper") == "RUNNING"
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TRIGGER refuse_comment ON jobs; "
                                     "DROP TRIGGER refuse_cancel ON dags")
            engine.dispose()
            # The cancel that failed killed nothing: the job ran to its end.
            assert client.wait("nap", timeout=30)["status"] == "COMPLETED"
            assert "slept" in client.fetch_logs("nap/sleeper")

            decided = client.approve(gate, comment="fine")
            assert decided["state"] == "APPROVED" and decided["decision_comment"] == "fine"
            assert client.wait("ship", timeout=30)["status"] == "COMPLETED"
