"""A run's Simulation tab lists the replays made elsewhere as they start and end, in real
Chromium against a real `titan up`.

QA: a replay started from the CLI (`titan replay`), another tab or a script did not
join the original's "Replays of this run" until a reload: the page's feed is scoped to its
own run, and the list was re-read only after a replay this page started. Runs are made over
the HTTP API, as the replay driver records them; every wait is on the DOM, never a sleep.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import assert_no_reload, check_common, mark_no_reload
from tests.integration.harness import Cluster

pytestmark = pytest.mark.browser


def call(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"c{i}-{time.time_ns()}", "name": "call_llm", "actor": "main/agent",
            "channel": "llm", "ordinal": i, "started_at": time.time(), "duration_ns": 1000,
            "inputs": {"prompt": f"q{i}"}, "outputs": {"response": f"a{i}"},
            "outcome": "success", "cost_usd": 0.001, **kw}


def replay(cluster: Cluster, run_id: str, original: str) -> None:
    cluster.api("POST", "/runs", {"id": run_id, "agent_id": "a", "replay_of": original})
    cluster.api("POST", f"/runs/{run_id}/actions", {"actions": [
        call(0, outcome="replayed", cost_usd=0.0, replay_status="served")]})


def items(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#replay-list .replay-item",
                                          "els => els.map(e => e.dataset.runId)"))


def test_replays_made_elsewhere_join_the_list(cluster: Cluster, dash: Dashboard,
                                              page: Any) -> None:
    cluster.api("POST", "/runs", {"id": "elsewhere", "agent_id": "a"})
    cluster.api("POST", "/runs/elsewhere/actions", {"actions": [call(0)]})
    cluster.api("PATCH", "/runs/elsewhere", {"status": "completed"})
    page.goto(dash.url("/runs/elsewhere#simulation"))
    check_common(page, "run")
    page.wait_for_selector("#replay-list .replay-none")
    mark_no_reload(page)

    replay(cluster, "elsewhere-replay-1", "elsewhere")
    page.wait_for_selector('#replay-list .replay-item[data-run-id="elsewhere-replay-1"]'
                           '[data-status="running"]')
    cluster.api("PATCH", "/runs/elsewhere-replay-1", {"status": "completed"})
    page.wait_for_selector('#replay-list .replay-item[data-run-id="elsewhere-replay-1"]'
                           '[data-status="completed"]')
    # Another, on a page whose tab is not open yet: the list the tab opens on has it too.
    other = dash.new_page()
    other.goto(dash.url("/runs/elsewhere"))
    check_common(other, "run")
    replay(cluster, "elsewhere-replay-2", "elsewhere")
    page.wait_for_function("() => document.querySelector('#replay-list .replay-item')"
                           "?.dataset.runId === 'elsewhere-replay-2'")
    assert items(page) == ["elsewhere-replay-2", "elsewhere-replay-1"]
    other.wait_for_function("() => document.querySelector('#replay-list .replay-item')"
                            "?.dataset.runId === 'elsewhere-replay-2'")
    assert_no_reload(page)
