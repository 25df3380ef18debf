"""The storage interface's scheduling part: DAGs, jobs, their attempts and logs, workers,
and the agent-run rows stages join (contract: tests/contract/test_storage.py)."""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Mapping, Sequence

from titan.storage.rows import Row


class JobsTransaction(abc.ABC):
    """What the scheduler keeps durably."""

    # -- agent runs, DAGs, jobs ---------------------------------------------------------------
    @abc.abstractmethod
    def ensure_agent_run(self, run_id: str, now: float, agent_id: str | None = None) -> bool:
        """Create the agent run row (running, started now) if it does not exist yet; True
        when it was created."""

    @abc.abstractmethod
    def list_agent_runs(self, limit: int, offset: int,
                        staged: bool = False) -> tuple[list[Row], int]:
        """Agent runs, most recently created first, and the total count; ``staged``: only
        those with a stage (a DAG submitted with their ``agent_run_id``)."""

    @abc.abstractmethod
    def get_agent_run(self, run_id: str) -> Row | None:
        """One agent run row or None."""

    @abc.abstractmethod
    def agent_run_position(self, run_id: str, staged: bool = False) -> int | None:
        """Where the agent run sits in :meth:`list_agent_runs`'s order (0 first), or None
        when there is no such run (among those with a stage, when ``staged``)."""

    @abc.abstractmethod
    def insert_next_dag(self, row: Row) -> tuple[int, int]:
        """Insert a DAG row as the next run of its name (1 for a new name, its ``run``
        ignored); returns its id and run number."""

    @abc.abstractmethod
    def insert_dag(self, row: Row) -> int:
        """Insert a DAG row; returns its id."""

    @abc.abstractmethod
    def insert_jobs(self, rows: Sequence[Row]) -> list[int]:
        """Insert job rows (JSON fields given as Python values); returns their ids in order."""

    @abc.abstractmethod
    def update_dags(self, changes: Mapping[int, Row]) -> None:
        """Set some columns of each DAG (``{dag_id: {column: value}}``)."""

    @abc.abstractmethod
    def get_dag(self, dag_id: int) -> Row | None:
        """One DAG row or None."""

    @abc.abstractmethod
    def find_dag(self, name: str, run: int | None = None) -> Row | None:
        """DAG ``name`` at ``run``, or its latest run when run is None."""

    @abc.abstractmethod
    def list_dags(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        exact_name: str | None = None,
        agent_run_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = True,
    ) -> tuple[list[Row], int]:
        """DAGs matching the filters (name: substring; exact_name: that name), and the total
        count before paging."""

    @abc.abstractmethod
    def job_counts(self, dag_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """For each DAG id, how many of its jobs are in each state."""

    @abc.abstractmethod
    def run_job_counts(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """For each agent run id, how many jobs of its stages (DAGs submitted with that
        ``agent_run_id``; of a stage submitted again, its latest run) are in each state: its
        progress."""

    @abc.abstractmethod
    def unfinished_dags(self) -> list[Row]:
        """DAGs whose status is WAITING or RUNNING: what a restarted master must resume."""

    @abc.abstractmethod
    def prunable_dags(self, before: float, limit: int,
                      skip: Collection[int] = ()) -> list[int]:
        """Up to ``limit`` ids, oldest first, of the DAG runs retention may delete: finished
        before ``before``, in no agent run, not the latest run of their name, not in
        ``skip`` (those the scheduler holds)."""

    @abc.abstractmethod
    def delete_log_lines(self, dag_ids: Sequence[int], limit: int) -> int:
        """Delete at most ``limit`` log lines of the DAG runs' jobs; how many went (fewer
        than ``limit``: none is left). A run of millions of lines goes over several
        transactions, so none holds the writer long."""

    @abc.abstractmethod
    def delete_dags(self, dag_ids: Sequence[int]) -> int:
        """Delete DAG runs with their jobs, attempts and log lines; how many went. The
        schedule fires that started them keep their tick; published files stay."""

    @abc.abstractmethod
    def get_job(self, job: int) -> Row | None:
        """One job row by numeric id, or None."""

    @abc.abstractmethod
    def job_dag_attempts(self, job: int) -> tuple[Row, Row, list[Row]] | None:
        """A job with its DAG's row and its attempts (first first), read at once; None when
        there is no such job."""

    @abc.abstractmethod
    def find_job(self, job_id: str, dag_name: str | None = None, run: int | None = None) -> Row | None:
        """The latest job with that user job id (within DAG name/run when given)."""

    @abc.abstractmethod
    def dag_and_jobs(self, dag_id: int) -> tuple[Row, list[Row]] | None:
        """A DAG's row with its jobs in submission order, read at once; None when there is
        no such DAG."""

    @abc.abstractmethod
    def jobs_of_dags(self, dag_ids: Iterable[int]) -> list[Row]:
        """All jobs of these DAGs, in DAG then submission order."""

    @abc.abstractmethod
    def dag_jobs_page(self, dag_id: int, states: Sequence[str] | None, limit: int,
                      offset: int) -> tuple[list[Row], int]:
        """One page of a DAG's jobs in submission order (only those in ``states`` when
        given), and how many there are in all: a 100,000-job DAG read a page at a time."""

    @abc.abstractmethod
    def graph_of_dag(self, dag_id: int) -> list[Row]:
        """A DAG's jobs as its graph needs them, in submission order: ``id``, ``job_id``,
        ``parents``, ``state``, ``job_type`` only (a 10,000-job page reads no more)."""

    @abc.abstractmethod
    def update_jobs(self, changes: Mapping[int, Row]) -> None:
        """Set some columns of each job (``{job: {column: value}}``)."""

    # -- attempts and logs --------------------------------------------------------------------
    @abc.abstractmethod
    def insert_attempts(self, rows: Sequence[Row]) -> None:
        """Record attempts starting: job, attempt, worker_id, started_at, state (an attempt
        already recorded is left as it is)."""

    @abc.abstractmethod
    def finish_attempts(self, outcomes: Sequence[tuple[int, int, Row]]) -> None:
        """Set the outcome of attempts: ``(job, attempt, {state, exit_code, error,
        finished_at})`` each."""

    @abc.abstractmethod
    def attempts_of(self, job: int) -> list[Row]:
        """Every attempt of a job, first first."""

    @abc.abstractmethod
    def add_log_lines(self, rows: Sequence[Row]) -> None:
        """Append log lines (job, attempt, seq, stream, ts, line, and ``continues``: False when
        absent); a repeated (job, attempt, seq) is ignored, so a worker may resend a batch it
        is unsure about."""

    @abc.abstractmethod
    def log_lines(self, job: int, attempt: int, after: int = 0, limit: int = 10_000,
                  *, tail: bool = False, max_bytes: int | None = None) -> list[Row]:
        """Lines of one attempt with seq > after, in order, at most ``limit``: the first of
        them, or with ``tail`` the last. Each is seq, stream, ts, line, and ``continues: True``
        on a piece the next line goes on from (absent on the others). With ``max_bytes``,
        only as many as fit in it (their lines' lengths summed), and always one."""

    # -- workers ------------------------------------------------------------------------------
    @abc.abstractmethod
    def upsert_worker(self, row: Row) -> None:
        """Insert or replace a worker row."""

    @abc.abstractmethod
    def update_worker(self, worker_id: str, fields: Row) -> None:
        """Set some columns of a worker."""

    @abc.abstractmethod
    def list_workers(self) -> list[Row]:
        """All workers on record, newest first."""

    @abc.abstractmethod
    def forget_workers(self, before: float) -> list[str]:
        """Delete the workers stopped or lost that were last heard from before ``before``
        (epoch seconds); their ids."""
