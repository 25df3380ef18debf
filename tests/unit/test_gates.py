"""Approval gates in the scheduler: waiting holds no slot, approve releases, reject and expiry
skip, every decision applies once. Driven with a fake clock, no I/O."""

from __future__ import annotations

import pytest
from tests.unit.test_scheduler import Clock, by_name, make, worker

from titan.errors import Conflict, InvalidDAG, ValidationFailed
from titan.master.scheduling import gates
from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import Changes, DagRec, JobRec, dag_status
from titan.master.scheduling.validation import validate_dag

SHA = "0" * 64


def gate_dag(s: Scheduler, max_wait: float | None = None, dag_id: int = 1) -> DagRec:
    """build -> build.approval -> deploy, as TitanJob(hitl_message=...) submits it."""
    _, specs = validate_dag("ship", [
        {"job_id": "build", "filename": "b.py", "script_sha256": SHA,
         "hitl_message": "Ship it?", "max_wait_seconds": max_wait},
        {"job_id": "deploy", "filename": "d.py", "script_sha256": SHA, "parents": ["build"]},
    ], max_jobs=100)
    d = DagRec(id=dag_id, name="ship", run=1, agent_run_id=None, status="WAITING", started_at=None)
    recs = [JobRec(id=dag_id * 100 + i, dag_id=d.id, job_id=spec["job_id"], requirement="GENERAL",
                   priority=1, delay=0.0, affinity=False, max_attempts=1, state="PENDING",
                   attempt=0, row=spec) for i, spec in enumerate(specs)]
    ch = Changes()
    s.load(d, recs, ch)
    s.settle_dags(ch)
    return d


def run_build(s: Scheduler) -> dict[str, JobRec]:
    w = worker(s)
    d = next(iter(s.dags.values()))
    jobs = by_name(s, d)
    ch = Changes()
    [build] = s.take(w, 4, ch)
    assert build.job_id == "build"
    s.finish(build.id, build.attempt, 0, None, False, ch)
    s.settle_dags(ch)
    return jobs


def test_hitl_message_inserts_a_gate_that_children_wait_for() -> None:
    _, specs = validate_dag("ship", [
        {"job_id": "build", "filename": "b.py", "script_sha256": SHA, "hitl_message": "Ship it?"},
        {"job_id": "deploy", "filename": "d.py", "script_sha256": SHA, "parents": ["build"]},
    ], max_jobs=100)
    assert [s["job_id"] for s in specs] == ["build", "build.approval", "deploy"]
    gate = specs[1]
    assert gate["job_type"] == "APPROVAL" and gate["parents"] == ["build"]
    assert gate["hitl_message"] == "Ship it?"
    assert specs[2]["parents"] == ["build.approval"]


def test_a_gate_id_collision_is_a_clear_error() -> None:
    from titan.errors import InvalidDAG
    with pytest.raises(InvalidDAG, match="taken by the approval gate"):
        validate_dag("x", [
            {"job_id": "a", "filename": "a.py", "script_sha256": SHA, "hitl_message": "ok?"},
            {"job_id": "a.approval", "filename": "a.py", "script_sha256": SHA},
        ], max_jobs=10)


def test_waiting_gate_holds_no_slot_and_approval_releases_children() -> None:
    s = make()
    gate_dag(s)
    jobs = run_build(s)
    gate, deploy = jobs["build.approval"], jobs["deploy"]
    assert gate.state == "WAITING_APPROVAL"
    assert deploy.state == "PENDING"
    assert not any(gate.id in w.running for w in s.workers.values())
    assert dag_status(s.dags[gate.dag_id].counts) == "RUNNING"
    ch = Changes()
    gates.decide(s, gate, True, "alice", "looks good", ch)
    assert gate.state == "APPROVED" and deploy.state == "READY"
    assert ch.jobs[gate.id]["decided_by"] == "alice"
    assert ch.jobs[gate.id]["decision_comment"] == "looks good"
    with pytest.raises(Conflict, match="APPROVED, not waiting"):
        gates.decide(s, gate, False, "bob", None, Changes())


def test_reject_skips_descendants_and_the_dag_fails_partially() -> None:
    s = make()
    d = gate_dag(s)
    jobs = run_build(s)
    ch = Changes()
    gates.decide(s, jobs["build.approval"], False, "bob", "not today", ch)
    s.settle_dags(ch)
    assert jobs["build.approval"].state == "REJECTED"
    assert jobs["deploy"].state == "SKIPPED"
    assert ch.dags[d.id]["status"] == "PARTIAL"  # build completed, the gate did not pass


def test_expiry_happens_once_and_a_late_decision_is_refused() -> None:
    clock = Clock()
    s = make(clock)
    gate_dag(s, max_wait=30)
    jobs = run_build(s)
    gate = jobs["build.approval"]
    clock.t += 29
    ch = Changes()
    s.timer("approval", gate.id, ch)  # fired early: re-armed, nothing happens
    assert gate.state == "WAITING_APPROVAL" and ch.timers
    clock.t += 2
    ch = Changes()
    s.timer("approval", gate.id, ch)
    assert gate.state == "EXPIRED" and jobs["deploy"].state == "SKIPPED"
    again = Changes()
    s.timer("approval", gate.id, again)
    assert not again.jobs  # exactly once
    with pytest.raises(Conflict):
        gates.decide(s, gate, True, "alice", None, Changes())


def test_a_decision_before_the_deadline_wins_over_the_timer() -> None:
    clock = Clock()
    s = make(clock)
    gate_dag(s, max_wait=5)
    jobs = run_build(s)
    gates.decide(s, jobs["build.approval"], True, "alice", None, Changes())
    clock.t += 10
    ch = Changes()
    s.timer("approval", jobs["build.approval"].id, ch)
    assert jobs["build.approval"].state == "APPROVED" and not ch.jobs


def test_retrying_a_rejected_gate_asks_again_without_the_old_decision() -> None:
    s = make()
    gate_dag(s)
    jobs = run_build(s)
    gate = jobs["build.approval"]
    gates.decide(s, gate, False, "bob", "no", Changes())
    ch = Changes()
    s.retry_job(gate, ch)
    assert gate.state == "WAITING_APPROVAL"
    assert ch.jobs[gate.id]["decided_by"] is None
    assert jobs["deploy"].state == "PENDING"


def test_recovered_gate_rearms_its_deadline() -> None:
    clock = Clock()
    s = make(clock)
    d = DagRec(id=9, name="g", run=1, agent_run_id=None, status="RUNNING", started_at=1.0)
    row = {"parents": [], "job_type": "APPROVAL", "max_wait_seconds": 60.0,
           "approval_deadline": clock.t + 60}
    gate = JobRec(id=901, dag_id=9, job_id="g", requirement="GENERAL", priority=1, delay=0.0,
                  affinity=False, max_attempts=1, state="WAITING_APPROVAL", attempt=0, row=row,
                  approval_deadline=row["approval_deadline"])
    ch = Changes()
    s.load(d, [gate], ch)
    assert (clock.t + 60, "approval", 901) in ch.timers


def test_a_gate_whose_deadline_passed_while_the_master_was_down_ended_at_its_deadline() -> None:
    clock = Clock()
    s = make(clock)
    d = DagRec(id=9, name="g", run=1, agent_run_id=None, status="RUNNING", started_at=1.0)
    deadline = clock.t - 600  # ten minutes before this master started
    row = {"parents": [], "job_type": "APPROVAL", "max_wait_seconds": 60.0,
           "approval_deadline": deadline}
    gate = JobRec(id=901, dag_id=9, job_id="g", requirement="GENERAL", priority=1, delay=0.0,
                  affinity=False, max_attempts=1, state="WAITING_APPROVAL", attempt=0, row=row,
                  approval_deadline=deadline)
    s.load(d, [gate], Changes())
    ch = Changes()
    s.timer("approval", gate.id, ch)  # the re-armed timer, due at once
    assert gate.state == "EXPIRED"
    assert ch.jobs[gate.id]["finished_at"] == ch.jobs[gate.id]["decided_at"] == deadline


def test_cancelling_a_waiting_gate_skips_what_follows() -> None:
    s = make()
    gate_dag(s)
    jobs = run_build(s)
    ch = Changes()
    s.cancel_job(jobs["build.approval"], ch)
    assert jobs["build.approval"].state == "CANCELLED"
    assert jobs["deploy"].state == "SKIPPED"


@pytest.mark.parametrize("message", ["", "   \n"])
def test_an_empty_hitl_message_is_refused_not_dropped(message: str) -> None:
    # "" asked nobody: the gate was left out and what followed ran unapproved (QA).
    with pytest.raises(InvalidDAG, match="hitl_message is empty"):
        validate_dag("ship", [{"job_id": "build", "filename": "b.py", "script_sha256": SHA,
                               "hitl_message": message}], max_jobs=100)
    from titan_sdk import TitanJob
    with pytest.raises(ValidationFailed, match="hitl_message is empty"):
        TitanJob(job_id="build", filename="b.py", hitl_message=message)


@pytest.mark.parametrize(("name", "filename", "problem"), [
    ("DAG-DAG-x", "a.py", "cannot start with 'DAG-'"),  # its ref named the DAG "x"
    ("ok", "C:\\x.py", "must be relative"),             # the worker refused it at run time
    ("ok", "c:x.py", "must be relative"),
])
def test_names_the_worker_or_a_reference_would_misread_are_refused(
        name: str, filename: str, problem: str) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        validate_dag(name, [{"job_id": "a", "filename": filename, "script_sha256": SHA}],
                     max_jobs=100)


@pytest.mark.parametrize(("field", "value"), [
    ("filename", "deploy.py"), ("timeout", 3), ("retries", 2), ("readiness", "tcp"),
    ("stop_grace", 5), ("max_restarts", 1), ("args", ["x"]), ("env", {"A": "1"}),
    ("delay", 5), ("requirement", "GPU"), ("runner", "fork"), ("port", 8080),
    ("script_sha256", SHA), ("is_archive", True), ("affinity", True),
])
def test_a_gate_refuses_what_does_not_apply_to_it(field: str, value: object) -> None:
    # A gate runs nothing: these were accepted and silently dropped (timeout None,
    # max_attempts 1), although a field that does not apply is refused (a QA pass).
    with pytest.raises(InvalidDAG, match=f"{field} does not apply to an approval gate") as err:
        validate_dag("g", [{"job_id": "g", "job_type": "APPROVAL", "hitl_message": "ok?",
                            field: value}], max_jobs=100)
    assert err.value.details == {"job_id": "g", "field": field}


def test_a_gate_takes_what_the_sdk_sends_and_what_a_schedule_shows_back() -> None:
    from titan.master.scheduling.validation import as_submitted
    from titan_sdk import TitanJob
    sent = TitanJob("review", job_type="APPROVAL", parents=[], hitl_message="ok?").to_payload(None)
    _, specs = validate_dag("g", [sent], max_jobs=100)
    _, again = validate_dag("g", as_submitted(specs), max_jobs=100)
    assert again == specs and specs[0]["job_type"] == "APPROVAL"
    validate_dag("g", [dict(sent, requirement="general", delay=0.0, retries=0)], max_jobs=100)
