"""A job's log through the SDK: its lines, followed live across retries, or its text whole
(part of :class:`~titan.client.client.TitanClient`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from titan import log_lines
from titan.client.reading import job_ref
from titan.client.transport import Transport
from titan.errors import TitanError
from titan.url_paths import quote_row_ref

Ref = str | int
#: How long one logs long-poll is held open by the master while following.
LOG_WAIT = 20.0
#: Log lines asked for per request.
LOG_PAGE = 10000
_UNFINISHED = ("PENDING", "READY", "RUNNING")


class LogOps:
    """``iter_logs`` and ``fetch_logs``."""

    _transport: Transport
    get_job: Callable[[Ref], dict[str, Any]]  # TitanClient's own reader

    def iter_logs(
        self, ref: Ref | None = None, attempt: int | None = None, *, follow: bool = False,
        job_id: Ref | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The job's log lines as ``{"seq", "stream", "ts", "line", "attempt"}``; with
        ``follow``, new lines as they come until the job is finished (one long poll at a
        time). Following without an ``attempt``, a retry's log follows its predecessor's,
        after a line of stream ``"titan"`` that says so (the follow used to end with the
        failed attempt while the job ran on); ``seq`` starts again with each attempt.
        ``job_id=``: the job by name, as for every job reader."""
        return self._log_lines(job_ref(ref, job_id, "iter_logs"), attempt, follow)

    def _log_lines(self, ref: Ref, attempt: int | None,
                   follow: bool) -> Iterator[dict[str, Any]]:
        pinned = attempt is not None
        after = 0
        path = f"/jobs/{quote_row_ref(ref)}/logs"
        limit = LOG_PAGE
        while True:
            wait = LOG_WAIT if follow else 0
            reply = self._transport.call(
                "GET", path,
                params={"attempt": attempt, "after": after, "limit": limit, "wait": wait},
                read_timeout=wait + 15.0 if follow else None,
            )
            lines = reply.get("lines") or []
            for line in lines:  # the attempt each is of: a follow goes on into a retry's log
                line["attempt"] = reply.get("attempt")
            yield from lines
            # Stay on the attempt first shown: a retry starts a new log, it doesn't extend it.
            # Attempt 0 means the job had not started yet: follow the attempt that comes.
            if attempt is None and reply.get("attempt"):
                attempt = int(reply["attempt"])
            after = int(reply.get("next", after + len(lines)))
            if follow:
                if reply.get("done") and not lines:
                    if attempt is None:  # it had not started when the follow began
                        if int(reply.get("latest") or 0) > 0:
                            # It has run since (and may have ended already: a quick job's
                            # whole log came and went during the long poll): every attempt
                            # is new to this follower, from the first on.
                            attempt, after = 1, 0
                            continue
                        if reply.get("state") in _UNFINISHED:
                            continue
                        return  # ended without ever running (cancelled, skipped)
                    if pinned or int(reply.get("latest") or 0) <= attempt:
                        return
                    # That attempt ended and the job ran again (it may have ended meanwhile
                    # too): on to the next attempt's log.
                    yield {"seq": 0, "stream": "titan", "ts": time.time(), "attempt": attempt,
                           "line": f"[titan] attempt {attempt} ended"
                                   f"{self._how_attempt_ended(ref, attempt)}; the job runs "
                                   f"again as attempt {attempt + 1}"}
                    attempt, after = attempt + 1, 0
            elif not reply.get("more", len(lines) == limit):
                # A page ends short of `limit` at the master's byte cap too: `more` says
                # whether lines follow (a master without it: a full page).
                return

    def _how_attempt_ended(self, ref: Ref, attempt: int) -> str:
        """`` LOST: lease of attempt 1 expired on worker w-1``: what a follower is told of an
        attempt that ended and was run again ("" when the master does not say)."""
        try:
            found = [a for a in self.get_job(ref).get("attempts") or []
                     if a.get("attempt") == attempt]
        except TitanError:
            return ""
        if not found:
            return ""
        error = found[0].get("error")
        return f" {found[0].get('state')}" + (f": {error}" if error else "")

    def fetch_logs(self, ref: Ref | None = None, attempt: int | None = None, *,
                   job_id: Ref | None = None) -> str:
        """The job's output so far (stdout and stderr interleaved), lines joined by newlines
        (a line past 64 KiB, stored in pieces, whole again). ``attempt``: which run of the job
        (default the latest). ``job_id=``: the job by name (seed 002's ``fetch_logs(job_id)``)."""
        return log_lines.text(self._log_lines(job_ref(ref, job_id, "fetch_logs"), attempt,
                                              False))
