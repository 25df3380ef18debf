"""The Schedules page (``/schedules``, and ``/schedules.json``): every schedule with its next
ticks (relative, and as wall times in its own zone) and its latest runs with their status,
paused, resumed and run from the page by an operator."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from fastapi import APIRouter, Request

from titan.dashboard.render import Data, twin
from titan.master.auth import tokens as auth
from titan.master.context import Ctx

router = APIRouter()
#: Upcoming ticks shown per schedule.
NEXT_SHOWN = 3


def wall_time(ts: float, timezone: str) -> str:
    """``Thu 06:00 CEST``: when a tick falls, in the zone its expression speaks."""
    try:
        tz: dt.tzinfo = dt.UTC if timezone == "UTC" else zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return dt.datetime.fromtimestamp(ts, tz).strftime("%a %Y-%m-%d %H:%M:%S %Z")


@twin(router, ["/schedules"], "schedules.html", "schedules")
async def schedules_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    schedules = await c.schedules.views()
    for s in schedules:
        s["next_shown"] = [{"at": t, "wall": wall_time(t, s["timezone"])}
                           for t in s["next_fires"][:NEXT_SHOWN]]
    return {"schedules": schedules}
