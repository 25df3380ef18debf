"""A page left open for a day: its event socket drops, or dies without a close, and the page
still ends up showing the truth (seed 000's Agent Runs page, which the seed refreshes every
3 s; Titan pushes instead, so it must notice a dead push).

The master here pings after 1 quiet second (``TITAN_EVENTS_PING``), so a silent socket is
noticed within 2.5 s instead of the default 50 s."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Dashboard, start_cluster
from tests.integration.harness import Cluster
from titan_sdk import TitanJob

#: Every WebSocket the page opens is kept in window.__sockets; one with __muted set still
#: looks open but hears nothing — a connection that died without a close.
WEBSOCKET_SPY = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__sockets.push(this); }
    set onmessage(fn) {
      super.onmessage = fn && ((e) => { if (!this.__muted) fn(e); });
    }
    get onmessage() { return super.onmessage; }
  };
})();
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("live-reconnect"), slots=2,
                      env={"TITAN_EVENTS_PING": "1"})
    try:
        yield c
    finally:
        c.stop()


def stage(cluster: Cluster, run_id: str, label: str) -> None:
    ok = cluster.script("ok.py", "print('ok')\n")
    client = cluster.client()
    client.submit_dag(f"{run_id}_{label}", [TitanJob("step", ok)], agent_run_id=run_id)
    client.wait_dag(f"{run_id}_{label}", timeout=60)


def open_agents(dashboard_factory: Callable[..., Dashboard], cluster: Cluster) -> Any:
    dash = dashboard_factory(cluster, [WEBSOCKET_SPY])
    page = dash.new_page()
    dash.sign_in(page)
    page.goto(dash.url("/agents"))
    page.wait_for_selector('#live[data-state="open"]')
    return page


def test_a_dropped_socket_reconnects_and_resyncs(
        cluster: Cluster, dashboard_factory: Callable[..., Dashboard], tmp_path: Path) -> None:
    page = open_agents(dashboard_factory, cluster)
    page.evaluate("() => window.__sockets.at(-1).close()")  # the connection is gone
    stage(cluster, "DROPPED_lr01", "PLAN")  # happens while the page is away
    page.wait_for_selector('.agent-run[data-run-id="DROPPED_lr01"] '
                           'a.stage[data-label="PLAN"][data-status="COMPLETED"]')
    page.wait_for_selector('#live[data-state="open"]')
    assert page.evaluate("() => window.__sockets.length") >= 2


def test_a_socket_that_dies_silently_is_noticed_and_replaced(
        cluster: Cluster, dashboard_factory: Callable[..., Dashboard]) -> None:
    page = open_agents(dashboard_factory, cluster)
    # The page's first fetch done (on a loaded box it came after the stage below, which it
    # then showed without any reconnect), the socket goes deaf.
    page.wait_for_load_state("networkidle")
    page.evaluate("() => { window.__sockets.at(-1).__muted = true; }")  # open, but deaf
    stage(cluster, "SILENT_lr02", "PLAN")  # its events reach a socket nobody hears
    # No close ever comes: the page notices the missing pings, opens a new socket and
    # refetches, and the new run appears with the seed's mark.
    row = page.locator('.agent-run[data-run-id="SILENT_lr02"]')
    row.wait_for(timeout=15_000)
    assert row.locator("a.stage .stage-status").inner_text().strip() == "✓ COMPLETED"
    page.wait_for_function("() => window.__sockets.length >= 2", timeout=15_000)
    page.wait_for_selector('#live[data-state="open"]')
    # And it stays live afterwards: a later stage arrives by push on the new socket.
    stage(cluster, "SILENT_lr02", "SYNTH")
    page.wait_for_selector('.agent-run[data-run-id="SILENT_lr02"] a.stage[data-label="SYNTH"]')


def test_a_running_runs_completion_percent_moves_live(
        cluster: Cluster, dashboard_factory: Callable[..., Dashboard], tmp_path: Path) -> None:
    flag = tmp_path / "go"
    wait = cluster.script("wait_flag.py", "import os, sys, time\n"
                          "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.05)\n")
    ok = cluster.script("ok.py", "print('ok')\n")
    client = cluster.client()
    run_id = "PROGRESS_lr03"
    client.submit_dag(f"{run_id}_ITER1", [TitanJob("fast", ok),
                                          TitanJob("slow", wait, args=[str(flag)])],
                      agent_run_id=run_id)
    client.wait(f"{run_id}_ITER1/fast", timeout=60)
    dash = dashboard_factory(cluster)
    page = dash.new_page()
    dash.sign_in(page)
    page.goto(dash.url(f"/runs/{run_id}"))
    page.wait_for_selector('#live[data-state="open"]')
    assert page.inner_text("#run-summary .run-progress-pct") == "50%"
    page.evaluate("() => { window.__sameDocument = true; }")
    flag.write_text("go")  # the last job settles: the header moves without a reload
    page.wait_for_function(
        "() => document.querySelector('#run-summary .run-progress-pct')?.textContent === '100%'")
    assert page.evaluate("() => window.__sameDocument") is True
