"""Verifying a run's ledger: its actions walked in seq order, the first that no longer fits named.

Every link of the chain (:mod:`titan.ledger`) is recomputed; the first action that does not
fit is named for what happened to it after recording — edited, deleted, inserted or reordered
— or the chain holds.

A leaf like :mod:`titan.ledger`: the master (``titan runs verify``, the Activity Ledger) and
the CLI (an export, offline) share it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from titan.ledger import Row, content, genesis, link, payload_problem

#: How far past a misplaced action :func:`verify` looks for the one recorded in its place.
SEARCH = 100_000
#: How far ahead of the master's clock an action's own start may be (the run service refuses
#: one past tomorrow), and how far two masters' clocks may disagree (a standby took over).
SKEW = 86_400.0


def when(t: float) -> str:
    """A time as the messages say it (UTC), or as it is when no calendar holds it."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return repr(t)


def _break(seq: int, kind: str, message: str, action_id: str | None = None) -> Row:
    return {"seq": seq, "kind": kind, "action_id": action_id, "message": message}


class _Walk:
    """One pass over a run's actions in seq order (see :func:`verify`)."""

    def __init__(self, run_id: str, count: int, head: str | None, start: int | None,
                 resume: tuple[int, str | None] | None,
                 chained_since: float | None = None, created: float | None = None) -> None:
        self.run_id, self.count, self.head, self.start = run_id, count, head, start
        self.chained_since, self.created = chained_since, created
        #: The earliest and latest recorded_at of the unchained actions read.
        self.claimed: tuple[float, float] | None = None
        self.expected, self.prev = (resume[0] + 1, resume[1]) if resume else (1, None)
        self.read = 0  # rows read, this walk
        self.head_at: int | None = None  # the seq whose chain hash the run's head is

    def step(self, a: Mapping[str, Any]) -> Row | None:
        """Check one action; the break it shows, if any (kind "" when only the rows after
        it can tell which: see :meth:`misplaced`)."""
        seq = a["seq"]
        self.read += 1
        if seq < self.expected:  # a seq met again (a row copied, or renumbered onto another)
            return _break(seq, "inserted", f"action #{seq} appears twice: an action was "
                          f"inserted (or renumbered) after recording", a.get("id"))
        if seq != self.expected:
            missing = (f"#{self.expected}" if seq == self.expected + 1
                       else f"#{self.expected}–#{seq - 1}")
            return _break(self.expected, "deleted",
                          f"action {missing} is missing: deleted after recording (the run "
                          f"goes from #{self.expected - 1} to #{seq})")
        self.expected = seq + 1
        if (self.start is None or seq < self.start) and not a["chain_hash"] \
                and self.chained_since is not None \
                and (a.get("recorded_at") or 0) > self.chained_since:
            # Unchained, though recorded when every action was chained: the chain was
            # stripped (hashes and head removed) to pass an edit off as old data.
            return _break(seq, "edited", f"action #{seq} has no chain hash though it was "
                          "recorded after the ledger existed: its chain was removed", a["id"])
        if self.start is None or seq < self.start:
            if a["chain_hash"]:
                return _break(seq, "head", f"action #{seq} carries a chain hash but the run "
                              "has no chain head: the run's head was removed", a["id"])
            return self.unchained(a)
        if seq == self.start:
            self.prev = genesis(self.run_id)
        if not a["chain_hash"]:
            return _break(seq, "edited", f"action #{seq} lost its chain hash: removed after "
                          "recording", a["id"])
        problem = payload_problem(a)
        if problem is not None:
            return _break(seq, "edited", f"action #{seq} was edited: {problem}", a["id"])
        assert self.prev is not None
        if a["chain_hash"] != link(self.prev, seq, content(a)):
            return _break(seq, "", "", a["id"])
        self.prev = a["chain_hash"]
        if a["chain_hash"] == self.head:
            self.head_at = seq
        return None

    def unchained(self, a: Mapping[str, Any]) -> Row | None:
        """An action with no chain hash, whose recorded_at says it predates the ledger. That
        column is as easy to change as the hashes were to remove: it is held to what else the
        database says of when — its run's creation (the master's clock, as recorded_at is)
        and its own start (at most a day ahead of the clock that recorded it)."""
        seq, recorded = a["seq"], float(a.get("recorded_at") or 0.0)
        self.claimed = (min(self.claimed[0], recorded), max(self.claimed[1], recorded)) \
            if self.claimed else (recorded, recorded)
        claim = f"action #{seq} has no chain hash and says it was recorded at {when(recorded)}"
        if self.created is not None and self.chained_since is not None \
                and self.created > self.chained_since:
            return _break(seq, "edited", f"{claim}, before the ledger existed, but its run was "
                          f"created after it (at {when(self.created)}; the ledger since "
                          f"{when(self.chained_since)}): its chain was removed", a["id"])
        if self.created is not None and recorded < self.created - SKEW:
            return _break(seq, "edited", f"{claim}, before its run was created (at "
                          f"{when(self.created)}): its recorded_at was changed", a["id"])
        started = a.get("started_at")
        if isinstance(started, int | float) and started > recorded + SKEW:
            return _break(seq, "edited", f"{claim}, over a day before it started (at "
                          f"{when(started)}): its recorded_at was changed", a["id"])
        return None

    def misplaced(self, found: Row, rest: Iterator[Mapping[str, Any]]) -> Row:
        """Action #k does not hash to its chain hash: read the rest of the run to say why
        (the action recorded at #k found further on; more or fewer rows than it counts)."""
        k, prev, action_id = found["seq"], self.prev, found["action_id"]
        assert prev is not None
        rows, moved_to = k, None
        for b in rest:
            rows += 1
            if moved_to is None and rows - k <= SEARCH and b["chain_hash"] and \
                    b["chain_hash"] == link(prev, k, content(b)):
                moved_to = b["seq"]
        if moved_to is not None and rows > self.count:
            return _break(k, "inserted", f"action #{k} was inserted after recording: the "
                          f"action recorded as #{k} now sits at #{moved_to}", action_id)
        if moved_to is not None:
            return _break(k, "reordered", f"actions were reordered: #{k} holds another "
                          f"action, and the one recorded as #{k} now sits at #{moved_to}",
                          action_id)
        if rows < self.count:
            return _break(k, "deleted", f"an action at or before #{k} was deleted and the "
                          f"ones after it renumbered (the run counts {self.count}, the table "
                          f"holds {rows})", action_id)
        if rows > self.count:
            return _break(k, "inserted", f"action #{k} was inserted after recording (the run "
                          f"counts {self.count}, the table holds {rows})", action_id)
        return _break(k, "edited", f"action #{k} was edited after recording: it no longer "
                      "hashes to the chain hash recorded with it", action_id)

    def end(self) -> Row | None:
        """All rows read: what the run's count and head say of the end of the chain."""
        last = self.expected - 1
        if last == 0 and self.count:
            return _break(1, "deleted", f"all {self.count} of the run's actions are missing: "
                          "deleted after recording")
        if last < self.count:
            missing = f"#{last + 1}" if last + 1 == self.count else f"#{last + 1}–#{self.count}"
            return _break(last + 1, "deleted", f"action {missing} is missing: the run counts "
                          f"{self.count}, the table stops at #{last}")
        if self.start is None:
            if self.head is not None:
                return _break(last, "head", "the run has a chain head but no chain start: "
                              "its ledger columns were changed")
            return None
        if self.head is None:
            return _break(last, "head", "the run's chain head was removed")
        if self.prev != self.head:
            if self.head_at is not None:
                return _break(self.head_at + 1, "inserted", f"actions after #{self.head_at} "
                              "were inserted after recording: the run's head is "
                              f"#{self.head_at}'s hash")
            return _break(last + 1, "deleted", f"the run's head is not the hash of its last "
                          f"action #{last}: actions after it were deleted (or the head was "
                          "changed)")
        return None


def verify(run_id: str, count: int, head: str | None, start: int | None,
           rows: Iterable[Mapping[str, Any]], *, resume: tuple[int, str | None] | None = None,
           limit: int | None = None, chained_since: float | None = None,
           created: float | None = None) -> Row:
    """Check a run's chain: ``count``, ``head`` and ``start`` are the run's (action count,
    chain head, chain start), ``rows`` its actions in seq order (after ``resume[0]`` when
    resuming from a seq already found sound, whose chain hash is ``resume[1]``: None before
    the chain's start).

    Returns ``{"status", "actions", "checked", "unchained", "chained_from", "head",
    "through", "verified_through", "last_hash", "read", "break", "message"}``: ``status``
    is ``verified`` (or ``unchained`` for a run recorded wholly before the ledger), ``broken``
    with ``break`` naming the first action that fails (``seq``, ``kind`` — edited, deleted,
    inserted, reordered or head — ``action_id``, ``message``), or ``partial`` when ``limit``
    rows were read before the end. ``through`` is the last seq the walk found sound,
    ``verified_through`` the same when it is chained, and ``last_hash`` its chain hash: a
    later walk may resume from ``(through, last_hash)``. ``read`` counts the rows this walk
    read. ``chained_since``: when the database began chaining (its ledger migration); an
    unchained action recorded after it had its chain removed. ``created``: when the run was
    created (the master's clock): an unchained action of a run created after the ledger
    existed, or one that says it was recorded before its run was created or a day before it
    started, had its chain removed and its recorded_at changed. An unchained action that
    passes is still not verified: it *claims* to predate the ledger, which nothing proves."""
    walk = _Walk(run_id, count, head, start, resume, chained_since, created)
    found: Row | None = None
    it = iter(rows)
    for a in it:
        if a["seq"] > count:
            # More rows than the run counts: the last ones were added behind its back, or
            # the run's count was lowered (the rows past it then still chain to its head).
            found = _count_lowered(walk, a, it) or walk.end() or _break(
                a["seq"], "inserted", f"action #{a['seq']} was inserted after recording: the "
                f"run counts {count}", a["id"])
            break
        found = walk.step(a)
        if found is not None:
            if not found["kind"]:
                found = walk.misplaced(found, it)
            break
        if limit is not None and walk.read >= limit and walk.expected <= count:
            return _report(walk, None, partial=True)
    else:
        found = walk.end()
    return _report(walk, found)


def _count_lowered(walk: _Walk, first: Mapping[str, Any],
                   rest: Iterator[Mapping[str, Any]]) -> Row | None:
    """The break when the rows past the run's count, ``first`` and ``rest``, still chain on
    to the run's head: nothing was added, the run's action count was changed. None when
    they do not (then they were added)."""
    prev, seq, expected = walk.prev, walk.expected - 1, walk.expected
    if walk.start is None or prev is None or walk.head is None:
        return None
    for b in itertools.chain((first,), rest):
        if b["seq"] != expected or not b["chain_hash"] or \
                b["chain_hash"] != link(prev, b["seq"], content(b)):
            return None
        prev, seq, expected = b["chain_hash"], b["seq"], b["seq"] + 1
    if prev != walk.head:
        return None
    return _break(walk.count + 1, "head", f"the run counts {walk.count} actions but holds "
                  f"{seq}, chained up to its head: the run's action count was changed after "
                  "recording")


def _claimed(walk: _Walk) -> str:
    if walk.claimed is None:
        return ""
    first, last = walk.claimed
    return f" (recorded_at {when(first)}" + ("" if last == first else f" to {when(last)}") + ")"


def _report(walk: _Walk, found: Row | None, partial: bool = False) -> Row:
    through = (found["seq"] - 1 if found else walk.expected - 1)
    start = walk.start
    chained = start is not None and through >= start
    # Derived rather than counted, so a walk resumed half-way reports the whole run.
    unchained = min(walk.count, start - 1) if start is not None else walk.count
    checked = through - start + 1 if start is not None and chained else 0
    if found is not None:
        status, message = "broken", found["message"]
    elif partial:
        status, message = "partial", f"verified through #{through} of {walk.count}"
    elif start is None and walk.count:
        status = "unchained"
        # The CLI prints it after "not chained — ".
        message = (f"its {walk.count} action{'' if walk.count == 1 else 's'} claim to predate "
                   f"the ledger{_claimed(walk)}; this cannot be verified")
    else:
        status = "verified"
        message = f"{checked} action{'' if checked == 1 else 's'} verified"
        if unchained:
            message += (f" from #{start}; the {unchained} before are not chained: they claim "
                        f"to predate the ledger{_claimed(walk)}, which cannot be verified")
    return {"status": status, "actions": walk.count, "checked": checked,
            "unchained": unchained, "chained_from": start, "head": walk.head,
            "through": through, "verified_through": through if chained else None,
            "last_hash": walk.prev if chained else None, "read": walk.read, "break": found,
            "message": message}
