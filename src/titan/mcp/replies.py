"""How much of what the API answers a tool call gives back: every byte of a result lands in
the agent's context window, so a DAG shows its first jobs, a job its fields cut, a store value
and a log page their first (or last) kilobytes (:mod:`titan.mcp.tools` makes the calls)."""

from __future__ import annotations

from typing import Any

MAX_LOG_LINES = 2000
MAX_LOG_CHARS = 64 * 1024
MAX_VALUE_BYTES = 256 * 1024
MAX_DAG_JOBS = 200
#: A job's longest text field, and most items of a list field (its args, parents, attempts),
#: that a reply carries: a job's 1,000 args of 1,000 characters were a 1 MB get_job_status.
MAX_FIELD_CHARS = 2000
MAX_FIELD_ITEMS = 50

def shown_dag(dag: dict[str, Any]) -> dict[str, Any]:
    """A DAG with its first :data:`MAX_DAG_JOBS` jobs, each reduced to what says how it went;
    without ``jobs`` when the API's reply carries none (a submission's: ``"jobs": []`` beside
    ``job_count: 1`` read as a DAG of no jobs)."""
    keep = ("id", "job_id", "ref", "kind", "state", "attempt", "exit_code", "error", "reason",
            "worker_id", "hitl_message", "decided_by", "decision_comment")
    out = {k: v for k, v in dag.items() if k != "jobs"}
    jobs = dag.get("jobs")
    if jobs is None:
        return out
    out["jobs"] = [shown_job({k: job.get(k) for k in keep if job.get(k) is not None})
                   for job in jobs[:MAX_DAG_JOBS]]
    if len(jobs) > MAX_DAG_JOBS:
        out["jobs_omitted"] = len(jobs) - MAX_DAG_JOBS
    return out


def shown_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job with each text cut at :data:`MAX_FIELD_CHARS` characters and each list at
    :data:`MAX_FIELD_ITEMS` items (its texts cut too); ``truncated`` names the fields cut and
    ``<field>_omitted`` counts a list's items left out."""
    out: dict[str, Any] = {}
    cut: list[str] = []
    for key, value in job.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            out[key] = value[:MAX_FIELD_CHARS]
            cut.append(key)
        elif isinstance(value, list):
            items = [item[:MAX_FIELD_CHARS] if isinstance(item, str) else item
                     for item in value[:MAX_FIELD_ITEMS]]
            out[key] = items
            if len(value) > MAX_FIELD_ITEMS:
                out[f"{key}_omitted"] = len(value) - MAX_FIELD_ITEMS
            if len(value) > MAX_FIELD_ITEMS or items != value[:MAX_FIELD_ITEMS]:
                cut.append(key)
        else:
            out[key] = value
    if cut:
        out["truncated"] = cut
    return out


def log_head(page: dict[str, Any]) -> dict[str, Any]:
    return {"job": page["job"], "attempt": page["attempt"], "state": page["state"]}


def fit_lines(lines: list[dict[str, Any]], *, keep_end: bool) -> list[dict[str, Any]]:
    """As many lines as fit in :data:`MAX_LOG_CHARS` characters, from the end or the start."""
    size, kept = 0, 0
    for line in reversed(lines) if keep_end else lines:
        size += len(line["line"]) + 1
        if size > MAX_LOG_CHARS:
            break
        kept += 1
    if not kept and lines:  # one line over the cap alone: its start, so a page still moves on
        line = lines[-1] if keep_end else lines[0]
        return [{**line, "line": str(line["line"])[:MAX_LOG_CHARS]}]
    return lines[len(lines) - kept:] if keep_end else lines[:kept]


def shown_value(key: str, value: str | None) -> dict[str, Any]:
    """The value, cut at 256 KiB of UTF-8 (as documented: bytes, not characters, so a
    value of wide characters is cut too), never inside a character; ``size`` in bytes."""
    if value is None or len(value) * 4 <= MAX_VALUE_BYTES:
        return {"key": key, "value": value}
    data = value.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_VALUE_BYTES:
        return {"key": key, "value": value}
    cut = data[:MAX_VALUE_BYTES].decode("utf-8", "ignore")
    return {"key": key, "value": cut, "truncated": True, "size": len(data)}


def text_or_bytes(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data
