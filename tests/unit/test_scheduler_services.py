"""The scheduler's rules for services, driven directly with a fake clock: health reports, the
address published and withdrawn, stop versus cancel, a stop surviving a lost message, a
drained worker handing its service back, two runs of one DAG each with its own key and the
DAG's key naming the latest run's live service."""

from __future__ import annotations

import pytest

from titan import services
from titan.errors import Conflict
from titan.master.scheduling import services as rules
from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import Changes, DagRec, JobRec, StoreWrite, WorkerRec


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def setup(parents_of_user: list[str] | None = None) -> tuple[Scheduler, WorkerRec, JobRec, Clock]:
    clock = Clock()
    s = Scheduler(lease_seconds=10, affinity_wait=0.5, retry_backoff=1.0, retry_backoff_max=60,
                  clock=clock)
    w = WorkerRec(id="w1", name="w1", hostname="h", capabilities=frozenset({"GENERAL"}),
                  slots=4, last_seen=0)
    s.add_worker(w, Changes())
    d = DagRec(id=1, name="infer", run=1, agent_run_id=None, status="WAITING", started_at=None)
    svc = JobRec(id=10, dag_id=1, job_id="model", requirement="GENERAL", priority=1, delay=0.0,
                 affinity=False, max_attempts=1, state="PENDING", attempt=0,
                 row={"parents": [], "job_type": "SERVICE",
                      "service": dict(services.DEFAULTS, stop_grace=4.0)})
    after = JobRec(id=11, dag_id=1, job_id="cleanup", requirement="GENERAL", priority=1,
                   delay=0.0, affinity=False, max_attempts=1, state="PENDING", attempt=0,
                   row={"parents": ["model"], "job_type": "RUN_PAYLOAD", "service": None})
    s.load(d, [svc, after], Changes())
    taken = s.take(w, 1, Changes())
    assert taken == [svc] and svc.state == "RUNNING"
    return s, w, svc, clock


#: A service of run 1 withdrawn, no other run's live.
WITHDRAWN = [StoreWrite("services/infer#1/model", "10.0.0.5:8123", True),
             StoreWrite("services/infer/model", "10.0.0.5:8123", True)]


def status(svc: JobRec, health: str, **kw: object) -> dict:
    return rules.check_entry({"id": svc.id, "attempt": svc.attempt, "health": health,
                              "host": "10.0.0.5", "port": 8123, "restarts": 0, **kw})


def test_a_lease_starts_a_fresh_status_and_ready_publishes_the_address() -> None:
    s, _, svc, _ = setup()
    assert svc.service_status == {"health": "starting", "restarts": 0}
    ch = Changes()
    assert rules.report(s, "w1", status(svc, "starting"), ch)
    assert ch.store == [] and svc.service_status["address"] == "10.0.0.5:8123"
    ch = Changes()
    assert rules.report(s, "w1", status(svc, "ready", up_since=990.0), ch)
    assert ch.store == [StoreWrite("services/infer#1/model", "10.0.0.5:8123"),
                        StoreWrite("services/infer/model", "10.0.0.5:8123")]
    assert ch.jobs[svc.id]["service_status"]["health"] == "ready"
    view = rules.view(svc.row["service"], svc.service_status, 1000.0)
    assert view["uptime"] == 10.0 and view["stop_grace"] == 4.0
    # Unhealthy and back: the address stays published, and is not written again.
    ch = Changes()
    rules.report(s, "w1", status(svc, "unhealthy", detail="GET / answered 500"), ch)
    rules.report(s, "w1", status(svc, "ready"), ch)
    assert ch.store == [] and svc.service_status["detail"] is None
    # Another worker's report, or a stale attempt's, changes nothing.
    assert not rules.report(s, "w2", status(svc, "restarting"), Changes())
    assert not rules.report(s, "w1", {**status(svc, "restarting"), "attempt": 7}, Changes())


def test_stop_is_graceful_and_ends_completed_whatever_the_exit() -> None:
    s, w, svc, _ = setup()
    rules.report(s, "w1", status(svc, "ready"), Changes())
    ch = Changes()
    rules.stop(s, svc, None, ch)
    assert svc.state == "RUNNING"  # until its worker says the process is gone
    assert w.cancels == [(svc.id, 1)]
    assert rules.stop_grace(svc, 1) == 4.0 and rules.stop_grace(svc, 2) is None
    rules.stop(s, svc, 1.0, Changes())  # asked again: nothing changes
    assert w.cancels == [(svc.id, 1)] and svc.service_status["stopping"] == 4.0
    # A heartbeat sends the stop again: a lost message or a master restart cannot lose it.
    assert rules.stopping(s, w, [(svc.id, 1), (99, 1)]) == [(svc.id, 1)]
    ch = Changes()
    assert s.finish(svc.id, 1, -9, "stopped on request; killed after a 4 s grace", False, ch,
                    worker_id="w1")
    assert svc.state == "COMPLETED"
    assert ch.jobs[svc.id]["reason"] == "stopped on request; killed after a 4 s grace"
    assert ch.store == WITHDRAWN
    assert s.jobs[11].state == "READY"  # its child runs, as after any completion
    with pytest.raises(Conflict, match="already ended COMPLETED"):
        rules.stop(s, svc, None, Changes())


def test_cancel_is_not_stop() -> None:
    s, w, svc, _ = setup()
    rules.report(s, "w1", status(svc, "ready"), Changes())
    ch = Changes()
    s.cancel_job(svc, ch)
    assert svc.state == "CANCELLED" and w.cancels == [(svc.id, 1)]
    assert rules.stop_grace(svc, 1) is None  # a plain kill for the worker
    assert ch.store == WITHDRAWN
    assert s.jobs[11].state == "SKIPPED"


def test_only_services_stop_and_one_not_started_just_ends() -> None:
    s, _, svc, _ = setup()
    with pytest.raises(Conflict, match="not a service"):
        rules.stop(s, s.jobs[11], None, Changes())
    # The service is handed back (its worker drained): queued again, then stopped there.
    ch = Changes()
    assert s.finish(svc.id, 1, None, "released: its worker is stopping", False, ch,
                    worker_id="w1", released=True)
    assert svc.state == "READY" and svc.attempt == 1
    assert ch.done_attempts[-1][2]["state"] == "RELEASED"
    ch = Changes()
    rules.stop(s, svc, None, ch)
    assert svc.state == "COMPLETED"
    assert ch.jobs[svc.id]["reason"] == "stopped on request before it started"


def test_a_crash_past_the_cap_fails_it_and_a_lost_worker_moves_it() -> None:
    s, w, svc, clock = setup()
    rules.report(s, "w1", status(svc, "ready"), Changes())
    clock.t += 11  # its lease runs out (a worker silent as well is lost: test_scheduler.py)
    w.last_seen = clock.t
    ch = Changes()
    s.timer("lease", svc.id, ch)
    assert svc.state == "READY" and svc.worker_id is None
    assert ch.store == WITHDRAWN
    taken = s.take(w, 1, Changes())
    assert taken == [svc] and svc.attempt == 2
    assert svc.service_status == {"health": "starting", "restarts": 0}
    ch = Changes()
    error = "crashed 6 times in 300 s; last exit code 1"
    assert s.finish(svc.id, 2, 1, error, False, ch, worker_id="w1")
    assert svc.state == "FAILED" and ch.jobs[svc.id]["error"] == error


def test_a_stopping_service_whose_worker_is_lost_ends_there() -> None:
    s, _, svc, clock = setup()
    rules.stop(s, svc, None, Changes())
    clock.t += 11
    ch = Changes()
    s.timer("lease", svc.id, ch)
    assert svc.state == "COMPLETED"
    assert "before it confirmed" in ch.jobs[svc.id]["reason"]


def second_run(s: Scheduler, w: WorkerRec) -> JobRec:
    d = DagRec(id=2, name="infer", run=2, agent_run_id=None, status="WAITING", started_at=None)
    svc = JobRec(id=20, dag_id=2, job_id="model", requirement="GENERAL", priority=1, delay=0.0,
                 affinity=False, max_attempts=1, state="PENDING", attempt=0,
                 row={"parents": [], "job_type": "SERVICE", "service": dict(services.DEFAULTS)})
    s.load(d, [svc], Changes())
    assert s.take(w, 1, Changes()) == [svc]
    return svc


def test_two_runs_of_a_dag_each_have_their_own_key_and_the_dags_names_the_latest() -> None:
    s, w, first, _ = setup()
    rules.report(s, "w1", status(first, "ready"), Changes())
    second = second_run(s, w)
    # Run 2's service, not ready yet, touches no key: run 2's jobs wait on their own.
    ch = Changes()
    rules.report(s, "w1", status(second, "starting", port=9000), ch)
    assert ch.store == []
    ch = Changes()
    rules.report(s, "w1", status(second, "ready", port=9000), ch)
    assert ch.store == [StoreWrite("services/infer#2/model", "10.0.0.5:9000"),
                        StoreWrite("services/infer/model", "10.0.0.5:9000")]
    # Run 1's service ready again on another port: its own key only, run 2 is the latest.
    ch = Changes()
    rules.report(s, "w1", status(first, "ready", port=8124), ch)
    assert ch.store == [StoreWrite("services/infer#1/model", "10.0.0.5:8124")]
    # Run 2's service stops: the DAG's key goes back to run 1's live service, not away.
    rules.stop(s, second, None, Changes())
    ch = Changes()
    assert s.finish(second.id, 1, 0, None, False, ch, worker_id="w1")
    assert ch.store == [StoreWrite("services/infer#2/model", "10.0.0.5:9000", True),
                        StoreWrite("services/infer/model", "10.0.0.5:9000", True,
                                   "10.0.0.5:8124")]
    # Then run 1's: nothing is left to name.
    ch = Changes()
    s.cancel_job(first, ch)
    assert ch.store == [StoreWrite("services/infer#1/model", "10.0.0.5:8124", True),
                        StoreWrite("services/infer/model", "10.0.0.5:8124", True)]
    assert not s.published


def test_a_restarted_master_knows_which_runs_services_are_published() -> None:
    s, w, first, _ = setup()
    rules.report(s, "w1", status(first, "ready"), Changes())
    # A new scheduler loads both runs from storage, as a restarted master does.
    restarted = Scheduler(lease_seconds=10, affinity_wait=0.5, retry_backoff=1.0,
                          retry_backoff_max=60)
    second = second_run(s, w)
    rules.report(s, "w1", status(second, "ready", port=9000), Changes())
    for dag_id, svc in ((1, first), (2, second)):
        dag = s.dags[dag_id]
        copy = JobRec(id=svc.id, dag_id=dag_id, job_id="model", requirement="GENERAL",
                      priority=1, delay=0.0, affinity=False, max_attempts=1, state="RUNNING",
                      attempt=1, row=svc.row, worker_id="w1",
                      service_status=dict(svc.service_status or {}))
        restarted.load(DagRec(id=dag_id, name="infer", run=dag.run, agent_run_id=None,
                              status="RUNNING", started_at=1.0), [copy], Changes())
    assert restarted.published[("infer", "model")] == {first.id, second.id}
    ch = Changes()
    restarted.cancel_job(restarted.jobs[second.id], ch)
    assert ch.store[-1] == StoreWrite("services/infer/model", "10.0.0.5:9000", True,
                                      "10.0.0.5:8123")
