"""The security log's refusals: a line per client address at most every interval, the
next one counting what was refused meanwhile (a flood of bad tokens is not a full disk)."""

from __future__ import annotations

import time

import pytest

from titan.master.auth.audit import Refusals


def test_refusals_are_a_line_an_interval_per_address_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals(every=0.2)
    with caplog.at_level("WARNING", logger="titan.audit"):
        for _ in range(300):
            refusals.refused("10.0.0.9", "GET /api/v1/store", "unknown or revoked token")
        refusals.refused("10.0.0.7", "POST /api/v1/dags", "invalid job token")
        time.sleep(0.25)
        refusals.refused("10.0.0.9", "GET /api/v1/dags", "unknown or revoked token")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused GET /api/v1/store from 10.0.0.9: unknown or revoked token",
        "refused POST /api/v1/dags from 10.0.0.7: invalid job token",
        "refused GET /api/v1/dags from 10.0.0.9: unknown or revoked token "
        "(299 more since the last line)",
    ]
