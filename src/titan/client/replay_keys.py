"""In a replay, the store keys and artifact keys that name the original run name the replay's.

A replay re-runs an agent's code under a run id of its own (``<run>-replay-<hex>``, the job
variable ``TITAN_AGENT_RUN_ID`` of its stages). Code that builds TitanStore keys from a run id
(seed 001's signals, ``research:<run>:planner:done``) then disagreed with itself: a driver given
the run id on its command line waited on the *original* run's keys, found them set, and went
on at once with the original's values while its own stages were cancelled; a driver that drew
a fresh id waited on keys its stages, which named theirs after ``TITAN_AGENT_RUN_ID``, never
wrote, until its timeout. And a report of 100 % or 0 % match said nothing of why.

So in a replay's processes (``TITAN_REPLAY`` set) every key the store and artifact calls send
is renamed, as a whole id only (between characters that cannot be part of one), in one pass:

* the original run's id becomes the replay's (a driver given it, and its stages given it as an
  argument, then share keys no one else has);
* the replayed driver's own command line names the replay's id where the original's named the
  original run's (:func:`driver_args`): it is the replay's run it drives;
* when the replayed driver made up an id of its own and submitted its stages under it (the
  replay files it as an alias of its run), the replay's id becomes that one: stages that name
  their keys after ``TITAN_AGENT_RUN_ID`` meet a driver that names them after the id it made,
  whichever it wrote first.
"""

from __future__ import annotations

import json
import os
import re

_ID_CHAR = "A-Za-z0-9_.-"
#: Ids this process submitted stages under that the replay filed under its run (aliases).
_submitted: set[str] = set()
_cache: dict[tuple[str, str, frozenset[str]],
             tuple[re.Pattern[str], dict[str, str]] | None] = {}


def submitted_under(alias: str) -> None:
    """A replayed driver submitted stages under ``alias``, filed under the replay's run."""
    _submitted.add(alias)


def rename(key: str) -> str:
    """``key`` as this process's replay names it (as it is outside a replay)."""
    raw = os.environ.get("TITAN_REPLAY")
    own = os.environ.get("TITAN_AGENT_RUN_ID")
    if not raw or not own:
        return key
    found = _pattern(raw, own)
    if found is None:
        return key
    pattern, targets = found
    return pattern.sub(lambda m: targets[m.group(0)], key)


def driver_args(args: list[str], original: str, own: str) -> list[str]:
    """A replayed driver's recorded command line with the original run's id, where an
    argument names it as a whole id, made the replay's own: a driver given its run id
    (``--run-id R``) sees the replay's, and what it names after it — a report path, a header,
    its stages' arguments — is the replay's, not the original run's (a fork wrote its report
    over the original's file and recorded that path as its own)."""
    if not original or original == own:
        return list(args)
    pattern = _whole_ids({original: own})
    return [pattern.sub(own, a) for a in args]


def _whole_ids(targets: dict[str, str]) -> re.Pattern[str]:
    """The ids of ``targets`` where they stand whole (between characters no id holds)."""
    return re.compile(f"(?<![{_ID_CHAR}])(?:"
                      f"{'|'.join(map(re.escape, sorted(targets, key=len, reverse=True)))})"
                      f"(?![{_ID_CHAR}])")


def _pattern(raw: str, own: str) -> tuple[re.Pattern[str], dict[str, str]] | None:
    cache_key = (raw, own, frozenset(_submitted))
    if cache_key in _cache:
        return _cache[cache_key]
    try:
        settings = json.loads(raw)
    except ValueError:
        settings = {}
    if not isinstance(settings, dict):
        settings = {}
    original = settings.get("of")
    targets: dict[str, str] = {}
    if isinstance(original, str) and original and original != own:
        targets[original] = own
    made_up = {a for a in [*(settings.get("aliases") or []), *_submitted]
               if isinstance(a, str) and a and a not in (original, own)}
    if len(made_up) == 1:  # several would leave no one name for the replay's run
        targets[own] = made_up.pop()
    found = (_whole_ids(targets), targets) if targets else None
    if len(_cache) > 64:
        _cache.clear()
    _cache[cache_key] = found
    return found
