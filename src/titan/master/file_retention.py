"""Named files and published artifacts deleted: by hand (``DELETE /files/{name}``, ``DELETE
/artifacts?key=``, ``titan files rm``), with the DAG runs that published them, and after
``TITAN_FILE_RETENTION``.

Every upload, project folder and publish adds a version; before this nothing deleted one, so a
master whose agents publish reports grew without bound, and a file uploaded by mistake (a
secret) could not be taken back. Only rows of the ``files`` table go here: the blob a deleted
version named is garbage collection's (``master/blob_gc.py``), deleted once nothing names it —
a job pinned to the same content by its ``script_sha256`` keeps it.

What stays unless deleted by name or key: the *current* versions, the newest of each name
(``GET /files/{name}``) and the newest published under each store key (``GET
/artifacts?key=``). Retention deletes only older versions (:mod:`titan.storage.sql_files`):

- those a job of a DAG run published, once that run is pruned (``titan dags prune``,
  ``TITAN_DAG_RETENTION``): swept after each prune, including versions of runs pruned before
  this existed;
- with ``TITAN_FILE_RETENTION`` (``90d``; unset: kept), those stored longer ago, at start and
  hourly.

A deletion by name or key keeps the store in step with ``publish_artifact``, which sets the
key's value to the file's name: when the newest version under a key goes and the value is
still that version's name, the value becomes the name of the newest left, or is deleted when
none is. A value written since by other means is left alone.

An archive job that has not ended and is not pinned to its archive's content fetches
``<project>.zip`` by name when it starts: deleting that name's newest version while one waits
is refused (409), as it would fail the job on its worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from titan.errors import Conflict, NotFound
from titan.formats import file_name, human_size
from titan.master.idempotency import once
from titan.master.scheduling.engine_core import EngineCore
from titan.master.scheduling.state import TERMINAL
from titan.storage.base import Row, Transaction
from titan.windows import deletion_cutoff

log = logging.getLogger("titan.master")

ENV = "TITAN_FILE_RETENTION"
SWEEP_SECONDS = 3600.0
#: Versions chosen, then deleted in one transaction of the writer, per batch.
BATCH = 500
#: Ids listed in an answer (the counts are whole).
SHOWN = 1000


async def delete_files(engine: EngineCore, *, name: str | None = None, key: str | None = None,
                       keep_latest: bool = False, idempotency_key: str | None = None,
                       scope: str = "") -> Row:
    """Delete every version of the file ``name`` (or every file published under the store
    key ``key``), all but the newest with ``keep_latest``; what went: ``deleted`` (versions),
    ``bytes`` (their sizes), ``kept``, ``ids`` and ``store`` (the store values changed with
    them: key to its new value, None where deleted). NotFound when there is none."""
    what: dict[str, Any] = {"name": name} if name is not None else {"store_key": key}
    said = f"no file named {name!r}" if name is not None else \
        f"no artifact published under key {key!r}"

    def current(tx: Transaction) -> list[str]:
        """The names whose newest version this deletion takes."""
        doomed = _doomed(tx.file_versions(**what), keep_latest)
        ids = {r["id"] for r in doomed}
        newest = {n: tx.latest_file(name=n) for n in {r["name"] for r in doomed}}
        return sorted(n for n, row in newest.items() if row is not None and row["id"] in ids)

    waiting = _archive_jobs(engine, await engine.read(current))
    if waiting:
        jobs = [j for _, j in waiting]
        raise Conflict(
            f"{len(jobs)} archive job(s) not ended yet run from {waiting[0][0]} and fetch it "
            f"by name when they start ({', '.join(jobs[:5])}): cancel them or let them end "
            "first, or keep the newest version (keep_latest)",
            details={"jobs": jobs[:100], "name": waiting[0][0]})

    def op(tx: Transaction) -> Row:
        rows = tx.file_versions(**what)
        if not rows:
            raise NotFound(said, details=dict(what))
        doomed = _doomed(rows, keep_latest)
        keys = sorted({r["store_key"] for r in doomed if r["store_key"] is not None})
        before = {k: (tx.latest_file(store_key=k), tx.store_get(k)) for k in keys}
        gone = tx.delete_files([r["id"] for r in doomed])
        store: dict[str, str | None] = {}
        for k, (newest, value) in before.items():
            if newest is None or value != newest["name"]:
                continue  # set since by other means: not publish's to change
            now = tx.latest_file(store_key=k)
            if now is None:
                tx.store_delete_value(k)
                store[k] = None
            elif now["name"] != value:
                tx.store_put(k, now["name"], time.time())
                store[k] = now["name"]
        return {"deleted": len(gone), "bytes": sum(r["size"] for r in gone),
                "kept": len(rows) - len(gone), "ids": [r["id"] for r in gone][:SHOWN],
                "store": store}

    result: Row
    result, replayed = await engine.run(once(idempotency_key, scope, op))
    if result["deleted"] and not replayed:
        log.info("files: deleted %d version(s) of %s, %s", result["deleted"],
                 f"file {name!r}" if name is not None else f"artifact key {key!r}",
                 human_size(result["bytes"]))
    return result


def _doomed(rows: list[Row], keep_latest: bool) -> list[Row]:
    return rows[:-1] if keep_latest else rows


def _archive_jobs(engine: EngineCore, names: list[str]) -> list[tuple[str, str]]:
    """(name, job) for each archive job not ended that fetches one of these ``<project>.zip``
    by name when it starts: not pinned to its archive's content by ``script_sha256``."""
    # Composed (NFC) on both sides: a project's folder may be named in either form.
    projects = {file_name(n[:-4]): n for n in names if n.endswith(".zip")}
    if not projects:
        return []
    sched = engine.sched
    found = []
    for job in sched.jobs.values():
        row = job.row
        if job.state in TERMINAL or not row.get("is_archive") or row.get("script_sha256"):
            continue
        project = file_name(str(row.get("filename", "")).split("/", 1)[0])
        if project in projects:
            dag = sched.dags.get(job.dag_id)
            ref = f"{dag.name}#{dag.run}/{job.job_id}" if dag is not None else job.job_id
            found.append((projects[project], ref))
    return sorted(found)


async def prune_files(engine: EngineCore, *, before: float | None = None,
                      orphaned: bool = False) -> tuple[int, int]:
    """Delete the old versions (neither the newest of their name nor under their store key)
    stored before ``before``, or (``orphaned``) published by a DAG run since pruned; (how
    many, their bytes). A batch at a time, each chosen by a read and deleted by one
    transaction of the writer that checks again that each is still an old version."""
    count = size = 0
    after = 0
    while True:
        ids: list[int] = await engine.read(functools.partial(
            _prunable, before=before, orphaned=orphaned, after=after))
        if not ids:
            break
        gone: list[Row] = await engine.run(functools.partial(_delete_old, ids=ids))
        count += len(gone)
        size += sum(r["size"] for r in gone)
        after = ids[-1]
        if len(ids) < BATCH:
            break
    if count:
        why = "of pruned DAG runs" if orphaned else "past TITAN_FILE_RETENTION"
        log.info("retention: deleted %d old file version(s) %s, %s (the newest of each name "
                 "and store key stay)", count, why, human_size(size))
    return count, size


def _delete_old(tx: Transaction, ids: list[int]) -> list[Row]:
    return tx.delete_files(ids, old_only=True)


def _prunable(tx: Transaction, before: float | None, orphaned: bool, after: int) -> list[int]:
    return tx.prunable_files(before=before, orphaned=orphaned, after=after, limit=BATCH)


async def keep_pruning(engine: EngineCore, window: str) -> None:
    """Forever (a task of the master): delete old versions stored longer ago than ``window``,
    at start and hourly."""
    deletion_cutoff(window, ENV)  # checked at start too (config)
    while True:
        try:
            await prune_files(engine, before=deletion_cutoff(window, ENV))
        except Exception:
            log.exception("retention: deleting old file versions failed")
        await asyncio.sleep(SWEEP_SECONDS)
