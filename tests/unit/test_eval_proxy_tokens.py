"""The evaluation tool proxy takes a job's token only while the job's attempt runs, as the
rest of the API does: an ended attempt's token (printed in a log, kept by a child process
that outlived it) called the run's tools for as long as the run's DAG was live."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from titan.master.auth.tokens import JobTokens
from titan.master.evaluations.proxy import ToolProxy
from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import RUNNING, DagRec, JobRec


def proxy_for(sched: Scheduler, tokens: JobTokens) -> ToolProxy:
    proxy = ToolProxy.__new__(ToolProxy)  # only the token check is exercised here
    proxy.engine = SimpleNamespace(job_tokens=tokens, sched=sched)  # type: ignore[assignment]
    return proxy


def test_only_the_running_attempts_token_is_taken() -> None:
    sched = Scheduler(lease_seconds=15.0, affinity_wait=0.5, retry_backoff=1.0,
                      retry_backoff_max=60.0)
    dag: Any = DagRec.__new__(DagRec)
    dag.id, dag.agent_run_id = 7, "eval-run-1"
    job: Any = JobRec.__new__(JobRec)
    job.id, job.dag_id, job.state, job.attempt, job.worker_id = 70, 7, RUNNING, 2, "w-1"
    sched.dags[7], sched.jobs[70] = dag, job
    tokens = JobTokens("s" * 32)
    proxy = proxy_for(sched, tokens)
    current, ended = tokens.issue(70, 2), tokens.issue(70, 1)
    assert proxy._job_of_run(current, "eval-run-1")
    assert not proxy._job_of_run(current, "another-run")
    assert not proxy._job_of_run(ended, "eval-run-1")  # the attempt before: fenced
    job.state = "COMPLETED"
    assert not proxy._job_of_run(current, "eval-run-1")  # its attempt ended
    assert not proxy._job_of_run("tj.70.2." + "0" * 32, "eval-run-1")  # forged
