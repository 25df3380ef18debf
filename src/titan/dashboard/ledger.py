"""The Activity Ledger (seed 004): every recorded action across runs, newest first, filtered
(``/ledger``, and ``/ledger.json``), each row saying whether its run's chain holds through it.

Pages are keyset pages (``before``/``after`` name the row a page starts from), so the
thousandth page costs what the first does; the query is the storage's ``ledger_actions``
(:mod:`titan.storage.sql_ledger` says which index serves which filter). A filter on the
action's own columns reads at most :data:`SCAN` index entries a page and says how far back it
searched. The chain column comes from :class:`titan.master.runs.ledger.LedgerChecks`: the
runs of the rows shown, each verdict kept per run head and walked again only when needed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request

from titan.dashboard.render import Data, env, int_param, twin
from titan.errors import ValidationFailed
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.runs.ingest import MAX_USD, OUTCOMES
from titan.master.runs.ledger import LedgerChecks, row_status, verdict_view
from titan.master.runs.views import csv_choices
from titan.storage.base import LedgerQuery, Row, Transaction
from titan.windows import canonical_window, check_window

router = APIRouter()
PAGE_SIZE = 50
SCAN = 100_000  # index entries one page of an action-column filter reads at most
AGENT_IDS_LISTED = 500
_TEXT = ("agent", "run", "actor", "name")


def ledger_href(run_id: str) -> str:
    """The Activity Ledger filtered to one run (the run page's "View in Activity Ledger")."""
    return "/ledger?" + urlencode({"run": run_id})


env.globals.update(ledger_href=ledger_href)


@twin(router, ["/ledger"], "ledger.html", "ledger")
async def ledger_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    f = filters(request.query_params)
    q = query(f)
    limit = int_param(request, "limit", PAGE_SIZE, 1, 500)
    return await c.engine.read(lambda tx: ledger(tx, c.runs.ledger, f, q, limit))


def filters(params: Mapping[str, Any]) -> Data:
    """The page's filters from a query string, normalised (``outcome`` may repeat, as the
    form's checkboxes send it, or be comma-separated)."""
    getlist = getattr(params, "getlist", None)
    raw = getlist("outcome") if getlist else [params.get("outcome") or ""]
    # In any case, as the Runs page takes its statuses and the API its outcomes: the API's
    # own parser (outcome=ERROR was refused here).
    outcomes = csv_choices([str(v) for v in raw], OUTCOMES, "outcome")
    out: Data = {k: (params.get(k) or "").strip() for k in (*_TEXT, "from", "to", "min_cost",
                                                          "before", "after")}
    out.update(outcome=",".join(dict.fromkeys(outcomes)), window=canonical_window(params.get("window")))
    return out


def query(f: Data) -> LedgerQuery:
    """The storage query for the filters (a 400 naming the field for a bad value)."""
    since = check_window(f["window"])
    start, end = _time(f["from"], "from"), _time(f["to"], "to")
    if start is not None and end is not None and start > end:
        # Nothing can lie in between: the two swapped read "No action matches these
        # filters", which sent the user hunting for a run that was there.
        raise ValidationFailed(f"to ({f['to'][:40]}) is before from ({f['from'][:40]}): "
                               "swap them", details={"field": "to"})
    if start is not None:
        since = start if since is None else max(since, start)
    min_cost = None
    if f["min_cost"]:
        try:
            min_cost = float(f["min_cost"])
        except ValueError:
            min_cost = -1.0
        if not 0 <= min_cost <= MAX_USD:
            # The Runs page's words (run_queries.py); {MAX_USD:g} wrote 1e+09.
            raise ValidationFailed(f"min_cost must be a number of USD from 0 to 1e9, got "
                                   f"{f['min_cost'][:40]!r}", details={"field": "min_cost"})
    return LedgerQuery(**{k: f[k] or None for k in _TEXT},
                       outcomes=tuple(o for o in f["outcome"].split(",") if o),
                       since=since, until=end, min_cost=min_cost,
                       before=_cursor(f["before"], "before"), after=_cursor(f["after"], "after"))


def _time(text: str, field: str) -> float | None:
    """A time the form sends (``2025-01-31T09:30``, UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{field} must be a date and time like 2025-01-31T09:30, got "
                               f"{text[:40]!r}", details={"field": field}) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def cursor(a: Row) -> str:
    """The key of a row as pager links carry it: ``started_at,seq,run_id``."""
    return f"{a['started_at']!r},{a['seq']},{a['run_id']}"


def _cursor(text: str, field: str) -> tuple[float, str, int] | None:
    if not text:
        return None
    started, _, rest = text.partition(",")
    seq, _, run_id = rest.partition(",")
    try:
        key = float(started), run_id, int(seq)
        if not (math.isfinite(key[0]) and run_id and 0 <= key[2] < 2**63):
            raise ValueError(text)
        return key
    except ValueError:
        raise ValidationFailed(f"{field} must be a row's key (started_at,seq,run_id) as the "
                               f"page's links carry it, got {text[:60]!r}",
                               details={"field": field}) from None


def ledger(tx: Transaction, checks: LedgerChecks, f: Data, q: LedgerQuery, limit: int) -> Data:
    page = tx.ledger_actions(q, limit + 1, SCAN)  # one more: is there another page?
    rows, stopped = page["actions"], page["searched_to"]
    newer = q.after is not None
    more = len(rows) > limit
    if more:  # the extra row is the one farthest from where the page starts
        rows = rows[1:] if newer else rows[:limit]
    runs = [run for run in (tx.get_run(i) for i in dict.fromkeys(a["run_id"] for a in rows))
            if run is not None]
    verdicts = checks.verdicts(tx, runs)
    actions = []
    for a in rows:
        verdict = verdicts.get(a["run_id"])
        actions.append(dict(a, duration_ms=round(a["duration_ns"] / 1e6, 3),
                            chain=row_status(verdict, a["seq"]),
                            chain_note=verdict["message"] if verdict else "not checked yet",
                            cursor=cursor(a)))
    kept = {k: v for k, v in f.items() if v not in ("", "all") and k not in ("before", "after")}
    # Pager links: a row's key to go on from, or where a bounded search stopped.
    searched = None if stopped is None else \
        cursor({"started_at": stopped[0], "run_id": stopped[1], "seq": stopped[2]})
    if newer:
        older = _link(kept, limit, "before", actions[-1]["cursor"] if actions else None)
        later = _link(kept, limit, "after", actions[0]["cursor"] if more and actions else None) \
            or _link(kept, limit, "after", searched, searched=True)
    else:
        older = _link(kept, limit, "before", actions[-1]["cursor"] if more else None) \
            or _link(kept, limit, "before", searched, searched=True)
        later = _link(kept, limit, "after", actions[0]["cursor"]
                      if q.before is not None and actions else None)
    return {
        "filters": f, "outcomes": list(OUTCOMES),
        "statuses": [o for o in f["outcome"].split(",") if o],
        "actions": actions, "limit": limit, "scan": SCAN,
        "searched_to": stopped[0] if stopped is not None else None,
        "older": older, "newer": later,
        "newest_href": _href(kept, limit) if q.before or q.after else None,
        "runs": {run_id: verdict_view(v) if v else None for run_id, v in verdicts.items()},
        "run_href": "/runs/" + quote(f["run"], safe="") if f["run"] else None,
        "agent_ids": tx.agent_ids("", AGENT_IDS_LISTED),
    }


def _link(kept: Data, limit: int, side: str, key: str | None,
          searched: bool = False) -> Data | None:
    """A pager link with the page's filters, or None without a key to go on from."""
    if key is None:
        return None
    return {"href": _href(dict(kept, **{side: key}), limit), "searched": searched}


def _href(params: Data, limit: int) -> str:
    if limit != PAGE_SIZE:
        params = dict(params, limit=limit)
    return "/ledger" + ("?" + urlencode(params) if params else "")
