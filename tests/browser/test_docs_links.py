"""The dashboard's links into its docs, followed in real Chromium against a real `titan up`:
a determinism finding's recommendation to its section of /docs/determinism, a failure-mode
chip to its row of /docs/troubleshooting, and the explorer's "full table on Troubleshooting".
Every wait is on the DOM contract, never a sleep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import check_common
from tests.conftest import free_port
from tests.integration.harness import Cluster, shared_cluster

pytestmark = pytest.mark.browser


# The master may call loopback, where nobody listens for the agent: its run fails as
# unreachable.
cluster = shared_cluster(slots=2, env={"TITAN_EGRESS_ALLOW": "127.0.0.1"})


def landed_on(page: Any, path: str, anchor: str) -> None:
    """The docs page is open at ``anchor``: the address, the heading it names, in view."""
    page.wait_for_url(f"**{path}#{anchor}")
    # No check_common: a docs page opens no live feed (it has nothing that changes).
    page.wait_for_selector('body[data-page="docs"]', state="attached")
    heading = page.locator(f"#doc #{anchor}")
    assert heading.count() == 1
    assert page.evaluate(f"document.getElementById({anchor!r}).matches(':target')")
    assert heading.is_visible() and heading.bounding_box()["y"] < 400  # scrolled to it


def test_a_recommendation_links_to_its_docs_section(cluster: Cluster, dash: Dashboard,
                                                    page: Any, artifacts: Path) -> None:
    cluster.api("POST", "/runs", {"id": "docs-det", "agent_id": "docs"})
    cluster.api("POST", "/runs/docs-det/actions", {"actions": [{
        "id": "d1", "actor": "main", "channel": "custom", "name": "generate_report",
        "started_at": time.time(), "inputs": {"topic": "sales"},
        "outputs": {"report": "Q3", "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}}]})
    cluster.api("PATCH", "/runs/docs-det", {"status": "completed"})

    page.goto(dash.url("/runs/docs-det#determinism"))
    check_common(page, "run")
    link = '#recommendations .recommendation[data-kind="timestamp_in_output"] a.docs-link'
    page.wait_for_selector(link)
    assert page.get_attribute(link, "href") == "/docs/determinism#timestamp-in-output"
    finding = '#findings .finding[data-kind="timestamp_in_output"] a.docs-link'
    assert page.get_attribute(finding, "href") == "/docs/determinism#timestamp-in-output"
    page.click(link)
    landed_on(page, "/docs/determinism", "timestamp-in-output")
    # The section shows the fix the tab showed.
    section = page.inner_text("#doc")
    assert '"generated_at": generated_at}  # passed in as an input' in section
    assert page.get_attribute('.docs-nav a[aria-current="page"]', "href") == "/docs/determinism"
    page.screenshot(path=str(artifacts / "docs-determinism.png"), full_page=False)


def test_a_failure_chip_links_to_its_troubleshooting_row(cluster: Cluster, dash: Dashboard,
                                                         page: Any) -> None:
    client = cluster.client()
    client.create_evaluation("docs-dead", {"name": "remote-bot", "kind": "http",
                                           "url": f"http://127.0.0.1:{free_port()}/agent"},
                             [{"id": "hello", "user_instruction": "Hello?"}])
    client.run_evaluation("docs-dead")
    view = client.wait_evaluation("docs-dead", timeout=60)
    assert view["tasks"][0]["run"]["error_class"] == "agent_unreachable"

    page.goto(dash.url("/evaluations/docs-dead"))
    check_common(page, "evaluation")
    assert page.get_attribute("#failure-modes-link", "href") == \
        "/docs/troubleshooting#failure-modes"
    chip = '#eval-table tr[data-task-id="hello"] a.chip'
    assert "could not connect" in (page.get_attribute(chip, "title") or "")
    page.click(chip)  # the chip, not its row: the docs, not the task
    landed_on(page, "/docs/troubleshooting", "agent-unreachable")
    assert "egress policy" in page.inner_text("#doc")

    page.go_back()
    page.wait_for_selector("#failure-modes-link")
    page.click("#failure-modes-link")
    landed_on(page, "/docs/troubleshooting", "failure-modes")
    table = page.inner_text("#failure-modes + p + table")
    assert "agent_unreachable" in table and "dispatches the task once more" in table
