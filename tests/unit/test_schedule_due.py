"""A schedule's next ticks are after now, always, and one that is behind says since when it
is due (``due_since``): the API's view, ``titan schedule list`` and ``show``. On a real engine
and SQLite file with a fake clock (the harness of test_schedule_service.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.test_schedule_service import MIN, T0, Master, body, scenario

from titan.cli import schedules as cli


def test_a_schedule_behind_lists_only_future_ticks_and_says_since_when_it_is_due(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Its next_fire_at, a tick gone by, was listed first among next_fires: "next ticks:
    # 10:05" at 10:14, and the page counted down to a time past.
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body("late"), "ops")
        view = await m.schedules.view("late")
        assert view["due_since"] is None and view["next_fires"][0] == T0 + 3 * MIN
        await m.stop()
        clock[0] = T0 + 12 * MIN  # 10:14: 10:05 and 10:10 fell while no master ran
        m = Master(url, clock)
        await m.engine.start()
        await m.schedules.start()
        # Read before its timer deals with those ticks (armed, not yet run: nothing awaited).
        timer = m.schedules.get("late").timer
        assert timer is not None
        timer.cancel()
        for view in (await m.schedules.view("late"), *await m.schedules.views()):
            assert view["due_since"] == T0 + 3 * MIN == view["next_fire_at"]
            assert view["next_fires"] == [T0 + k * MIN for k in (13, 18, 23, 28, 33)]
        cli.show(view)
        cli._list([view])
        out = capsys.readouterr().out
        assert "behind:      due since 2024-05-01 10:05:00 UTC" in out
        assert "next ticks:  2024-05-01 10:15:00 UTC" in out
        assert "2024-05-01 10:15:00 UTC (due since 2024-05-01 10:05:00 UTC)" in out
        await m.schedules.tick(m.schedules.get("late"))  # dealt with: no longer behind
        view = await m.schedules.view("late")
        assert view["due_since"] is None and view["next_fires"][0] == T0 + 13 * MIN
        # Paused, then resumed later: from the next tick after now, never a past one.
        await m.schedules.pause("late")
        paused = await m.schedules.view("late")
        assert paused["next_fires"] == [] and paused["due_since"] is None
        clock[0] = T0 + 40 * MIN
        resumed = await m.schedules.resume("late")
        assert resumed["due_since"] is None and resumed["next_fires"][0] == T0 + 43 * MIN
        assert all(t > clock[0] for t in resumed["next_fires"])
        await m.stop()

    scenario(tmp_path, test)
