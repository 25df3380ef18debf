"""What a `WS /events` subscription lets through (titan.master.api.stream.Filter): `run=`
narrows every event that is about one agent run, `dag=` every event about one DAG run."""

from __future__ import annotations

from titan.master.api.stream import parse_filter


def event(kind: str, **data: object) -> dict[str, object]:
    return {"type": kind, "data": data}


def test_run_narrows_every_event_of_an_agent_run() -> None:
    # agent_run_updated went to a ?run=A page for every run's stage change.
    f = parse_filter({"run": "A"})
    assert f(event("agent_run_updated", id="A", status="RUNNING", dag_id=3,
                   stage_status="COMPLETED"))
    assert not f(event("agent_run_updated", id="B", status="RUNNING", dag_id=4,
                       stage_status="WAITING"))
    assert f(event("run_updated", id="A")) and not f(event("run_updated", id="B"))
    assert f(event("run_created", id="A-replay-1", replay_of="A"))  # its replays' list
    assert f(event("action_created", run_id="A")) and not f(event("action_created", run_id="B"))
    # Without run=, every run's events pass; events of no run are not narrowed by it.
    assert parse_filter({})(event("agent_run_updated", id="B", status="RUNNING"))
    assert f(event("worker_updated", id="w-1"))


def test_dag_narrows_job_and_dag_events() -> None:
    f = parse_filter({"dag": "7", "types": "job_updated,dag_updated"})
    assert f(event("job_updated", dag_id=7, id=1)) and not f(event("job_updated", dag_id=8, id=2))
    assert not f(event("run_updated", id="A"))  # not asked for
