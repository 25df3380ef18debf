"""The scheduler state machine, driven directly with a fake clock (no I/O, no sleeping)."""

from __future__ import annotations

from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import Changes, DagRec, JobRec, WorkerRec


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(clock: Clock | None = None) -> Scheduler:
    return Scheduler(lease_seconds=10, affinity_wait=0.5, retry_backoff=1.0,
                     retry_backoff_max=60, clock=clock or Clock())


_next_id = [0]


def dag(s: Scheduler, jobs: list[dict], ch: Changes) -> DagRec:
    _next_id[0] += 1
    d = DagRec(id=_next_id[0], name=f"d{_next_id[0]}", run=1, agent_run_id=None,
               status="WAITING", started_at=None)
    recs = []
    for i, spec in enumerate(jobs):
        _next_id[0] += 1
        row = {"parents": spec.get("parents", []), "filename": "a.py"}
        recs.append(JobRec(id=_next_id[0] * 100 + i, dag_id=d.id, job_id=spec["id"],
                           requirement=spec.get("req", "GENERAL"), priority=spec.get("prio", 1),
                           delay=spec.get("delay", 0.0), affinity=spec.get("affinity", False),
                           max_attempts=spec.get("attempts", 1), state="PENDING", attempt=0,
                           row=row))
    s.load(d, recs, ch)
    s.settle_dags(ch)
    return d


def worker(s: Scheduler, wid: str = "w1", caps: tuple[str, ...] = ("GENERAL",)) -> WorkerRec:
    w = WorkerRec(id=wid, name=wid, hostname="h", capabilities=frozenset(caps), slots=4, last_seen=0)
    s.add_worker(w, Changes())
    return w


def by_name(s: Scheduler, d: DagRec) -> dict[str, JobRec]:
    return {s.jobs[j].job_id: s.jobs[j] for j in d.jobs}


def test_priority_then_submission_order() -> None:
    s = make()
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "low", "prio": 1}, {"id": "high", "prio": 9}, {"id": "low2", "prio": 1}], ch)
    taken = s.take(w, 3, ch)
    assert [j.job_id for j in taken] == ["high", "low", "low2"]
    assert all(j.state == "RUNNING" and j.attempt == 1 for j in taken)
    assert d.status == "WAITING"  # settle_dags not yet run for this step


def test_failure_skips_all_descendants_at_once() -> None:
    s = make()
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "a"}, {"id": "b", "parents": ["a"]}, {"id": "c", "parents": ["b"]},
                {"id": "x"}], ch)
    jobs = by_name(s, d)
    s.take(w, 4, ch)
    assert s.finish(jobs["a"].id, 1, 1, None, False, ch)
    assert jobs["a"].state == "FAILED"
    assert jobs["b"].state == "SKIPPED" and jobs["c"].state == "SKIPPED"
    assert s.finish(jobs["x"].id, 1, 0, None, False, ch)
    s.settle_dags(ch)
    assert d.id in ch.finished_dags


def test_children_run_only_after_parents_complete() -> None:
    s = make()
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "a"}, {"id": "b"}, {"id": "c", "parents": ["a", "b"]}], ch)
    jobs = by_name(s, d)
    assert {j.job_id for j in s.take(w, 4, ch)} == {"a", "b"}
    s.finish(jobs["a"].id, 1, 0, None, False, ch)
    assert jobs["c"].state == "PENDING"
    s.finish(jobs["b"].id, 1, 0, None, False, ch)
    assert jobs["c"].state == "READY"


def test_retry_with_backoff_then_success() -> None:
    clock = Clock()
    s = make(clock)
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "flaky", "attempts": 3}], ch)
    job = by_name(s, d)["flaky"]
    s.take(w, 1, ch)
    s.settle_dags(ch)  # as the engine does after each step
    assert s.dags[job.dag_id].status == "RUNNING"
    s.finish(job.id, 1, 2, None, False, ch)
    assert job.state == "PENDING" and job.not_before == clock.t + 1.0
    # Its job has run: the DAG stays RUNNING through the backoff (seed 000's WAITING is
    # "no jobs have started yet").
    s.settle_dags(ch)
    assert s.dags[job.dag_id].status == "RUNNING"
    clock.t += 1.0
    s.timer("ready", job.id, ch)
    assert job.state == "READY"
    s.take(w, 1, ch)
    assert job.attempt == 2
    assert not s.finish(job.id, 1, 0, None, False, ch), "a stale attempt's result is refused"
    assert s.finish(job.id, 2, 0, None, False, ch)
    assert job.state == "COMPLETED"


def test_job_without_capable_worker_waits_visibly() -> None:
    s = make()
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "train", "req": "GPU"}, {"id": "etl"}], ch)
    jobs = by_name(s, d)
    assert jobs["train"].state == "PENDING"
    assert "GPU" in (jobs["train"].reason or "")
    assert [j.job_id for j in s.take(w, 4, ch)] == ["etl"]
    gpu = worker(s, "g1", ("GPU",))
    assert jobs["train"].state == "READY"
    assert [j.job_id for j in s.take(gpu, 4, ch)] == ["train"]


def test_delay_counts_from_readiness() -> None:
    clock = Clock()
    s = make(clock)
    worker(s)
    ch = Changes()
    d = dag(s, [{"id": "later", "delay": 5}], ch)
    job = by_name(s, d)["later"]
    assert job.state == "PENDING" and job.not_before == clock.t + 5
    clock.t += 5
    s.timer("ready", job.id, ch)
    assert job.state == "READY"


def test_a_ready_timer_that_fires_early_is_armed_again() -> None:
    clock = Clock()
    s = make(clock)
    worker(s)
    d = dag(s, [{"id": "later", "delay": 5}], Changes())
    job = by_name(s, d)["later"]
    clock.t += 4.999  # the event loop's clock runs a hair ahead of the wall clock
    ch = Changes()
    s.timer("ready", job.id, ch)
    assert job.state == "PENDING" and ch.timers == [(job.not_before, "ready", job.id)]
    clock.t += 0.001
    s.timer("ready", job.id, ch)
    assert job.state == "READY"


def test_affinity_prefers_parent_worker_then_falls_back() -> None:
    s = make()
    w1, w2 = worker(s, "w1"), worker(s, "w2")
    ch = Changes()
    d = dag(s, [{"id": "a"}, {"id": "b", "parents": ["a"], "affinity": True}], ch)
    jobs = by_name(s, d)
    s.take(w1, 1, ch)
    s.finish(jobs["a"].id, 1, 0, None, False, ch)
    assert s.take(w2, 1, ch) == []  # held for w1 for a moment
    s.timer("affinity", jobs["b"].id, ch)
    assert [j.job_id for j in s.take(w2, 1, ch)] == ["b"]


def _leased() -> tuple[Clock, Scheduler, WorkerRec, Changes, JobRec]:
    """A scheduler whose one job is leased to worker w."""
    clock = Clock()
    s = make(clock)
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "a"}], ch)
    job = by_name(s, d)["a"]
    s.take(w, 1, ch)
    return clock, s, w, ch, job


def test_expired_lease_requeues_with_next_attempt() -> None:
    clock, s, w, ch, job = _leased()
    clock.t += 5
    assert s.renew(w, [(job.id, 1)]) == []
    clock.t += 9
    s.timer("lease", job.id, ch)
    assert job.state == "RUNNING", "a renewed lease is not expired"
    clock.t += 2
    s.timer("lease", job.id, ch)
    # Silent since it renewed: the worker is lost too, and the job waits for another.
    assert job.state == "PENDING" and w.state == "lost"
    w2 = worker(s, "w2")
    assert job.state == "READY"
    s.take(w2, 1, ch)
    assert job.attempt == 2 and job.worker_id == "w2"
    assert s.renew(w, [(job.id, 1)]) == [(job.id, 1)], "the old holder is told to kill it"


def test_each_lost_attempt_is_said_once_for_the_log_with_what_became_of_its_job() -> None:
    # The master logged nothing when a silent worker's jobs ran again elsewhere (a fleet QA
    # pass): each lost attempt leaves one line, the worker one, for the engine to log.
    clock, s, w, ch, job = _leased()
    ch = Changes()
    clock.t += 11
    s.timer("lease", job.id, ch)
    ref = f"job {s.dags[job.dag_id].name}#1/a (id {job.id}): lease of attempt 1 expired on worker w1"
    assert ch.warnings == ["worker w1 (w1) is lost: silent for 1011 s, it missed its heartbeats",
                           f"{ref}; queued to run again as attempt 2"]
    for attempt in range(2, 6):  # lost again and again: failed at the fifth, said so
        s.take(worker(s, f"w{attempt}"), 1, Changes())
        ch = Changes()
        clock.t += 11
        s.timer("lease", job.id, ch)
        assert len(ch.warnings) == 2 and ch.warnings[0].startswith(f"worker w{attempt} ")
    assert job.state == "FAILED"
    assert ch.warnings[1].endswith("attempt 5 expired on worker w5; failed: lost 5 times")


def test_a_distrusted_workers_attempts_end_at_once_and_spend_no_retry() -> None:
    # Its token revoked: the attempts' job tokens are stale now (not when the leases run
    # out), and the jobs go to another worker as their next attempt.
    s = make()
    w, other = worker(s, "w1", ("GPU",)), worker(s, "w2", ("GENERAL",))
    ch = Changes()
    d = dag(s, [{"id": "a", "req": "GPU"}, {"id": "b", "req": "GPU"}, {"id": "c"}], ch)
    jobs = by_name(s, d)
    s.take(w, 2, ch)
    s.take(other, 1, ch)
    ch = Changes()
    s.end_attempts_of(w.id, "is lost: its worker token was revoked", ch)
    s.lose_worker(w, ch)
    for name in ("a", "b"):
        job = jobs[name]
        assert not s.is_current(job.id, 1) and job.state == "PENDING", job
        assert job.max_attempts == 2  # no retry spent
    assert s.is_current(jobs["c"].id, 1, "w2")  # another worker's attempt runs on
    lost = [(a, fields["state"]) for _, a, fields in ch.done_attempts]
    assert lost == [(1, "LOST"), (1, "LOST")]
    assert "revoked" in ch.done_attempts[0][2]["error"] and not w.running
    gpu = worker(s, "w3", ("GPU",))
    assert sorted(j.job_id for j in s.take(gpu, 2, Changes())) == ["a", "b"]
    assert jobs["a"].attempt == 2


def test_a_lease_timer_the_master_fires_late_renews_instead_of_expiring() -> None:
    # A master stopped past the lease (SIGSTOP, a paused VM) fired every lease timer at once
    # when it resumed: each running job ran again, though its worker was fine. A timer that
    # late gives a fresh lease, as a restart does; one on time still expires.
    clock, s, w, ch, job = _leased()
    clock.t += 10 + 18  # due at +10, fired 18 s late
    s.timer("lease", job.id, ch)
    assert job.state == "RUNNING" and job.lease_expires == clock.t + 10
    assert s.renew(w, [(job.id, 1)]) == [], "its worker still holds it"
    clock.t += 10 + 1  # this time on time (1 s late): it expires
    w.last_seen = clock.t  # (its worker talking: test_a_lease_lost_to_a_silent_worker_...)
    s.timer("lease", job.id, ch)
    assert job.state == "READY"


def test_no_lease_expires_while_the_database_is_away() -> None:
    # An outage past the lease (a managed failover): workers' heartbeats were refused, not
    # silent, and every running job ran again once the database was back (a QA pass).
    clock, s, w, ch, job = _leased()
    away = [True]
    s.leases_held = lambda: away[0]
    clock.t += 10 + 1  # on time, but the database is away
    s.timer("lease", job.id, ch)
    assert job.state == "RUNNING" and job.lease_expires == clock.t + 10
    away[0] = False  # back: a lease its worker lets run out expires as ever
    clock.t += 10 + 1
    w.last_seen = clock.t
    s.timer("lease", job.id, ch)
    assert job.state == "READY"


def test_a_clock_stepped_back_holds_a_lease_no_longer_than_one_lease_more() -> None:
    # NTP stepped the wall clock back an hour while a job's worker was dying: the lease timer
    # (monotonic) fired on time, found the deadline an hour out, and waited for it.
    clock, s, w, ch, job = _leased()
    clock.t += 10 - 3600  # due now by the loop's clock; the wall clock reads an hour less
    s.timer("lease", job.id, ch)
    assert job.state == "RUNNING" and job.lease_expires == clock.t + 10
    assert ch.timers[-1] == (clock.t + 10, "lease", job.id)
    clock.t += 10 + 1
    s.timer("lease", job.id, ch)
    assert job.state == "READY"


def test_a_stored_lease_from_a_clock_ahead_is_one_lease_from_now_when_loaded() -> None:
    # A master whose clock ran an hour ahead stored the lease; the restarted master (right
    # clock) kept that deadline, so the job sat RUNNING an hour after its worker died.
    clock = Clock()
    s = make(clock)
    d = DagRec(id=990, name="skewed", run=1, agent_run_id=None, status="RUNNING",
               started_at=clock.t + 3600)
    job = JobRec(id=99_000, dag_id=d.id, job_id="a", requirement="GENERAL", priority=1,
                 delay=0.0, affinity=False, max_attempts=1, state="RUNNING", attempt=1,
                 row={"parents": [], "filename": "a.py"}, worker_id="gone",
                 lease_expires=clock.t + 3600 + 10)
    ch = Changes()
    s.load(d, [job], ch)
    assert job.lease_expires == clock.t + 10 and (clock.t + 10, "lease", job.id) in ch.timers
    clock.t += 11
    s.timer("lease", job.id, ch)
    assert job.state == "PENDING" and job.attempt == 1, "no worker: it waits for one"


def test_a_job_its_stopping_worker_hands_back_runs_again_spending_no_retry() -> None:
    # A worker stopped hard (a second SIGTERM) kills its jobs and says so: as when a worker
    # dies, they start again elsewhere; none failed, and no retry is spent.
    s = make()
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "a", "attempts": 1}, {"id": "b", "parents": ["a"]}], ch)
    job = by_name(s, d)["a"]
    s.take(w, 1, ch)
    ch = Changes()
    assert s.finish(job.id, 1, -9, "the worker stopped", False, ch, worker_id="w1",
                    released=True)
    assert job.state == "READY" and job.max_attempts == 2, "it may go one attempt further"
    assert ch.done_attempts[-1][2]["state"] == "RELEASED"
    assert by_name(s, d)["b"].state == "PENDING"
    s.take(worker(s, "w2"), 1, ch)
    assert job.attempt == 2 and job.worker_id == "w2"
    assert s.finish(job.id, 2, 0, None, False, ch) and job.state == "COMPLETED"


def test_an_attempt_lost_under_its_worker_runs_again_spending_no_retry_a_bounded_number_of_times(
) -> None:
    # A Ray node died under the job: the worker says the attempt was lost, not failed. It
    # ended FAILED ("Ray: NodeDiedError"), its retry spent; now it is LOST as with a dead
    # worker, and, like lost leases, a job that loses every attempt fails at the fifth.
    from titan.master.scheduling.leasing import MAX_LEASE_LOSSES

    s = make()
    w = worker(s)
    ch = Changes()
    job = by_name(s, dag(s, [{"id": "a", "attempts": 1}], ch))["a"]
    for n in range(1, MAX_LEASE_LOSSES + 1):
        s.take(w, 1, ch)
        ch = Changes()
        assert s.finish(job.id, n, None, "lost on Ray: the node running it died", False, ch,
                        worker_id="w1", released=True, lost=True)
        state, error = ch.done_attempts[-1][2]["state"], ch.done_attempts[-1][2]["error"]
        assert state == "LOST" and "lost on Ray: the node running it died" in error, error
        if n < MAX_LEASE_LOSSES:
            assert job.state == "READY" and job.max_attempts == n + 1, "no retry spent"
    assert job.state == "FAILED" and f"({MAX_LEASE_LOSSES} times)" in (job.error or "")


def test_a_lease_lost_to_a_silent_worker_loses_the_worker_and_the_job_goes_elsewhere() -> None:
    # A worker frozen with SIGSTOP keeps its connection, and its poll, open: it stayed live,
    # and the job went back to it lease after lease until it FAILED, a healthy worker idle.
    clock = Clock()
    s = make(clock)
    frozen, healthy = worker(s, "frozen"), worker(s, "healthy")
    frozen.last_seen = healthy.last_seen = clock.t
    ch = Changes()
    job = by_name(s, dag(s, [{"id": "a", "attempts": 1}], ch))["a"]
    s.take(frozen, 1, ch)
    clock.t += 11
    healthy.last_seen = clock.t - 1  # the healthy one heartbeats; the frozen one is silent
    ch = Changes()
    s.timer("lease", job.id, ch)
    assert frozen.state == "lost" and ("worker_updated", {"id": "frozen", "state": "lost"}) \
        in ch.events and ch.workers["frozen"]["state"] == "lost"
    assert job.state == "READY" and job.max_attempts == 2, "the lost attempt spent no retry"
    assert not frozen.live and healthy.live
    s.take(healthy, 1, ch)
    assert job.worker_id == "healthy" and job.attempt == 2


def test_a_worker_still_talking_keeps_its_place_when_one_lease_runs_out() -> None:
    clock, s, w, ch, job = _leased()
    clock.t += 11
    w.last_seen = clock.t - 2  # heartbeats, without this job: the job is lost, not the worker
    s.timer("lease", job.id, ch)
    assert job.state == "READY" and w.state == "live"


def test_an_attempt_lost_with_its_worker_spends_no_retry_nor_backoff() -> None:
    # Finding: retries=1, attempt 1 lost with its worker, attempt 2 failed: the job FAILED at
    # "attempt 2 / max_attempts 2", its one retry spent on the worker's death.
    clock, s, w, ch, job = _leased()
    job.max_attempts = 2  # retries=1
    clock.t += 11
    s.timer("lease", job.id, ch)
    w2 = worker(s, "w2")
    s.take(w2, 1, ch)
    assert job.attempt == 2 and job.max_attempts == 3
    assert s.finish(job.id, 2, 1, None, False, ch)
    assert job.state == "PENDING", "its retry is still there"
    assert job.not_before == clock.t + 1.0, "backoff of a first failure"
    clock.t += 1
    s.timer("ready", job.id, ch)
    s.take(w2, 1, ch)
    assert s.finish(job.id, 3, 1, None, False, ch)
    assert job.state == "FAILED" and job.attempt == 3


def test_cancel_running_job_tells_worker_and_skips_children() -> None:
    s = make()
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "a"}, {"id": "b", "parents": ["a"]}], ch)
    jobs = by_name(s, d)
    s.take(w, 1, ch)
    s.cancel_job(jobs["a"], ch)
    assert jobs["a"].state == "CANCELLED" and jobs["b"].state == "SKIPPED"
    assert w.cancels == [(jobs["a"].id, 1)]
    s.settle_dags(ch)
    assert d.status == "CANCELLED"


def test_manual_retry_revives_skipped_children() -> None:
    s = make()
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "a"}, {"id": "b", "parents": ["a"]}, {"id": "z"}], ch)
    jobs = by_name(s, d)
    s.take(w, 2, ch)
    s.finish(jobs["a"].id, 1, 1, None, False, ch)
    s.retry_job(jobs["a"], ch)
    assert jobs["a"].state == "READY" and jobs["b"].state == "PENDING"
    s.take(w, 1, ch)
    s.finish(jobs["a"].id, 2, 0, None, False, ch)
    assert jobs["b"].state == "READY"


def test_retrying_a_cancelled_dag_runs_its_unfinished_work_in_order() -> None:
    # client.retry("DAG-x") answered "no job 'DAG-x'": only jobs could be retried, one by
    # one, and a job under a cancelled parent could not be at all.
    s = make()
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "a"}, {"id": "b", "parents": ["a"]}, {"id": "c", "parents": ["b"]},
                {"id": "ok"}, {"id": "bad"}], ch)
    jobs = by_name(s, d)
    s.take(w, 3, ch)  # a, ok, bad run
    s.finish(jobs["ok"].id, 1, 0, None, False, ch)
    s.finish(jobs["bad"].id, 1, 1, None, False, ch)
    s.cancel_dag(d, ch)
    assert [jobs[n].state for n in "abc"] == ["CANCELLED", "SKIPPED", "SKIPPED"]
    assert d.cancelled
    ch = Changes()
    retried = s.retry_dag(d, ch)
    assert sorted(j.job_id for j in retried) == ["a", "b", "bad", "c"]
    assert not d.cancelled and ch.dags[d.id]["cancelled"] is False
    assert jobs["ok"].state == "COMPLETED", "what succeeded is kept"
    assert (jobs["a"].state, jobs["bad"].state) == ("READY", "READY")
    assert (jobs["b"].state, jobs["c"].state) == ("PENDING", "PENDING"), "after their parents"
    assert jobs["a"].max_attempts == 2 and jobs["bad"].max_attempts == 2
    s.take(w, 2, ch)
    s.finish(jobs["a"].id, 2, 0, None, False, ch)
    assert jobs["b"].state == "READY"


def test_losing_last_capable_worker_parks_ready_jobs() -> None:
    s = make()
    g = worker(s, "g", ("GPU",))
    ch = Changes()
    d = dag(s, [{"id": "t", "req": "GPU"}], ch)
    job = by_name(s, d)["t"]
    assert job.state == "READY"
    s.lose_worker(g, ch)
    assert job.state == "PENDING" and "GPU" in (job.reason or "")


def test_a_job_cancelled_alone_beside_completed_ones_is_a_mixed_result() -> None:
    # Seed 000's PARTIAL, "some completed, some failed": a stage of researchers with one
    # cancelled read CANCELLED although the others had finished. Cancelled whole, it is.
    s = make()
    w = worker(s)
    ch = Changes()
    alone = dag(s, [{"id": "a"}, {"id": "b"}], ch)
    jobs = by_name(s, alone)
    s.take(w, 4, ch)
    s.finish(jobs["a"].id, 1, 0, None, False, ch)
    s.cancel_job(jobs["b"], ch)
    s.settle_dags(ch)
    assert alone.status == "PARTIAL"
    whole = dag(s, [{"id": "a"}, {"id": "b"}], ch)
    jobs = by_name(s, whole)
    s.take(w, 4, ch)
    s.finish(jobs["a"].id, 1, 0, None, False, ch)
    s.cancel_dag(whole, ch)
    s.settle_dags(ch)
    assert whole.status == "CANCELLED"


def test_an_attempt_ends_when_its_process_did_not_when_its_result_arrived() -> None:
    # A result held by its worker while the master was away (40 s) said the job had run for
    # the whole outage: its end is the worker's, kept between its start and now.
    clock = Clock()
    s = make(clock)
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "a"}, {"id": "b", "attempts": 1}, {"id": "skewed"}, {"id": "ahead"},
                {"id": "inf"}], ch)
    jobs = by_name(s, d)
    s.take(w, 5, ch)
    clock.t += 45.0
    assert s.finish(jobs["a"].id, 1, 0, None, False, ch, ended_at=1005.0)
    assert s.finish(jobs["b"].id, 1, 2, None, False, ch, ended_at=1006.0)
    assert s.finish(jobs["skewed"].id, 1, 0, None, False, ch, ended_at=900.0)
    assert s.finish(jobs["ahead"].id, 1, 0, None, False, ch, ended_at=2000.0)
    assert s.finish(jobs["inf"].id, 1, 0, None, False, ch, ended_at=float("-inf"))
    finished = {s.jobs[i].job_id: ch.jobs[i]["finished_at"] for i in d.jobs}
    assert finished == {"a": 1005.0, "b": 1006.0, "skewed": 1000.0, "ahead": 1045.0,
                        "inf": 1045.0}
    attempts = {job_id: fields["finished_at"] for job_id, _, fields in ch.done_attempts}
    assert attempts[jobs["a"].id] == 1005.0 and attempts[jobs["b"].id] == 1006.0


def test_an_attempt_ends_its_elapsed_time_after_its_start_whatever_the_worker_clock_says() -> None:
    # A worker whose wall clock ran 60 s behind made every job last 0.0 s (its ended_at,
    # clamped to the start). Its monotonic elapsed time puts both ends on the master's clock;
    # an older worker's ended_at is still taken, within the start and now.
    clock = Clock()
    s = make(clock)
    w = worker(s)
    ch = Changes()
    d = dag(s, [{"id": "behind"}, {"id": "held"}, {"id": "liar"}, {"id": "negative"},
                {"id": "old"}], ch)
    jobs = by_name(s, d)
    s.take(w, 5, ch)
    clock.t += 45.0
    behind = 1005.0 - 60
    assert s.finish(jobs["behind"].id, 1, 0, None, False, ch, ended_at=behind, elapsed=5.0)
    assert s.finish(jobs["held"].id, 1, 0, None, False, ch, ended_at=behind, elapsed=7.5)
    assert s.finish(jobs["liar"].id, 1, 0, None, False, ch, elapsed=1e9)
    assert s.finish(jobs["negative"].id, 1, 0, None, False, ch, elapsed=-3.0)
    assert s.finish(jobs["old"].id, 1, 0, None, False, ch, ended_at=1010.0)
    finished = {s.jobs[i].job_id: ch.jobs[i]["finished_at"] for i in d.jobs}
    assert finished == {"behind": 1005.0, "held": 1007.5, "liar": 1045.0, "negative": 1000.0,
                        "old": 1010.0}


def test_a_worker_lost_or_gone_keeps_when_it_was_last_heard_from() -> None:
    s = make()
    w = worker(s)
    w.last_seen = 1234.5
    ch = Changes()
    s.lose_worker(w, ch)
    assert ch.workers[w.id] == {"state": "lost", "last_seen_at": 1234.5}


def test_a_worker_told_to_kill_an_attempt_is_told_why() -> None:
    # A worker back from a network cut killed its job's process without a word (QA).
    from titan.master.scheduling.kills import kill_why

    clock, s, w, ch, job = _leased()
    assert kill_why(job, 1) == "cancelled"  # running: a cancel in flight
    clock.t += 11
    s.timer("lease", job.id, ch)
    assert kill_why(job, 1) == "its lease ran out: the job is queued to run again"
    s.take(worker(s, "w2"), 1, ch)
    assert kill_why(job, 1) == "its lease ran out: the job runs again as attempt 2"
    s.cancel_job(job, ch)
    assert kill_why(job, 2) == "cancelled"
    assert kill_why(None, 1) == "its job has ended meanwhile"


def test_a_dag_nothing_has_started_stays_waiting_when_a_job_of_it_is_cancelled() -> None:
    # Seed 000's WAITING is "no jobs have started yet": a DAG whose runnable job waits for a
    # GPU read RUNNING once its other job was cancelled; cancelled whole, it was stamped as
    # started, and a retry of it read RUNNING with every job only queued.
    s = make()
    ch = Changes()
    d = dag(s, [{"id": "g1", "req": "GPU"}, {"id": "g2", "parents": ["g1"]}, {"id": "g3"}], ch)
    jobs = by_name(s, d)
    s.cancel_job(jobs["g3"], ch)
    s.settle_dags(ch)
    assert d.status == "WAITING" and d.started_at is None
    s.cancel_dag(d, ch)
    s.settle_dags(ch)
    assert d.status == "CANCELLED" and d.started_at is None, "no job ever started"
    ran = dag(s, [{"id": "a"}, {"id": "b"}], ch)
    jobs = by_name(s, ran)
    s.take(worker(s), 1, ch)
    s.settle_dags(ch)
    assert ran.status == "RUNNING" and ran.started_at is not None
