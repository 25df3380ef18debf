"""The run ledger on the master: verifying a run's chain, and the Activity Ledger's verdicts.

:func:`verify_run` walks one run whole (``GET /api/v1/runs/{id}/verify``, ``titan runs
verify``): always from the database, never from a cache. The Activity Ledger shows, on each
row, whether its run's chain holds through that row; checking every run of every page on every
view would read whole runs again and again, so :class:`LedgerChecks` keeps one verdict per run
and walks again only when it must:

* a verdict stands while the run's head and count are what it checked, for ``ttl`` seconds;
* a run that grew since is checked from where its verdict ended (its last verified hash), not
  from the start; one past ``ttl`` is walked whole again;
* a page view walks at most ``budget`` actions in all; a walk cut short is kept and resumed by
  the next view, and until a walk finishes the rows it has not reached say ``unchecked``.

So a tampered row shows as broken within ``ttl`` of the edit on a page that lists it, and at
once through the API or the CLI.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from titan.ledger_verify import verify
from titan.storage.base import Row, Transaction
from titan.storage.blobs.base import BlobStore

RETRIES = 3
VIEW_KEYS = ("run_id", "status", "message", "actions", "checked", "unchained", "chained_from",
             "verified_through", "head", "break", "checked_at")


def verify_run(tx: Transaction, run: Row, *, resume: tuple[int, str | None] | None = None,
               limit: int | None = None, blobs: BlobStore | None = None) -> Row:
    """The verdict of ``run``'s chain (see :func:`titan.ledger_verify.verify`), with ``run_id`` and
    ``checked_at``. With ``blobs`` (``titan runs verify``, not the Activity Ledger's running
    checks), each payload kept in the blob store is read back and hashed too."""
    for attempt in range(RETRIES):
        rows = tx.iter_actions(run["id"], after=resume[0] if resume else 0)
        report = verify(run["id"], run["action_count"], run.get("chain_head"),
                        run.get("chain_start"), rows if blobs is None else
                        _with_blobs(rows, blobs), resume=resume, limit=limit,
                        chained_since=tx.chained_since(), created=run.get("created_at"))
        found = report["break"]
        if found is None or found["kind"] != "inserted" or attempt == RETRIES - 1:
            break
        # On PostgreSQL each statement sees the latest commit: actions appended after the
        # run's row was read look inserted behind its back. If the run now counts them, it
        # is checked again against the row as it is now.
        again = tx.get_run(run["id"])
        if again is None or again["action_count"] == run["action_count"]:
            break
        run = again
    return dict(report, run_id=run["id"], checked_at=time.time())



def _with_blobs(rows: Iterable[Row], blobs: BlobStore) -> Iterator[Row]:
    """The rows, each whose payload in the blob store does not hold up marked so."""
    for a in rows:
        for side in ("inputs", "outputs"):
            if a[f"{side}_blob"]:
                problem = _blob_problem(blobs, a[f"{side}_hash"], a[side])
                if problem is not None:
                    a = dict(a, _payload_problem=f"its {side} {problem}")
                    break
        yield a


def _blob_problem(blobs: BlobStore, sha: str | None, preview: str | None) -> str | None:
    if not sha or not blobs.exists(sha):
        return "are not in the blob store under the hash recorded with them"
    digest, head = hashlib.sha256(), b""
    for chunk in blobs.read(sha):
        digest.update(chunk)
        if len(head) < 4 * len(preview or ""):
            head += chunk
    if digest.hexdigest() != sha:
        return "in the blob store no longer match the hash recorded with them"
    if preview and not head.decode("utf-8", "replace").startswith(preview):
        return "preview kept in the row is not the start of the payload recorded"
    return None

def verdict_view(verdict: Row) -> Row:
    """A verdict as the API, the CLI and the pages show it (without the walk's bookkeeping)."""
    return {k: verdict[k] for k in VIEW_KEYS}


def row_status(verdict: Row | None, seq: int) -> str:
    """What one action's row says of its chain: ``verified``, ``broken`` (at or after the
    first break), ``unchained`` (recorded before the ledger) or ``unchecked`` (not reached
    yet)."""
    if verdict is None:
        return "unchecked"
    found = verdict.get("break")
    if found is not None and seq >= found["seq"]:
        return "broken"
    if seq > verdict["through"]:
        return "unchecked"
    start = verdict.get("chained_from")
    return "unchained" if start is None or seq < start else "verified"


class LedgerChecks:
    """The latest verdict of each run the Activity Ledger showed (see the module docstring).
    Thread-safe: pages are built on the reader threads."""

    def __init__(self, ttl: float = 600.0, budget: int = 50_000, size: int = 10_000) -> None:
        self.ttl, self.budget, self.size = ttl, budget, size
        self._lock = threading.Lock()
        # run id -> (its last finished verdict, the walk in progress): either may be None.
        self._runs: OrderedDict[str, tuple[Row | None, Row | None]] = OrderedDict()

    def remember(self, verdict: Row) -> None:
        """Keep a finished verdict (the API's full walks are as good as the page's)."""
        self._put(verdict["run_id"], verdict, None)

    def verdicts(self, tx: Transaction, runs: Iterable[Row]) -> dict[str, Row | None]:
        """The verdict to show for each run (None: not checked yet), walking within budget."""
        budget = self.budget
        out: dict[str, Row | None] = {}
        for run in runs:
            done, walking = self._get(run["id"])
            now = time.time()
            if done is not None and _covers(done, run) and now - done["checked_at"] < self.ttl:
                out[run["id"]] = done
                continue
            if budget <= 0:
                out[run["id"]] = _shown(done, walking)
                continue
            # Go on from the walk in progress, else from the last verdict if the run grew.
            source = next((v for v in (walking, done) if _resume_point(v, run, now, self.ttl)),
                          None)
            report = verify_run(tx, run, resume=_resume_point(source, run, now, self.ttl),
                                limit=budget)
            budget -= report["read"]
            if source is not None:  # as old as its oldest part
                report["checked_at"] = source["checked_at"]
            if report["status"] == "partial":
                walking = report
            else:
                done, walking = report, None
            self._put(run["id"], done, walking)
            out[run["id"]] = _shown(done, walking)
        return out

    def _get(self, run_id: str) -> tuple[Row | None, Row | None]:
        with self._lock:
            found = self._runs.get(run_id)
            if found is None:
                return None, None
            self._runs.move_to_end(run_id)
            return found

    def _put(self, run_id: str, done: Row | None, walking: Row | None) -> None:
        with self._lock:
            self._runs[run_id] = (done, walking)
            self._runs.move_to_end(run_id)
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)


def _shown(done: Row | None, walking: Row | None) -> Row | None:
    """Of the last verdict and the walk in progress, the one that says more: a break, else
    the one that reached further."""
    if done is None or walking is None:
        return done or walking
    if done["status"] == "broken":
        return done
    return walking if walking["through"] > done["through"] else done


def _covers(verdict: Row, run: Row) -> bool:
    """Whether a verdict was reached on the run as it is now (same count, head and start)."""
    return bool(verdict["actions"] == run["action_count"] and verdict["head"] == run.get(
        "chain_head") and verdict["chained_from"] == run.get("chain_start"))


def _resume_point(verdict: Row | None, run: Row, now: float,
                  ttl: float) -> tuple[int, str | None] | None:
    """Where a walk may go on from: a verdict (or walk) still fresh, on the same chain, that
    found part of it sound. None: walk from the start."""
    if verdict is None or verdict["status"] not in ("verified", "partial", "unchained") or \
            now - verdict["checked_at"] >= ttl or \
            verdict["chained_from"] != run.get("chain_start") or \
            not 0 < verdict["through"] < run["action_count"]:
        return None
    through, last = verdict["through"], verdict.get("last_hash")
    start = run.get("chain_start")
    if last is None and start is not None and through >= start:
        return None
    return through, last
