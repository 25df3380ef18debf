"""TitanClient: submit DAGs, follow jobs, use the store and artifacts — from code or a job.

``TitanClient()`` finds its master on its own (see :mod:`titan.client.config`): inside a job
the worker's environment names it, on a machine where ``titan up`` runs its data directory and
the user config do. Every failure raises a :mod:`titan.errors` exception; nothing returns an
error string.

References: a job ``ref`` is its numeric id, a bare job id (the latest job with that id),
``dag/job`` or ``dag#3/job``; a DAG ``ref`` is its numeric id, ``name`` (latest run),
``name#3`` or ``DAG-name``. Methods that accept either (:meth:`wait`, :meth:`cancel`) try the
job first, then the DAG.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import httpx

from titan.client import replay_keys
from titan.client.cluster import ClusterOps
from titan.client.config import Endpoint, resolve
from titan.client.control import ControlOps
from titan.client.evaluations import EvalOps
from titan.client.files import FileOps
from titan.client.hold import Hold
from titan.client.job import TitanJob
from titan.client.job_fields import check_name
from titan.client.logs import LogOps
from titan.client.long_poll import (
    WAIT_MARGIN,
    WAIT_SLICE,
    unreachable_within,
    wait_deadline,
)
from titan.client.pipeline import load_pipeline
from titan.client.pipeline import where as pipeline_where
from titan.client.reading import ReadOps
from titan.client.schedules import ScheduleOps
from titan.client.store import StoreOps
from titan.client.transport import Transport
from titan.errors import (
    ConfigError,
    ConnectionFailed,
    InvalidDAG,
    ScriptNotFound,
    ValidationFailed,
    WaitTimeout,
)

Ref = str | int
#: Stages a thread's signal waits watch at most (the latest submitted).
MAX_WATCHED = 256
#: The client each thread last submitted a stage through (a weak reference).
_submitter = threading.local()


def last_submitter() -> TitanClient | None:
    """The open client this thread last submitted a DAG through, if any: the one whose
    stages a signal wait given no client watches (``wait_for_signal(key)`` in an orchestrator
    that submitted with ``client``), so a stage that failed before signalling is still seen."""
    ref = getattr(_submitter, "client", None)
    client = ref() if ref is not None else None
    return client if client is not None and not client._transport.closed else None


class TitanClient(ReadOps, ControlOps, LogOps, StoreOps, FileOps, EvalOps, ScheduleOps,
                  ClusterOps):
    """A connection to one Titan (thread-safe; one keep-alive pool per client).

    ``url`` names the master, or several: a leader and its standbys, as a list or one string
    of comma-separated URLs; calls go to whichever leads (see :mod:`titan.client.masters`).
    It excludes ``host``; without either, the master is discovered (:mod:`titan.client.config`).
    ``transport`` replaces the network: an ``httpx.MockTransport`` in tests, the master's own
    app for the tools it serves over MCP (:mod:`titan.master.api.mcp`).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | str | None = None,
        token: str | None = None,
        *,
        url: str | Sequence[str] | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not 0 < timeout < float("inf"):
            # 0 read as "the master closed the connection"; -1 and "x" as Python's own errors.
            raise ConfigError(f"timeout is the seconds a request may take, a number above 0, "
                              f"got {timeout!r}")
        self._transport = Transport(resolve(host, port, token, urls=url), timeout=timeout,
                                    http_transport=transport)
        self._uploaded: set[str] = set()
        self._projects: dict[str, str] = {}  # project zips this client uploaded (FileOps)
        # The DAGs each thread submitted here, which its signal waits watch (client/store.py).
        self._stages = threading.local()
        self._uploaded_lock = threading.Lock()

    @property
    def endpoint(self) -> Endpoint:
        """Where the master is (``url``: the one in use, the last found to lead; ``urls``:
        every configured one) and the token."""
        return self._transport.endpoint

    @property
    def url(self) -> str:
        """The root URL of the master in use (the last one found to lead)."""
        return self.endpoint.url

    def __repr__(self) -> str:
        return f"TitanClient(url={self.endpoint.url!r})"  # never the token

    def __reduce__(self) -> Any:
        # Pickled, it failed on a lock deep inside ("cannot pickle '_thread.lock'"), and a
        # pickle of it would carry its token to wherever the bytes go.
        raise TypeError("a TitanClient holds open connections and its token, and is not "
                        "pickled: make a TitanClient in each process (TitanClient() finds "
                        "the master as this one did, or pass it host/url and token)")

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connections (the client is not usable afterwards)."""
        self._transport.close()

    def __enter__(self) -> TitanClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def retrying_within(self, seconds: float) -> AbstractContextManager[None]:
        """``with client.retrying_within(20): ...``: the calls this thread makes in the block
        stop retrying an unreachable master ``seconds`` after the block began (each call still
        tries once, and a wait's own ``timeout`` still ends it sooner), then raise
        :class:`~titan.errors.ConnectionFailed`, whatever ``TITAN_MASTER_RESTART_GRACE``
        allows. For a caller that must answer in time, as an MCP tool call must."""
        return self._transport.retrying_within(seconds)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call any ``/api/v1`` route directly (``params=``, ``json=``); the decoded reply."""
        return self._transport.call(method, path, **kwargs)

    def health(self) -> dict[str, Any]:
        """The master's ``/health`` reply (needs no token)."""
        reply: dict[str, Any] = self._transport.call("GET", "/health")
        return reply

    # ------------------------------------------------------------------ submitting

    def submit_dag(
        self, name: str, jobs: Iterable[TitanJob], agent_run_id: str | None = None, *,
        wait: bool = False, timeout: float | None = None, agent_id: str | None = None,
    ) -> dict[str, Any]:
        """Submit ``jobs`` atomically as the DAG ``name``; the DAG object from the master.

        Scripts are read from this machine and uploaded if the master lacks them. Inside a
        job, ``agent_run_id`` defaults to the job's own agent run (``TITAN_AGENT_RUN_ID``), so
        stages an agent submits are grouped with it.

        ``agent_id`` names the agent the run belongs to when this stage creates it (default:
        ``TITAN_AGENT_ID``, else the run id without its random tail, ``RESEARCH_1a9ac3`` ->
        ``RESEARCH``): a run id its caller chose (``lora-study``) is still that agent's run.

        With ``wait``, the DAG object once every job has finished (as :meth:`wait_dag` gives
        it, with its jobs): the master holds the submission's answer until then, so an agent
        loop's step costs one round trip. ``timeout`` (seconds, ``None``: forever) bounds the
        wait; past it :class:`~titan.errors.WaitTimeout` is raised, with the submitted DAG in
        its ``details["dag"]`` (the DAG keeps running). A master that cannot be reached is
        not waited for past it either (:class:`~titan.errors.ConnectionFailed`). A
        ``timeout`` without ``wait`` is refused: a job's own limit is ``TitanJob(timeout=)``.
        """
        if timeout is not None and not wait:
            # Dropped silently, a timeout meant as the jobs' own limit left them with none
            # (`titan submit --timeout` without --wait is refused for the same reason).
            raise ValidationFailed(
                f"timeout bounds the wait (wait=True); without wait, {name!r} would be "
                f"submitted and the timeout ignored. A job's own time limit is "
                f"TitanJob(..., timeout={timeout!r})", details={"field": "timeout"})
        deadline = wait_deadline(timeout) if wait else None
        check_name(name, "the DAG name", "name")
        if isinstance(jobs, TitanJob | str | bytes | Mapping) or not isinstance(jobs, Iterable):
            raise ValidationFailed("submit_dag() takes a list of TitanJob",
                                   details={"field": "jobs"})
        jobs = list(jobs)  # a generator of jobs, as a list comprehension gives a list
        if not jobs:
            raise InvalidDAG(f"DAG {name!r} has no jobs", details={"field": "jobs"})
        seen: set[str] = set()
        for job in jobs:
            if not isinstance(job, TitanJob):
                raise ValidationFailed(f"submit_dag() takes TitanJob objects, got {job!r}",
                                       details={"field": "jobs"})
        jobs = [job.checked() for job in jobs]  # as they stand: a field may have been set since
        for job in jobs:
            if job.job_id in seen:
                raise InvalidDAG(f"duplicate job id {job.job_id!r} in DAG {name!r}",
                                 details={"job_id": job.job_id})
            seen.add(job.job_id)
        if agent_id is not None:
            check_name(agent_id, "agent_id", "agent_id")
            if agent_run_id is None and not os.environ.get("TITAN_AGENT_RUN_ID"):
                raise ValidationFailed(f"agent_id {agent_id!r} names the agent of an agent run: "
                                       "give agent_run_id too", details={"field": "agent_id"})
        asked = agent_run_id is not None  # what made the original driver drive its run
        if agent_run_id is None:
            agent_run_id = os.environ.get("TITAN_AGENT_RUN_ID") or None
        elif not isinstance(agent_run_id, str) or not agent_run_id:
            raise ValidationFailed(f"agent_run_id must be a non-empty string, "
                                   f"got {agent_run_id!r}", details={"field": "agent_run_id"})
        try:
            shas = self._script_blobs(jobs, deadline)
        except ConnectionFailed as exc:
            raise unreachable_within(exc, deadline, f"uploading the scripts of DAG {name!r} "
                                     "(nothing was submitted)") from None
        body: dict[str, Any] = {
            "name": name,
            "agent_run_id": agent_run_id,
            "jobs": [job.to_payload(shas[job.job_id]) for job in jobs],
        }
        own_run = os.environ.get("TITAN_AGENT_RUN_ID")
        if os.environ.get("TITAN_REPLAY") and own_run and agent_run_id \
                and agent_run_id != own_run:
            # A replayed driver made up a run id of its own (the original did too): its stages
            # belong to the replay's run, filed under that id as an alias.
            body["agent_run_id"], body["run_alias"] = own_run, agent_run_id
            replay_keys.submitted_under(agent_run_id)  # its keys named so are the replay's
            agent_run_id = own_run
        if agent_run_id and (agent_id or os.environ.get("TITAN_AGENT_ID")):
            body["agent_id"] = agent_id or os.environ["TITAN_AGENT_ID"]
        driving = bool(agent_run_id and agent_run_id != own_run)
        hold = 0.0
        if wait and not driving:  # whole milliseconds, at most one slice of a long poll
            # (a driver records itself and its code before it waits, as without ``wait``)
            left = WAIT_SLICE if deadline is None else deadline - time.monotonic()
            hold = max(0.0, math.ceil(min(WAIT_SLICE, left) * 1000) / 1000)
        def send() -> dict[str, Any]:
            try:
                # Retried within the wait's timeout only (a master away is not waited out
                # past it); a retry asks the master to hold only what is left of the wait.
                reply: dict[str, Any] = self._transport.call(
                    "POST", "/dags", json=body, idempotency_key=True, deadline=deadline,
                    hold=Hold("wait", time.monotonic() + hold, WAIT_MARGIN) if hold else None)
            except ConnectionFailed as exc:
                raise unreachable_within(exc, deadline, f"submitting DAG {name!r} (whether "
                                         f"it was submitted is unknown: list_dags(name="
                                         f"{name!r}) says)") from None
            return reply

        try:
            reply = send()
        except InvalidDAG as exc:
            # A script this client uploaded earlier, and so did not ask about, was collected
            # as unused since (blob garbage collection): uploaded again, sent again, once.
            if not self._forget_uploaded(exc.details.get("sha256")):
                raise
            self._script_blobs(jobs, deadline)
            reply = send()
        if driving and agent_run_id:
            # This process drives the run from outside: it ends when the process does, and
            # what it runs is recorded so the run can be replayed.
            from titan.trace import code, drive

            drive(agent_run_id, self.endpoint)
            code.register(self._transport, agent_run_id, {
                str(job.script_path().resolve()): sha for job in jobs
                if not job.is_archive and (sha := shas[job.job_id]) is not None})
        elif asked and os.environ.get("TITAN_REPLAY"):
            # A replayed driver's stage joined the replay's run (it is not driving, above):
            # here its original began to drive, and to record its own calls in the run.
            from titan.trace import context

            context.replayed_driver_drives()
        if isinstance(reply.get("id"), int):
            stages = self.submitted_stages()
            stages.append(reply["id"])
            del stages[:-MAX_WATCHED]  # the oldest go first
            _submitter.client = weakref.ref(self)
        if wait and reply.get("status") in ("WAITING", "RUNNING"):
            # Still running after the master's hold (or an older master that does not hold).
            rest = None if deadline is None else deadline - time.monotonic()
            try:
                if rest is not None and rest <= 0:
                    raise WaitTimeout(f"timed out after {round(timeout or 0, 1):g}s waiting for DAG "
                                      f"{reply.get('ref', name)!r}")
                return self.wait_dag(reply["id"], timeout=rest)
            except WaitTimeout as exc:
                exc.details = {**exc.details, "dag": reply}
                raise
        return reply

    def submitted_stages(self) -> list[int]:
        """The ids of the DAGs this thread submitted through this client that a signal wait
        still watches (``wait_for_signal``: a stage that failed before it signalled)."""
        stages: list[int] | None = getattr(self._stages, "ids", None)
        if stages is None:
            stages = self._stages.ids = []
        return stages

    def submit_job(self, job: TitanJob, agent_run_id: str | None = None, *,
                   wait: bool = False, timeout: float | None = None) -> dict[str, Any]:
        """Submit one job as a DAG named after its id; the DAG object — once it has finished
        when ``wait`` is true (as :meth:`submit_dag`)."""
        if not isinstance(job, TitanJob):
            raise ValidationFailed(f"submit_job() takes a TitanJob, got {job!r}",
                                   details={"field": "job"})
        return self.submit_dag(job.job_id, [job], agent_run_id=agent_run_id, wait=wait,
                               timeout=timeout)

    def submit_yaml(
        self,
        path: str | os.PathLike[str],
        agent_run_id: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        allow_files: Iterable[str | os.PathLike[str]] = (),
    ) -> dict[str, Any]:
        """Submit a YAML pipeline (see :mod:`titan.client.pipeline`); the DAG object — once
        it has finished when ``wait`` is true. ``allow_files`` names scripts outside the
        pipeline's folder that its jobs may use (refused otherwise)."""
        name, jobs = load_pipeline(path, allow_files)
        try:
            return self.submit_dag(name, jobs, agent_run_id=agent_run_id, wait=wait,
                                   timeout=timeout)
        except (ValidationFailed, ScriptNotFound) as exc:
            # What the master (or the script lookup) found names a job: say where it is.
            located = pipeline_where(jobs, exc)
            if located is None:
                raise
            raise located from None
