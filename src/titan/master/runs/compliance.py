"""A run's compliance metadata: who started it, its retention class, what redaction found.

Seed 004's inspector shows, per run, who ran it, its code version, its data retention class
and its PII flags. The first is known only when the run is created, from the request's
principal: a token's role and name, or, for a job's token, the job, its DAG and the worker
that ran it (read from the scheduler's memory, where that attempt is live). PII flags are
counts by pattern (``{"email": 2}``), kept on each action by field and summed on its run in
the same transaction; the matched text is never kept anywhere.

Redaction itself (:mod:`titan.redaction`) runs here on each parsed action, off the event loop,
before payloads are canonicalised and hashed — so the stored hash is the hash of the stored,
redacted text, and a replay compares against that (it redacts its live inputs alike).
"""

from __future__ import annotations

from typing import Any

from titan.errors import Forbidden, ValidationFailed
from titan.master.auth.tokens import ADMIN, OPERATE, Principal
from titan.redaction import Redactor, merge
from titan.retention import retention_problem
from titan.storage.base import Row
from titan.trace.canonical import dumps

#: Values Titan itself made (clock readings, random draws): not user data, never scanned,
#: so they always replay as recorded.
UNSCANNED_CHANNELS = frozenset({"clock", "random"})
FIELDS = ("inputs", "outputs", "error", "tags")


def started_by(who: Principal, sched: Any) -> Row:
    """What the master knows of the principal that created a run. A job's token names the
    job, its DAG and its worker (the scheduler holds them while the attempt runs)."""
    if who.role == "job":
        out: Row = {"role": "job", "job": who.job, "attempt": who.attempt}
        job = sched.jobs.get(who.job or -1)
        if job is not None:
            dag = sched.dags.get(job.dag_id)
            out.update(job_id=job.job_id, worker=job.worker_id)
            if dag is not None:
                out.update(dag=dag.name, dag_run=dag.run)
        return out
    out = {"role": who.role}
    if who.name:
        out["name"] = who.name
    if who.token_id:
        out["token_id"] = who.token_id
    return out


def started_by_label(by: Row | None) -> str | None:
    """One line for people: ``operator token 'ci'``, ``job plan of DAG-x#2 on worker w-1``."""
    if not by:
        return None
    if by.get("role") == "job":
        what = f"job {by.get('job_id') or '#' + str(by.get('job'))}"
        if by.get("dag"):
            what += f" of DAG-{by['dag']}#{by.get('dag_run')}"
        if by.get("worker"):
            what += f" on worker {by['worker']}"
        return what + (f" (attempt {by['attempt']})" if by.get("attempt") else "")
    name = f" {by['name']!r}" if by.get("name") else ""
    if by.get("role") == "schedule":
        return f"schedule{name}"
    if not by.get("token_id"):  # the master acting for itself (evaluations, settling)
        return f"the master{name} ({by.get('role')})"
    return f"{by.get('role')} token{name}"


def check_retention_class(fields: Row, who: Principal, current: str | None = None) -> None:
    """A run's class may be set by any writer when it is created (a stricter class only
    protects more); changed afterwards by an operator, and a legal hold lifted by an admin
    only, so the code being recorded can never shorten its own retention."""
    value = fields.get("retention_class")
    if value is None:
        return
    problem = retention_problem(value)
    if problem is not None:
        raise ValidationFailed(problem, details={"field": "retention_class"})
    if current is None or value == current:
        return
    if who.role not in OPERATE:
        raise Forbidden("only an operator or admin may change a run's retention class")
    if current == "legal_hold" and who.role not in ADMIN:
        raise Forbidden("only an admin may lift a legal hold")


def total(pii: Row | None) -> dict[str, int]:
    """An action's counts by pattern, all fields together."""
    out: dict[str, int] = {}
    if not isinstance(pii, dict):  # None, or a row's text that is not JSON (edited by hand)
        return out
    for counts in pii.values():
        if isinstance(counts, dict):  # a row edited into another shape counts nothing
            merge(out, counts)
    return out


def redact_action(redactor: Redactor | None, r: Row) -> dict[str, str]:
    """Redact one parsed action in place (its inputs, outputs, error message and tags),
    setting ``r["pii"]``; returns the canonical texts of its inputs and outputs, which the
    caller stores and hashes. The gates look at the texts first: most actions hold nothing
    any pattern could match and cost one scan.

    Tags are recorded content too: an OTLP span's attributes the mapping does not read land
    in them (``tags.otel.attributes``: whole prompts, a user's email, a request's headers),
    and an SDK's tags are whatever the code put there."""
    texts = {"inputs": dumps(r["inputs"]), "outputs": dumps(r["outputs"])}
    r["pii"] = None
    if redactor is None or r["channel"] in UNSCANNED_CHANNELS:
        return texts
    tags = r.get("tags")
    probe = "\n".join((texts["inputs"], texts["outputs"], r["error_message"] or "",
                       "" if tags is None else dumps(tags)))
    if not redactor.might_match(probe):
        return texts
    found: Row = {}
    for side in ("inputs", "outputs"):
        counts: dict[str, int] = {}
        value = redactor.value(r[side], counts)
        if counts:
            r[side], texts[side], found[side] = value, dumps(value), counts
    if r["error_message"]:
        counts = {}
        r["error_message"] = redactor.text(r["error_message"], counts)
        if counts:
            found["error"] = counts
    if tags is not None:
        counts = {}
        value = redactor.value(tags, counts)
        if counts:
            r["tags"], found["tags"] = value, counts
    r["pii"] = found or None
    return texts


def redact_run_error(redactor: Redactor | None, fields: Row) -> dict[str, int]:
    """A run's own error (the exception that ended its driver), redacted in place; counts."""
    counts: dict[str, int] = {}
    if redactor is not None and isinstance(fields.get("error"), str):
        fields["error"] = redactor.text(fields["error"], counts)
    return counts


def batch_pii(rows: list[Row]) -> dict[str, int]:
    """What a batch of redacted actions adds to its run's counts."""
    out: dict[str, int] = {}
    for r in rows:
        if r.get("pii"):
            merge(out, total(r["pii"]))
    return out
