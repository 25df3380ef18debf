"""The data behind the Runs pages: the run registry, one run, one agent.

Each builder reads inside one transaction (``engine.read``) through the same storage queries
and JSON shapes as ``/api/v1/runs``, so a page shows exactly what the API answers for the
same filters. A run's actions are not part of its page: the telemetry list fetches them a
page at a time from ``GET /api/v1/runs/{id}/actions`` as the viewport needs them (a run may
hold tens of thousands).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from titan.dashboard.queries import paging
from titan.errors import NotFound, ValidationFailed
from titan.master.replays.report import replays_view
from titan.master.runs.ingest import OUTCOMES
from titan.master.runs.lookup import run_or_404
from titan.master.runs.views import (
    INTERVENTION_ALERT,
    LIST_PREVIEW,
    agent_view,
    canonical_sort,
    intercept_reasons,
    one_agent,
    run_detail,
    run_query,
    runs_view,
)
from titan.storage.base import Row, RunQuery, Transaction
from titan.windows import canonical_window

Data = dict[str, Any]
WINDOWS = ("24h", "7d", "30d", "all")
EXPORT_FORMATS = ("csv", "json", "jsonl")
INTERCEPTS_SHOWN = 20
AGENT_IDS_LISTED = 500
ACTION_PAGE = 200  # actions per request of the telemetry list
AGENT_RECENT_RUNS = 20
REPLAYS_LISTED = 20  # a run's replays its Simulation tab lists, newest first
AGENT_SERIES = 1000  # the runs an agent's totals count (the API's largest page)
CHART_POINTS = 100  # the latest runs drawn in an agent's chart


# -- the run registry --------------------------------------------------------------------------
def registry_filters(params: Mapping[str, Any]) -> Data:
    """The registry's filters from a query string, normalised: ``status`` may repeat (the
    form's checkboxes) or be comma-separated (the API's form); both end up comma-joined."""
    getlist = getattr(params, "getlist", None)
    raw = getlist("status") if getlist else [params.get("status") or ""]
    statuses = [s.strip() for v in raw for s in str(v).split(",") if s.strip()]
    min_cost = (params.get("min_cost") or "").strip()
    if min_cost:
        try:
            usd = float(min_cost)
        except ValueError:
            usd = -1.0
        if not 0 <= usd <= 1e9:  # NaN, infinities and negatives too: they matched nothing
            raise ValidationFailed(f"min_cost must be a number of USD from 0 to 1e9, got "
                                   f"{min_cost[:40]!r}", details={"field": "min_cost"})
    return {"status": ",".join(dict.fromkeys(statuses)), "min_cost": min_cost,
            # In Titan's spelling, whatever the address said (seed 004's "24 hours",
            # "recency"): the form's selects and the export links show what is applied.
            "window": canonical_window(params.get("window")),
            "agent": one_agent(params.get("agent"), params.get("agent_id")) or "",
            "q": (params.get("q") or "").strip(), "sort": canonical_sort(params.get("sort")),
            # "all" is what the "include archived" box sends; the API's true works too.
            "archived": (params.get("archived") or "false").strip().lower()}


def registry_query(f: Data) -> RunQuery:
    """The storage query for the filters: the API's own parser, so both agree."""
    return run_query(f["status"] or None, float(f["min_cost"]) if f["min_cost"] else None,
                     f["window"], f["agent"] or None, f["q"] or None, sort=f["sort"],
                     archived=f["archived"])


def export_links(f: Data) -> list[Data]:
    """``GET /api/v1/runs/export`` with the page's filters, one link per format, with every
    action as seed 004 says (the page's script sets ``actions=false`` when "include every
    action", ticked at first, is unticked)."""
    # In the page's order: the file lists what the page lists, as the page lists it.
    filters = {k: v for k, v in f.items()
               if v not in ("", None, "all") and k != "archived"
               and (k, v) != ("sort", "recent")}
    if f["archived"] != "false":  # archived runs are exported when the page shows them
        filters["archived"] = f["archived"]
    return [{"format": fmt, "href": "/api/v1/runs/export?"
             + urlencode({"format": fmt, "actions": "true", **filters})}
            for fmt in EXPORT_FORMATS]


def registry(tx: Transaction, f: Data, query: RunQuery, limit: int, offset: int) -> Data:
    rows, total = tx.list_runs(query, limit, offset)
    critical = runs_view(tx, tx.intercepts(query.since, INTERVENTION_ALERT, INTERCEPTS_SHOWN))
    # How many runs these filters would also match among the archived ones, so a run that
    # aged out of the list is one click away ("Can't find my run").
    hidden = tx.list_runs(replace(query, archived=True), 1, 0)[1] if query.archived is False \
        else 0
    shown = {k: v for k, v in f.items() if v not in ("", None) and k != "archived"}
    return {
        "archived_total": hidden, "archived_href": "/runs?" + urlencode({**shown,
                                                                       "archived": "all"}),
        "runs": runs_view(tx, rows), **paging(total, limit, offset),
        "filters": f, "statuses": [s for s in f["status"].split(",") if s],
        "intercepts": [dict(r, reasons=intercept_reasons(r)) for r in critical],
        "intervention_alert": INTERVENTION_ALERT,  # runs.js: a running run crossing it joins
        "intercepts_total": len(critical) if len(critical) < INTERCEPTS_SHOWN
        else tx.count_intercepts(query.since, INTERVENTION_ALERT),
        "agent_ids": tx.agent_ids("", AGENT_IDS_LISTED), "export": export_links(f),
    }


# -- one run -----------------------------------------------------------------------------------
def run_page(tx: Transaction, run_id: str) -> Data:
    run = run_or_404(tx, run_id)
    detail = run_detail(tx, run)
    return {"run": detail, "reasons": intercept_reasons(detail), "outcomes": list(OUTCOMES),
            "action_page": ACTION_PAGE, "preview": LIST_PREVIEW,
            "replays": replays(tx, run_id, REPLAYS_LISTED)}


def replays(tx: Transaction, run_id: str, limit: int) -> list[Data]:
    """The replays of a run, newest first: ``GET /api/v1/runs/{id}/replays``'s list, through
    the same view. A storage without ``replays_of`` lists none."""
    read = getattr(tx, "replays_of", None)
    return replays_view(read(run_id, limit)) if read is not None else []


# -- one agent ---------------------------------------------------------------------------------
def agent_page(tx: Transaction, agent_id: str) -> Data:
    series = tx.agent_runs_series(agent_id, AGENT_SERIES)
    agent = tx.get_agent(agent_id)
    if not series and agent is None:
        raise NotFound(f"no agent {agent_id!r} (no run names it)", details={"agent_id": agent_id})
    view = agent_view(agent_id, agent, series)
    rows, _ = tx.list_runs(RunQuery(agent=agent_id), AGENT_RECENT_RUNS, 0)
    # Counted as its totals are (agent_runs_series): replays left out, archived runs kept.
    _, total = tx.list_runs(RunQuery(agent=agent_id, replays=False, archived=None), 1, 0)
    view["series"] = view["series"][-CHART_POINTS:]
    return {"agent": view, "total_runs": total, "recent": runs_view(tx, rows),
            "chart": chart(view["series"])}


def chart(series: list[Row], width: int = 1000, height: int = 260) -> Data:
    """Geometry of the agent's chart, drawn by the template as inline SVG: one bar per run
    for its cost (left axis) and a line through the runs' success rates (right axis, 0-100 %).
    Computed here so the page needs no charting code in the browser."""
    left, right, top, bottom = 56, 48, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(series)
    top_cost = max((p["cost_usd"] for p in series), default=0.0) or 1.0
    band = plot_w / n if n else plot_w
    bars, dots = [], []
    for i, p in enumerate(series):
        x = left + band * (i + 0.5)
        h = plot_h * p["cost_usd"] / top_cost
        w = min(max(band * 0.7, 1.0), 48.0)
        bars.append({"x": round(x - w / 2, 2), "y": round(top + plot_h - h, 2),
                     "w": round(w, 2), "h": round(h, 2), **p})
        if p["success_rate"] is not None:
            dots.append({"x": round(x, 2), "y": round(top + plot_h * (1 - p["success_rate"]), 2),
                         **p})
    cost_ticks = [{"y": round(top + plot_h * (1 - k / 4), 2), "value": top_cost * k / 4}
                  for k in range(5)]
    rate_ticks = [{"y": round(top + plot_h * (1 - k / 4), 2), "value": k / 4} for k in range(5)]
    return {"width": width, "height": height, "left": left, "right": width - right,
            "top": top, "bottom": top + plot_h, "bars": bars, "dots": dots,
            "line": " ".join(f"{d['x']},{d['y']}" for d in dots),
            "cost_ticks": cost_ticks, "rate_ticks": rate_ticks,
            "first": series[0]["started_at"] if series else None,
            "last": series[-1]["started_at"] if series else None}
