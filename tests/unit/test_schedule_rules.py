"""The rules of a schedule with a fake clock: ticks in a time zone across both DST
transitions, catch-up after an outage, overlap — every "now" is passed in."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from titan.errors import ValidationFailed
from titan.master.schedules import rules
from titan.master.schedules.rules import MAX_CATCHUP, MISFIRE_GRACE, CronRule, plan

PARIS = ZoneInfo("Europe/Paris")


def at(*fields: int, fold: int = 0) -> float:
    """A Paris wall time as epoch seconds (``fold=1``: the second pass of a repeated hour)."""
    return dt.datetime(*fields, tzinfo=PARIS, fold=fold).timestamp()  # type: ignore[misc]


def wall(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, PARIS).isoformat()


# -- DST (Europe/Paris: 2024-03-31 02:00 CET -> 03:00 CEST; 2024-10-27 03:00 CEST -> 02:00 CET)

def test_spring_forward_a_tick_in_the_skipped_hour_fires_once_right_after_the_jump() -> None:
    rule = CronRule.parse("30 2 * * *", "Europe/Paris")
    ticks = rule.upcoming(at(2024, 3, 30, 12), 3)
    # 02:30 does not exist that night: cronsim (like Debian's cron) runs it at 03:00 CEST.
    assert [wall(t) for t in ticks] == ["2024-03-31T03:00:00+02:00",
                                         "2024-04-01T02:30:00+02:00",
                                         "2024-04-02T02:30:00+02:00"]
    # The whole night at once, as a master back from an outage sees it: still once.
    assert [wall(t) for t in rule.due(at(2024, 3, 31, 0), at(2024, 3, 31, 5), 10)] == \
        ["2024-03-31T03:00:00+02:00"]


def test_fall_back_a_tick_in_the_repeated_hour_fires_once_the_first_time() -> None:
    rule = CronRule.parse("30 2 * * *", "Europe/Paris")
    ticks = rule.upcoming(at(2024, 10, 26, 12), 2)
    assert [wall(t) for t in ticks] == ["2024-10-27T02:30:00+02:00",
                                         "2024-10-28T02:30:00+01:00"]
    assert [wall(t) for t in rule.due(at(2024, 10, 27, 0), at(2024, 10, 27, 5), 10)] == \
        ["2024-10-27T02:30:00+02:00"]
    # A master starting during the second pass (02:10 CET) does not fire 02:30 again.
    assert wall(rule.next_after(at(2024, 10, 27, 2, 10, fold=1))) == "2024-10-28T02:30:00+01:00"


def test_an_interval_runs_on_real_time_across_both_transitions() -> None:
    every_30 = CronRule.parse("*/30 * * * *", "Europe/Paris")
    assert [wall(t) for t in every_30.upcoming(at(2024, 3, 31, 1, 15), 3)] == [
        "2024-03-31T01:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-03-31T03:30:00+02:00"]
    assert [wall(t) for t in every_30.upcoming(at(2024, 10, 27, 1, 45), 5)] == [
        "2024-10-27T02:00:00+02:00", "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:00:00+01:00", "2024-10-27T02:30:00+01:00", "2024-10-27T03:00:00+01:00"]


def test_seconds_field_nicknames_and_words() -> None:
    every_3s = CronRule.parse("*/3 * * * * *")
    assert every_3s.upcoming(1_000_000.5, 3) == [1_000_002.0, 1_000_005.0, 1_000_008.0]
    daily = CronRule.parse("@daily", "Europe/Paris")
    assert wall(daily.next_after(at(2024, 5, 1, 12))) == "2024-05-02T00:00:00+02:00"
    assert daily.describe() == "At 00:00 every day"
    assert CronRule.parse("  0   9 * *   MON-FRI ").expr == "0 9 * * MON-FRI"


@pytest.mark.parametrize(("cron", "tz", "field"), [
    ("61 * * * *", "UTC", "cron"), ("* * * *", "UTC", "cron"), ("", "UTC", "cron"),
    (None, "UTC", "cron"), ("* * */20 * 1L", "UTC", "cron"),  # never matches: never fires
    ("* * * * *", "Mars/Olympus", "timezone"), ("* * * * *", "../../etc/passwd", "timezone"),
    ("* * * * *", 3, "timezone"),
])
def test_bad_rules_are_refused_naming_the_field(cron: object, tz: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        CronRule.parse(cron, tz)
    assert err.value.details["field"] == field


# -- catch-up: the master was down from 10:00 to 11:02 (a tick every 5 minutes) -------------

EVERY_5 = CronRule.parse("*/5 * * * *", "Europe/Paris")
DOWN, BACK = at(2024, 5, 1, 10, 0), at(2024, 5, 1, 11, 2)


def test_catchup_skip_fires_nothing_missed_and_goes_on_from_now() -> None:
    p = plan(EVERY_5, DOWN, BACK, "skip")
    assert p.fire == () and p.dropped
    assert wall(p.next_at) == "2024-05-01T11:05:00+02:00"


def test_catchup_latest_fires_the_last_missed_tick_only() -> None:
    p = plan(EVERY_5, DOWN, BACK, "latest")
    assert [wall(t) for t in p.fire] == ["2024-05-01T11:00:00+02:00"] and p.dropped


def test_catchup_all_fires_every_missed_tick_in_order() -> None:
    p = plan(EVERY_5, DOWN, BACK, "all")
    assert len(p.fire) == 13 and not p.dropped  # 10:00, 10:05, ... 11:00
    assert p.fire[0] == DOWN and p.fire[-1] == at(2024, 5, 1, 11, 0)
    assert wall(p.next_at) == "2024-05-01T11:05:00+02:00"


def test_catchup_all_is_bounded_however_long_the_outage() -> None:
    every_second = CronRule.parse("* * * * * *")
    p = plan(every_second, 1_000_000.0, 1_000_000.0 + 86_400, "all")  # a day: 86,401 ticks
    assert len(p.fire) == MAX_CATCHUP and p.dropped
    assert p.fire[-1] == 1_000_000.0 + 86_400 and p.next_at == 1_000_000.0 + 86_401


def test_on_time_every_policy_fires_the_tick() -> None:
    for catchup in rules.CATCHUP:
        p = plan(EVERY_5, DOWN, DOWN + 0.003, catchup)
        assert p.fire == (DOWN,) and not p.dropped
        assert wall(p.next_at) == "2024-05-01T10:05:00+02:00"


def test_a_tick_late_by_a_restart_is_not_a_missed_one() -> None:
    # Under "skip", a tick found less than MISFIRE_GRACE late (a restart, a failover) fires.
    assert plan(EVERY_5, DOWN, DOWN + 20, "skip").fire == (DOWN,)
    assert plan(EVERY_5, DOWN, DOWN + MISFIRE_GRACE, "skip").fire == ()


def test_a_timer_woken_early_fires_nothing_and_waits_for_the_tick() -> None:
    p = plan(EVERY_5, DOWN, DOWN - 0.5, "all")
    assert p.fire == () and p.next_at == DOWN and not p.dropped


# -- overlap ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "running", "queued", "action"), [
    ("allow", False, False, "submit"), ("allow", True, False, "submit"),
    ("skip", False, False, "submit"), ("skip", True, False, "skip"),
    ("queue", False, False, "submit"), ("queue", True, False, "queue"),
    ("queue", True, True, "skip"),  # one tick waits at most
])
def test_overlap(policy: str, running: bool, queued: bool, action: str) -> None:
    assert rules.overlap_action(policy, running, queued) == action


@pytest.mark.parametrize(("expr", "tz", "said"), [
    (123, "UTC", "cron must be a cron expression"),
    ("", "UTC", "cron must be a cron expression"),
    ("* " * 150, "UTC", "at most 200 characters"),
    ("@daily", None, "timezone must be an IANA name"),
    ("@daily", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
])
def test_what_is_wrong_is_what_is_said(expr: object, tz: object, said: str) -> None:
    with pytest.raises(ValidationFailed, match=said):
        CronRule.parse(expr, tz)


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 30 FEB *"])
def test_a_day_no_month_of_the_rule_has_is_said_to_never_fire(cron: str) -> None:
    # cronsim calls 30 a "Bad day-of-month" with February; docs/schedules.md promises that
    # an expression that never matches is refused as such.
    with pytest.raises(ValidationFailed, match=r"never fires: that day of the month never "
                                               r"falls in its month\(s\)"):
        CronRule.parse(cron)
    with pytest.raises(ValidationFailed, match="invalid cron expression '0 0 32 2 \\*': Bad"):
        CronRule.parse("0 0 32 2 *")  # no month has it: a bad field still


@pytest.mark.parametrize(("tz", "said"), [
    ("utc", "did you mean 'UTC'? (time zone names are case-sensitive)"),
    ("europe/paris", "did you mean 'Europe/Paris'? (time zone names are case-sensitive)"),
    ("Europe/Pariss", "did you mean 'Europe/Paris'?"),
    ("Mars/Olympus", "use an IANA name such as 'Europe/Paris' or 'UTC'"),
])
def test_a_misspelt_zone_is_refused_with_its_spelling(tz: str, said: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        CronRule.parse("@daily", tz)
    assert err.value.message == f"unknown time zone {tz!r}: {said}"
