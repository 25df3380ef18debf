"""The evaluation tool proxy takes a job's token only while the job's attempt runs, as the
rest of the API does: an ended attempt's token (printed in a log, kept by a child process
that outlived it) called the run's tools for as long as the run's DAG was live."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

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
    assert proxy._job_of_run(current, "eval-run-1") is not None
    assert not proxy._job_of_run(current, "another-run")
    assert not proxy._job_of_run(ended, "eval-run-1")  # the attempt before: fenced
    job.state = "COMPLETED"
    assert not proxy._job_of_run(current, "eval-run-1")  # its attempt ended
    assert not proxy._job_of_run("tj.70.2." + "0" * 32, "eval-run-1")  # forged


def test_a_coding_runs_agent_token_is_its_runs_alone() -> None:
    # The coding job mints the token of the agent it runs (POST .../eval/agent-token): a MAC
    # under a key of its own, taken for the run's tools while the attempt runs, and never as
    # the job's token (nor a job token as the agent's).
    import pytest

    from titan.errors import Forbidden
    from titan.master.auth.tokens import Principal
    from titan.master_proof import token_ref
    from titan.redaction import scrub_titan_tokens

    sched = Scheduler(lease_seconds=15.0, affinity_wait=0.5, retry_backoff=1.0,
                      retry_backoff_max=60.0)
    dag: Any = DagRec.__new__(DagRec)
    dag.id, dag.agent_run_id = 7, "eval-run-1"
    job: Any = JobRec.__new__(JobRec)
    job.id, job.dag_id, job.state, job.attempt, job.worker_id = 70, 7, RUNNING, 2, "w-1"
    sched.dags[7], sched.jobs[70] = dag, job
    tokens = JobTokens("s" * 32)
    proxy = proxy_for(sched, tokens)
    minted = proxy.agent_token("eval-run-1", Principal(role="job", job=70, attempt=2))["token"]
    assert minted == tokens.issue_agent(70, 2) and minted.startswith("ta.70.2.")
    who = proxy._job_of_run(minted, "eval-run-1")
    assert who is not None and who.role == "agent"
    assert proxy._job_of_run(minted, "another-run") is None
    assert tokens.verify(minted) is None and tokens.verify("tj" + minted[2:]) is None
    assert tokens.verify_agent(tokens.issue(70, 2)) is None
    assert tokens.verify_agent("ta" + tokens.issue(70, 2)[2:]) is None
    # Only the run's job gets one: not the agent itself, not another job, not a person.
    for asker in (Principal(role="agent", job=70, attempt=2),
                  Principal(role="job", job=71, attempt=1),
                  Principal(role="operator", token_id="t1")):
        with pytest.raises(Forbidden):
            proxy.agent_token("eval-run-1", asker)
    with pytest.raises(Forbidden):
        proxy.agent_token("another-run", Principal(role="job", job=70, attempt=2))
    # The master proves it knows it by its public part, and a log never shows it.
    assert token_ref(minted) == "ta.70.2"
    assert minted not in scrub_titan_tokens(f"TITAN_TOOL_TOKEN={minted}")
    job.state = "COMPLETED"
    assert proxy._job_of_run(minted, "eval-run-1") is None  # its attempt ended


def test_a_run_not_running_here_is_said_as_not_started_or_ended() -> None:
    # A pending run's proxy call was answered "evaluation run r already ended pending".
    from titan.errors import Conflict

    with pytest.raises(Conflict, match=r"^evaluation run r1 has not started \(it is pending\)$"):
        ToolProxy._open(None, {"id": "r1", "status": "pending"})
    with pytest.raises(Conflict, match=r"^evaluation run r1 already ended completed$"):
        ToolProxy._open(None, {"id": "r1", "status": "completed"})
