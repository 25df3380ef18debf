"""The Runs pages: the run registry (``/runs``), one run with its telemetry (``/runs/<id>``)
and one agent over time (``/agents/<agent_id>``), each also served as ``<path>.json``.

``pages.py`` adds ``router.routes`` to its own, before the sign-in routes. The data builders
are in :mod:`titan.dashboard.run_queries`; what the pages' scripts fetch later (pages of
actions, one action in full, the export) is the API's.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request

from titan.dashboard import run_queries
from titan.dashboard.render import Data, env, int_param, twin
from titan.formats import dollars
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.runs.ingest import OUTCOMES
from titan.master.runs.views import csv_choices

router = APIRouter()
PAGE_SIZE = 50


def run_href(run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="")


def agent_href(agent_id: str) -> str:
    # Agent ids are free text ('/', '?', '#' included): the route takes the rest of the path.
    if agent_id in (".", ".."):
        # A path segment of dots is resolved away by the browser, percent-encoded or not
        # (the URL standard reads %2E as a dot there): /agents/.. opened the Cluster page.
        # Such an id travels in the query instead.
        return "/agent?" + urlencode({"id": agent_id})
    return "/agents/" + quote(agent_id, safe="")


def usd(value: float | None) -> str:
    """'$0.0008', '$12.40', '$0.0000059': cents hide what most single runs cost, and four
    decimals what a few calls of a cheap model cost (formats.cost_places; runs.js's
    ``T.usd`` writes the same)."""
    if value is None:
        return "—"
    return f"${value:,.2f}" if value >= 1 else dollars(value)


def run_cost(r: Data) -> str:
    """A run's (or an agent's) cost as the pages show it: with LLM calls of unknown price it
    is a lower bound ('≥ $0.0120'), or 'unknown' when no call was priced — never a paid run
    shown as $0. runs.js's ``T.runCost`` writes the same."""
    cost, unpriced = r.get("cost_usd"), r.get("unpriced_calls") or 0
    if not unpriced:
        return usd(cost)
    return f"≥ {usd(cost)}" if cost else "unknown"


def cost_note(r: Data) -> str:
    """The title that says why a cost is a bound ('' when it is not)."""
    n = r.get("unpriced_calls") or 0
    if not n:
        return ""
    calls = "1 LLM call" if n == 1 else f"{n:,} LLM calls"
    return (f"{calls} on a model with no known price (not counted); register its price with "
            "titan.llm.register_price or TITAN_LLM_PRICES")


def pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%".replace(".0%", "%")


env.globals.update(run_href=run_href, agent_href=agent_href)
env.filters.update(usd=usd, pct=pct, run_cost=run_cost, cost_note=cost_note)


@twin(router, ["/runs"], "runs.html", "runs")
async def runs_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    f = run_queries.registry_filters(request.query_params)
    query = run_queries.registry_query(f)
    limit = int_param(request, "limit", PAGE_SIZE, 1, 500)
    offset = int_param(request, "offset", 0, 0, 2**62)
    return await c.engine.read(lambda tx: run_queries.registry(tx, f, query, limit, offset))


@twin(router, ["/runs/{run_id}"], "run.html", "run")
async def run_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    run_id: str = request.path_params["run_id"]
    # The page's script filters by ?outcome= as the API does: a value the API refuses is
    # refused here too, rather than silently showing every action.
    csv_choices(request.query_params.getlist("outcome"), OUTCOMES, "outcome")
    return await c.engine.read(lambda tx: run_queries.run_page(tx, run_id))


@twin(router, ["/agent"], "agent.html", "agent")
@twin(router, ["/agents/{agent_id:path}"], "agent.html", "agent")
async def agent_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    # /agent?id=..: the address of an agent whose id a path cannot hold (agent_href).
    agent_id: str = request.path_params.get("agent_id") or request.query_params.get("id", "")
    return await c.engine.read(lambda tx: run_queries.agent_page(tx, agent_id))
