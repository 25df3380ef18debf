"""The rules of a schedule, pure: when a cron expression ticks in a time zone, which ticks a
late master still fires (catch-up), and what a tick does while the last run still runs
(overlap). Times are epoch seconds and nothing here reads a clock: the caller passes "now",
so tests drive the rules with a fake one.

Cron is cronsim's, which evaluates expressions as Debian's cron does:

* five fields (minute hour day-of-month month day-of-week), or six with seconds first
  (``*/10 * * * * *``: every ten seconds); the nicknames ``@hourly`` ... ``@yearly`` too;
* daylight saving time, for an expression at a specific time of day (its minute and hour
  fields do not start with ``*``): a tick in the hour a spring-forward skips fires once, right
  after the jump (``30 2 * * *`` in Europe/Paris on the last Sunday of March fires at 03:00
  CEST), and a tick in the hour a fall-back repeats fires once, the first time (02:30 CEST,
  not again at 02:30 CET). An expression that runs every so many minutes runs on real time
  instead: the skipped hour has no ticks, and the repeated hour is two hours of ticks.
  Six-field expressions always run on real time (cronsim keeps Debian's quirk to five).
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import math
import zoneinfo
from dataclasses import dataclass

from cronsim import CronSim, CronSimError

from titan.errors import ValidationFailed
from titan.formats import run_id_problem

CATCHUP = ("skip", "all", "latest")
OVERLAP = ("allow", "skip", "queue")
#: A tick found due less than this late still fires under ``catchup="skip"``: a master
#: restart or a failover takes seconds, and the tick it spanned is late, not missed (Quartz
#: draws the same line, its misfire threshold, at the same 60 s).
MISFIRE_GRACE = 60.0
#: ``catchup="all"`` fires at most this many of the latest missed ticks: an every-second
#: schedule whose master was down for a day must not start 86,400 runs at once.
MAX_CATCHUP = 100
MAX_EXPRESSION = 200
_NICKNAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
              "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
              "@hourly": "0 * * * *"}
# cronsim gives up past 50 years without a match; where a wall time repeats (fall-back) it
# may also hand back ticks before the start, which are skipped: at most an hour of them.
_SCAN = 3700


@functools.cache
def _zones() -> frozenset[str]:
    # Read once: it walks the time zone database on disk.
    return frozenset(zoneinfo.available_timezones())


#: Files of the time zone database that name no zone of their own: ``localtime`` is whatever
#: the machine is set to (two masters could read one schedule two ways), ``Factory`` is "no
#: zone set", ``posixrules`` a leftover of the POSIX TZ rules.
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


def zone_for_new_rule(name: object) -> dt.tzinfo:
    """:func:`zone`, refusing the database's files that are not IANA zones (a schedule
    stored with one before they were refused still loads, through :func:`zone`)."""
    if isinstance(name, str) and name in _NOT_ZONES:
        raise ValidationFailed(
            f"{name!r} is not an IANA time zone (it means whatever the machine is set to, or "
            "none): name the zone, such as 'Europe/Paris' or 'UTC'",
            details={"field": "timezone"})
    return zone(name)


def zone(name: object) -> dt.tzinfo:
    """The time zone an IANA name (``Europe/Paris``, ``UTC``) names; ValidationFailed else."""
    if name == "UTC":
        return dt.UTC  # even where the system has no time zone database
    if not isinstance(name, str):
        raise ValidationFailed(f"timezone must be an IANA name such as 'Europe/Paris' or "
                               f"'UTC', got {str(name)[:40]}", details={"field": "timezone"})
    if name not in _zones():
        meant = _spelled(name)
        raise ValidationFailed(
            f"unknown time zone {name[:100]!r}: "
            + ("use an IANA name such as 'Europe/Paris' or 'UTC'" if meant is None else
               f"did you mean {meant!r}? (time zone names are case-sensitive)"
               if meant.lower() == name.lower() else f"did you mean {meant!r}?"),
            details={"field": "timezone", **({"suggestion": meant} if meant else {})})
    return zoneinfo.ZoneInfo(name)


def _spelled(name: str) -> str | None:
    """The zone ``name`` means when it differs only in case (``utc``, ``europe/paris``), or
    the one closest to it; None when nothing is near. Said, not taken: the name a schedule
    stores is the one every master reads back, and the database's own spelling is that."""
    if name.upper() == "UTC":
        return "UTC"
    by_case = [z for z in _zones() if z.lower() == name.lower()]
    if len(by_case) == 1:
        return by_case[0]
    close = difflib.get_close_matches(name, sorted(_zones()), n=1, cutoff=0.8)
    return close[0] if close else None


def _never_in_those_months(fields: str) -> bool:
    """cronsim refuses a day no month of the expression has (``0 0 30 2 *``) as a "Bad
    day-of-month", as if 30 were no day: it is one, in other months. Such an expression
    parses with any month and never matches, which is what is said of it."""
    parts = fields.split()
    if len(parts) not in (5, 6) or parts[-2] == "*":
        return False
    try:
        CronSim(" ".join([*parts[:-2], "*", parts[-1]]), dt.datetime.now(dt.UTC))
    except CronSimError:
        return False
    return True


def choice(value: object, field: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``; ValidationFailed naming ``field`` else."""
    if value not in allowed:
        raise ValidationFailed(f"{field} must be one of {', '.join(allowed)}, got "
                               f"{str(value)[:40]!r}", details={"field": field})
    return str(value)


@dataclass(frozen=True)
class CronRule:
    """A cron expression in a time zone."""

    expr: str  # as given (a nickname stays one)
    timezone: str
    tz: dt.tzinfo

    @classmethod
    def parse(cls, expr: object, timezone: object = "UTC") -> CronRule:
        """Check an expression and a zone (ValidationFailed naming the field)."""
        tz = zone(timezone)
        if not isinstance(expr, str) or not expr.strip():
            raise ValidationFailed(f"cron must be a cron expression such as '0 6 * * MON-FRI' "
                                   f"or '@daily', got {str(expr)[:40]!r}",
                                   details={"field": "cron"})
        if len(expr) > MAX_EXPRESSION:
            raise ValidationFailed(f"cron expressions are at most {MAX_EXPRESSION} characters",
                                   details={"field": "cron"})
        rule = cls(" ".join(expr.split()), str(timezone), tz)
        try:
            CronSim(rule.fields, dt.datetime.now(tz))
        except CronSimError as exc:
            if _never_in_those_months(rule.fields):
                raise ValidationFailed(
                    f"cron expression {rule.expr!r} never fires: that day of the month never "
                    f"falls in its month(s)", details={"field": "cron"}) from None
            raise ValidationFailed(f"invalid cron expression {rule.expr!r}: {exc}",
                                   details={"field": "cron"}) from None
        if rule.next_after(dt.datetime.now(tz).timestamp()) is None:
            raise ValidationFailed(f"cron expression {rule.expr!r} never fires",
                                   details={"field": "cron"})
        return rule

    @property
    def fields(self) -> str:
        return _NICKNAMES.get(self.expr.lower(), self.expr)

    def describe(self) -> str:
        """The expression in words ("Every 5 minutes"), or the expression itself."""
        try:
            return str(CronSim(self.fields, dt.datetime.now(self.tz)).explain())
        except Exception:  # explain() is best effort; the expression parsed already
            return self.expr

    def next_after(self, after: float) -> float | None:
        """The first tick strictly after ``after``; None if it never ticks again."""
        it = CronSim(self.fields, dt.datetime.fromtimestamp(after, self.tz))
        for _ in range(_SCAN):
            try:
                tick = next(it).timestamp()
            except StopIteration:
                return None
            # Starting inside a repeated hour's second pass, cronsim's wall-clock walk hands
            # back that hour's first pass, which is already behind us.
            if tick > after:
                return tick
        return None

    def upcoming(self, after: float, n: int) -> list[float]:
        """The next ``n`` ticks strictly after ``after`` (fewer if it stops ticking)."""
        out: list[float] = []
        tick: float | None = after
        while len(out) < n and tick is not None:
            tick = self.next_after(tick)
            if tick is not None:
                out.append(tick)
        return out

    def due(self, first: float, now: float, keep: int) -> list[float]:
        """The ticks in ``[first, now]``, oldest first: the latest ``keep`` of them."""
        if first > now:
            return []
        # Walk back from now to where the latest `keep` ticks begin, so the work is bounded
        # however long the master was away; then list them forward, the direction in which
        # cronsim defines its DST handling (the walk back only finds where to start).
        start = first
        back = CronSim(self.fields, dt.datetime.fromtimestamp(math.floor(now) + 1, self.tz),
                       reverse=True)
        found: list[float] = []
        for _ in range(keep):
            try:
                tick = next(back).timestamp()
            except StopIteration:
                break
            if tick < first:
                break
            found.append(tick)
        if len(found) == keep:
            start = max(first, found[-1])
        ticks: list[float] = []
        tick_or_none = self.next_after(start - 0.5)
        while tick_or_none is not None and tick_or_none <= now and len(ticks) < 2 * keep + 2:
            ticks.append(tick_or_none)
            tick_or_none = self.next_after(tick_or_none)
        return ticks[-keep:]


@dataclass(frozen=True)
class Plan:
    """What to do when a schedule's timer goes off."""

    fire: tuple[float, ...]  # the ticks to fire now, oldest first
    next_at: float | None  # the first tick after now: where the timer goes next
    dropped: bool  # due ticks were left unfired by the catch-up policy


def missed(tick: float, now: float) -> bool:
    """Whether ``tick``, dealt with at ``now``, fell while no master ran on time: it is
    :data:`MISFIRE_GRACE` late or more (less is a restart's delay, not an outage)."""
    return now - tick >= MISFIRE_GRACE


def plan(rule: CronRule, first: float, now: float, catchup: str) -> Plan:
    """The ticks due since ``first`` (the first tick not yet dealt with) that fire at ``now``.

    On time (one tick due, a moment late) every policy fires it. After an outage: ``skip``
    fires none, unless the latest is less than :data:`MISFIRE_GRACE` late (a restart, not an
    outage); ``latest`` fires the latest; ``all`` fires each, the latest :data:`MAX_CATCHUP`.
    """
    if first > now:  # woken early (the loop's clock is not the wall clock)
        return Plan((), first, False)
    keep = MAX_CATCHUP if catchup == "all" else 1
    due = rule.due(first, now, keep)
    fire = due
    if catchup == "skip" and due and missed(due[-1], now):
        fire = []
    dropped = bool(due) and (len(fire) < len(due) or fire[0] > first)
    return Plan(tuple(fire), rule.next_after(now), dropped)


#: What a schedule's ``agent_run_id`` template holds where each fire's tick goes.
TICK_FIELD = "{tick}"


def tick_stamp(tick: float) -> str:
    """A tick as an agent run id holds it: ISO 8601 in UTC, basic format
    (``20240501T100500Z``), nothing a URL, a shell or the run-id rule minds."""
    return dt.datetime.fromtimestamp(tick, dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def run_id_for(template: str, tick: float) -> str:
    """The agent run id of the fire of ``tick``: the template with its ``{tick}`` filled."""
    return template.replace(TICK_FIELD, tick_stamp(tick))


def run_id_template(value: object) -> str | None:
    """A schedule's ``agent_run_id`` template (None: its runs get none), checked: it holds
    ``{tick}`` (one id for every fire would make each run a stage of the same agent run),
    no other brace, and what it makes is an agent run id (:func:`titan.formats.run_id_problem`)."""
    if value is None:
        return None
    if not isinstance(value, str) or TICK_FIELD not in value:
        raise ValidationFailed(
            f"agent_run_id must be a template holding {TICK_FIELD} (each fire's run gets its "
            f"own id, such as 'nightly-{TICK_FIELD}'), got {str(value)[:100]!r}",
            details={"field": "agent_run_id"})
    rest = value.replace(TICK_FIELD, "")
    made = run_id_for(value, 0.0)
    problem = ("may hold no brace but those of {tick}" if "{" in rest or "}" in rest
               else run_id_problem(made))
    if problem is not None:
        raise ValidationFailed(f"agent_run_id {value[:100]!r}: the ids it makes ({made[:100]!r}) "
                               f"{problem}", details={"field": "agent_run_id"})
    return value


#: What a tick does (:func:`overlap_action`).
SUBMIT, SKIP, QUEUE = "submit", "skip", "queue"


def overlap_action(policy: str, running: bool, queued: bool) -> str:
    """What a tick does when the schedule's last run ``running`` has not finished, and
    ``queued`` says a tick already waits for it: ``allow`` starts another run; ``skip``
    records the tick as skipped; ``queue`` starts it once the running one ends — one tick
    waits at most, and a tick finding one waiting is skipped, so a schedule slower than its
    interval never builds an ever-growing backlog."""
    if not running or policy == "allow":
        return SUBMIT
    if policy == "queue" and not queued:
        return QUEUE
    return SKIP
