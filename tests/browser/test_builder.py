"""The DAG builder in real Chromium against a real `titan up`: a DAG drawn by hand — jobs
added, a script uploaded, dependencies dragged from node to node, a cycle shown and its edge
removed, the YAML exported and imported — then submitted by an operator and run to
completion on its DAG's page; a viewer may draw but not submit.

Every wait is on the page's DOM contract: ``#builder[data-state]`` is ``checking`` from an
edit until the master's answer for it is shown, then ``problems`` or ``ready``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser.conftest import Dashboard
from tests.integration.harness import Cluster
from titan.client.pipeline import load_pipeline

pytestmark = pytest.mark.browser

OK = "print('ok')\n"
TRAIN = "import sys\nprint('trained with', sys.argv[1:])\n"


def node(job_id: str) -> str:
    return f'#graph .node[data-job-id="{job_id}"]'


def settled(page: Any) -> str:
    """Wait for the master's answer to the last edit; the builder's state then."""
    page.wait_for_selector('#builder:not([data-state="checking"]):not([data-state="loading"])',
                           state="attached")
    return str(page.get_attribute("#builder", "data-state"))


def problems(page: Any) -> list[str]:
    return [str(t) for t in page.eval_on_selector_all("#builder-problems li.problem",
                                                      "els => els.map(e => e.textContent)")]


def centre(box: dict[str, float], fx: float = 0.5) -> tuple[float, float]:
    return box["x"] + box["width"] * fx, box["y"] + box["height"] / 2


def drag(page: Any, parent: str, child: str) -> None:
    """Drag from ``parent``'s handle onto ``child``: the child now depends on the parent."""
    page.mouse.move(*centre(page.locator(node(parent) + " .port").bounding_box()))
    page.mouse.down()
    page.mouse.move(*centre(page.locator(node(child)).bounding_box(), 0.3), steps=8)
    page.mouse.up()
    settled(page)


def add_job(page: Any, job_id: str, filename: str) -> None:
    page.click("#add-job")
    page.fill('#job-form [name="job_id"]', job_id)
    page.fill('#job-form [name="filename"]', filename)
    settled(page)


def sign_in(dash: Dashboard, page: Any, token: str) -> None:
    page.goto(dash.url(f"/login?token={token}&next=/dags/new"))
    page.wait_for_selector('body[data-page="builder"]', state="attached")
    page.wait_for_selector('#live[data-state="open"]', state="attached")


def test_build_check_export_import_and_submit(cluster: Cluster, dashboard_factory: Any,
                                              artifacts: Path, tmp_path: Path) -> None:
    cluster.client().upload_file(cluster.script("ok.py", OK))
    operator = cluster.api("POST", "/tokens", {"role": "operator", "name": "builder"})["token"]
    dash = dashboard_factory(cluster)
    page = dash.new_page()
    sign_in(dash, page, operator)
    assert page.get_attribute('nav.nav a[href="/dags/new"]', "aria-current") == "page"
    assert settled(page) == "problems"  # nothing drawn yet: no name, no jobs

    # Three jobs; the master checks each change as it would the submission.
    page.fill("#dag-name", "built")
    add_job(page, "extract", "ok.py")
    page.fill('#job-form [name="priority"]', "high")
    settled(page)
    assert page.is_visible('#job-form input[name="priority"].invalid')
    assert "job 'extract': priority must be an integer (64-bit), got 'high'" in problems(page)
    page.fill('#job-form [name="priority"]', "5")
    add_job(page, "train", "train.py")
    assert page.is_visible('#builder-problems li[data-code="unknown_script"][data-job-id="train"]')
    # Not on the master yet: uploaded from the form, it becomes the job's script.
    page.set_input_files("#script-upload", files=[{"name": "train.py", "mimeType": "text/x-python",
                                                   "buffer": TRAIN.encode()}])
    page.wait_for_selector('#builder-problems li[data-code="unknown_script"]', state="detached")
    page.fill('#job-form [name="args"]', '--epochs 2 "two words"')
    page.fill('#job-form [name="retries"]', "1")
    page.fill('#job-form [name="timeout"]', "120")
    add_job(page, "report", "ok.py")
    assert settled(page) == "ready"
    assert page.eval_on_selector_all("#graph .node", "els => els.length") == 3

    # A dependency drawn by dragging from a node's handle, one picked in the form (what the
    # keyboard can do): the layout makes them columns.
    drag(page, "extract", "train")
    page.click(node("report"))
    page.select_option("#job-form .add-parent", label="train")
    settled(page)
    assert page.inner_text("#job-form .parent-list").strip().startswith("train")
    lefts = [page.locator(node(j)).bounding_box()["x"] for j in ("extract", "train", "report")]
    assert lefts[0] < lefts[1] < lefts[2]

    # An edge back makes a cycle: named, its nodes and edges highlighted, nothing to submit.
    drag(page, "report", "extract")
    assert "job 'extract': cycle in dependencies: extract -> train -> report -> extract" \
        in problems(page)
    assert page.eval_on_selector_all("#graph .node.cycle", "els => els.length") == 3
    assert page.get_attribute("#graph-edges path.edge.cycle", "d")
    assert page.is_disabled("#submit-dag") and page.is_disabled("#export-yaml")
    page.screenshot(path=str(artifacts / "builder-cycle.png"), full_page=False)
    # Click the edge back (it runs under the row, from report's right to extract's left)
    # and delete it.
    report, extract = (page.locator(node(j)).bounding_box() for j in ("report", "extract"))
    page.mouse.click((report["x"] + extract["x"]) / 2 + extract["width"] / 2,
                     report["y"] + report["height"] + 6)
    page.wait_for_selector("#graph-edges path.edge.selected", state="attached")
    page.keyboard.press("Delete")
    assert settled(page) == "ready"
    assert page.eval_on_selector_all("#graph .node.cycle", "els => els.length") == 0

    # Export: the file `titan submit` reads, which loads back as the same DAG.
    with page.expect_download() as download:
        page.click("#export-yaml")
    assert download.value.suggested_filename == "built.yaml"
    text = Path(download.value.path()).read_text()
    assert yaml.safe_load(text) == {"name": "built", "jobs": [
        {"id": "extract", "file": "ok.py", "priority": 5},
        {"id": "train", "file": "train.py", "args": ["--epochs", "2", "two words"],
         "depends_on": ["extract"], "retries": 1, "timeout": 120},
        {"id": "report", "file": "ok.py", "depends_on": ["train"]},
    ]}
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "built.yaml").write_text(text)
    (folder / "ok.py").write_text(OK)
    (folder / "train.py").write_text(TRAIN)
    name, jobs = load_pipeline(folder / "built.yaml")
    assert (name, [j.job_id for j in jobs]) == ("built", ["extract", "train", "report"])

    # Import: a file the CLI refuses is refused with its message; a good one replaces the draft.
    page.click("#import-yaml")
    page.fill("#import-text", "name: x\njobs:\n  - id: a\n    file: ok.py\n    parent: [b]\n")
    page.click("#import-go")
    page.wait_for_selector("#import-error:not([hidden])")
    assert ("built.yaml:5: job 'a': unknown field 'parent' (did you mean 'depends_on'?)"
            in page.inner_text("#import-error"))
    gated = text + ("- id: approve\n  type: APPROVAL\n  depends_on: [report]\n"
                    "  hitl_message: Publish the report?\n"
                    "- id: publish\n  file: ok.py\n  depends_on: [approve]\n")
    page.fill("#import-text", gated)
    page.click("#import-go")
    page.wait_for_selector("#import-dialog", state="hidden")
    assert settled(page) == "ready"
    assert page.eval_on_selector_all("#graph .node", "els => els.length") == 5
    assert page.get_attribute(node("approve"), "data-kind") == "gate"
    assert "hitl_message: Publish the report?" in page.text_content("#builder-yaml")
    page.screenshot(path=str(artifacts / "builder.png"), full_page=False)

    # Submit: through POST /api/v1/dags, then on to the DAG's page, where it runs.
    page.click("#submit-dag")
    page.wait_for_url("**/dags/DAG-built?run=1")
    banner = page.wait_for_selector('#approval-banner[data-job-id="approve"]')
    assert "Publish the report?" in banner.inner_text()
    banner.query_selector("button[data-action=approve]").click()
    page.wait_for_selector('#dag-status[data-status="COMPLETED"]', state="attached")
    dag = cluster.api("GET", "/dags/built")
    train = next(j for j in dag["jobs"] if j["job_id"] == "train")
    assert (train["args"], train["parents"], train["timeout"]) == (
        ["--epochs", "2", "two words"], ["extract"], 120)
    assert {j["job_id"]: j["state"] for j in dag["jobs"]} == {
        "extract": "COMPLETED", "train": "COMPLETED", "report": "COMPLETED",
        "approve": "APPROVED", "publish": "COMPLETED"}
    # Submitted: the draft is gone, the builder starts afresh.
    page.goto(dash.url("/dags/new"))
    settled(page)
    assert page.eval_on_selector_all("#graph .node", "els => els.length") == 0


def test_a_viewer_can_draw_and_export_but_not_submit(cluster: Cluster,
                                                     dashboard_factory: Any) -> None:
    sha = cluster.client().upload_file(cluster.script("ok.py", OK))["sha256"]
    viewer = cluster.api("POST", "/tokens", {"role": "viewer", "name": "watcher"})["token"]
    dash = dashboard_factory(cluster)
    page = dash.new_page()
    sign_in(dash, page, viewer)
    page.click("#import-yaml")
    page.fill("#import-text", "name: watched\njobs:\n  - id: only\n    file: ok.py\n")
    page.click("#import-go")
    page.wait_for_selector("#import-dialog", state="hidden")
    assert settled(page) == "ready"
    assert not page.is_disabled("#export-yaml")
    assert page.is_disabled("#submit-dag")
    page.click(node("only"))
    assert page.query_selector("#script-upload") is None  # uploading is an operator's too
    # The API refuses a viewer's submission whatever the page shows.
    status = page.evaluate("""async (sha) => (await fetch("/api/v1/dags", {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json",
                  "X-CSRF-Token": localStorage.getItem("titan-write-key")},
        body: JSON.stringify({name: "watched", jobs: [
          {job_id: "only", filename: "ok.py", script_sha256: sha}]})})).status""", sha)
    assert status == 403
    assert cluster.api("GET", "/dags?name=watched")["dags"] == []
