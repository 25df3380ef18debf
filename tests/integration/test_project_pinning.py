"""An archive job runs the upload of its project it was submitted with, against real processes.

Resolved by name when it ran, a job token's ``PUT /files/<project>.zip`` (or anyone's later
upload) made another DAG's pending archive job run the uploader's code with that job's own
token and agent run, and a retry ran the newest upload rather than the one submitted (a
hostile QA pass)."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.harness import Cluster, shared_cluster
from titan.errors import InvalidDAG
from titan_sdk import TitanClient, TitanJob

cluster = shared_cluster()


def project(root: Path, said: str, code: int = 0) -> Path:
    """A project folder ``proj`` whose main.py prints ``said`` and exits ``code``."""
    folder = root / said.replace(" ", "_") / "proj"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(f"import sys\nprint({said!r})\nsys.exit({code})\n")
    return folder


def gated(client: TitanClient, name: str, **archive: object) -> None:
    """A DAG whose archive job waits for a gate: it is submitted now and runs when approved."""
    client.submit_dag(name, [
        TitanJob(job_id="go", job_type="APPROVAL", hitl_message="run it?"),
        TitanJob(job_id="main", filename="proj/main.py", is_archive=True, parents=["go"],
                 retries=0, **archive),  # type: ignore[arg-type]
    ])


def run(client: TitanClient, name: str) -> tuple[str, str]:
    """Approve the gate; the archive job's state and what it printed."""
    client.approve(f"{name}/go")
    client.wait(name, timeout=90)
    return client.get_job(f"{name}/main")["state"], client.fetch_logs(f"{name}/main").strip()


HIJACK = """
    import os, tempfile, zipfile
    from titan import TitanClient
    path = os.path.join(tempfile.mkdtemp(), "proj.zip")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("main.py", "print('attacker code')\\n")
    print(TitanClient().upload_file(path)["sha256"])
"""


def test_a_later_upload_under_the_name_changes_no_submitted_job(cluster: Cluster,
                                                                 tmp_path: Path) -> None:
    owner = cluster.client()
    mine = owner.upload_project_folder(project(tmp_path, "owner v1", code=1))
    gated(owner, "pinned")
    # Another DAG's job replaces proj.zip with its own token while the job waits.
    hijack = cluster.script("hijack.py", HIJACK)
    owner.submit_job(TitanJob(job_id="hijack", filename=hijack))
    assert owner.wait("hijack", timeout=60)["state"] == "COMPLETED"
    attacker_sha = owner.fetch_logs("hijack").strip()
    assert attacker_sha != mine["sha256"]

    assert run(owner, "pinned") == ("FAILED", "owner v1")
    # A retry runs the upload the job was submitted with too, not the newest.
    owner.retry_dag("pinned")
    owner.wait("pinned", timeout=90)
    retried = owner.get_job("pinned/main")
    assert (retried["state"], retried["attempt"]) == ("FAILED", 2)
    assert owner.fetch_logs("pinned/main").strip() == "owner v1"

    # A submission after it, from the client that uploaded, runs that client's upload.
    gated(owner, "pinned_again")
    assert run(owner, "pinned_again") == ("FAILED", "owner v1")

    # A client that uploaded nothing runs the latest upload at its submission, and keeps it
    # when the name is uploaded to again before the job runs.
    other = cluster.client()
    gated(other, "latest")
    owner.upload_project_folder(project(tmp_path, "owner v2"))
    assert run(other, "latest") == ("COMPLETED", "attacker code")


def test_a_submission_names_the_upload_or_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client()
    first = client.upload_project_folder(project(tmp_path, "first upload"))
    client.upload_project_folder(project(tmp_path, "second upload"))

    def job(sha: str | None) -> dict[str, object]:
        return {"job_id": "main", "filename": "proj/main.py", "is_archive": True,
                "script_sha256": sha}

    # An earlier upload, named by its sha256 (the API, as the SDK sends it), is run.
    dag = cluster.api("POST", "/dags", {"name": "named_upload", "jobs": [job(first["sha256"])]})
    assert client.wait_dag(dag["id"], timeout=90)["status"] == "COMPLETED"
    assert client.fetch_logs(f"{dag['ref']}/main").strip() == "first upload"

    # A blob that is no upload of proj.zip (a script, another file) is refused at once.
    other = client.upload_blobs([b"print('not the project')\n"])[0]
    for sha in (other, hashlib.sha256(b"never uploaded").hexdigest()):
        request = urllib.request.Request(
            f"{cluster.url}/api/v1/dags", method="POST",
            data=json.dumps({"name": "bad_upload", "jobs": [job(sha)]}).encode(),
            headers={"Authorization": f"Bearer {cluster.admin_token}",
                     "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30)
            raise AssertionError("accepted")
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())["error"]
            assert exc.code == 400 and body["code"] == "invalid_dag", body
            assert body["details"]["job_id"] == "main"
            assert body["details"]["field"] == "script_sha256"
            assert "no upload of its project 'proj.zip'" in body["message"]
    bad = dict(job(None), script_sha256="not a hash")
    try:
        cluster.api("POST", "/dags", {"name": "bad_upload", "jobs": [bad]})
        raise AssertionError("accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400 and b"script_sha256" in exc.read()

    # A project never uploaded is refused as before.
    try:
        client.submit_job(TitanJob(job_id="nothing", filename="nope/main.py", is_archive=True))
        raise AssertionError("accepted")
    except InvalidDAG as exc:
        assert "its project 'nope.zip' was never uploaded" in str(exc)


def test_a_schedule_runs_the_upload_it_was_created_with(cluster: Cluster,
                                                        tmp_path: Path) -> None:
    uploader = cluster.client()
    uploader.upload_project_folder(project(tmp_path, "scheduled v1"), project_name="sched")
    # Created by a client that uploaded nothing: the master pins the latest upload then.
    client = cluster.client()
    client.schedule_dag("pinned_schedule", [
        TitanJob(job_id="main", filename="sched/main.py", is_archive=True)],
        cron="0 0 1 1 *", paused=True)
    uploader.upload_project_folder(project(tmp_path, "scheduled v2"), project_name="sched")
    fired = client.run_schedule_now("pinned_schedule")
    dag = client.wait_dag(fired["id"], timeout=90)
    assert dag["status"] == "COMPLETED"
    assert client.fetch_logs(f"{dag['ref']}/main").strip() == "scheduled v1"
