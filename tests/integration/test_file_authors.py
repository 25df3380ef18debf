"""Who uploaded each file version: the files list (``GET /files``, ``titan files list``, a
DAG's workspace files on its dashboard page) says it, as ``created_by``: the uploading token's
name, or for a job's own token the job (``dag#run/job``), as a gate's ``decided_by`` names its
decider. Before, a file said at most the internal id of a job that uploaded it, and nothing at
all for a person's or a script's upload. A version stored before Titan recorded it says
nothing (``null``, ``-``, ``—``)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.integration.harness import Cluster
from tests.integration.test_cli import titan
from titan import TitanJob
from titan.storage import open_storage

PUBLISHER = """
    from titan import TitanClient

    with open("made.txt", "w") as f:
        f.write("made inside the job\\n")
    TitanClient().publish_artifact("authors:made", "made.txt")
"""


def test_each_file_version_says_who_uploaded_it(cluster: Cluster, tmp_path: Path) -> None:
    admin = cluster.client()
    ci = cluster.client(admin.create_token("operator", "ci-bot")["token"])
    local = tmp_path / "notes.txt"
    local.write_text("by ci\n")
    by_ci = ci.upload_file(local)
    assert by_ci["created_by"] == "ci-bot", by_ci
    local.write_text("by the admin\n")
    by_admin = admin.upload_file(local)  # a second version of the same name, another author
    assert by_admin["created_by"] == "admin (titan up)", by_admin
    nameless = cluster.client(admin.create_token("operator")["token"])  # its role, then
    assert nameless.publish_artifact("authors:nameless", local)["created_by"] == "operator"

    dag = admin.submit_dag("authors", [TitanJob(job_id="publisher", filename=cluster.script(
        "publisher.py", PUBLISHER))])
    job = admin.wait("authors/publisher", timeout=60)
    assert job["state"] == "COMPLETED", admin.fetch_logs("authors/publisher")
    ref = f"authors#{dag['run']}/publisher"

    listed = admin.api("GET", "/files")["files"]
    assert [(f["name"], f["created_by"]) for f in listed] == [
        ("made.txt", ref), ("notes.txt", "operator"), ("notes.txt", "admin (titan up)"),
        ("notes.txt", "ci-bot")], listed
    assert listed[-1] == by_ci and listed[-2] == by_admin  # the upload's reply is the listing's

    out = titan(cluster, "files", "list").stdout
    lines = {line.split()[0] + " " + line.split()[-1] for line in out.splitlines()[1:]}
    assert {f"made.txt {ref}", "notes.txt operator", "notes.txt ci-bot"} <= lines, out
    assert any(line.startswith("notes.txt") and line.endswith("admin (titan up)")
               for line in out.splitlines()), out

    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {cluster.admin_token}"}) as s:
        page = s.get(f"http://127.0.0.1:{cluster.dashboard_port}/dags/DAG-authors",
                     params={"run": dag["run"]}).text
    section = page[page.index('<section id="files"'):]
    section = section[:section.index("</section>")]
    assert f'<a href="/jobs/{job["id"]}">{ref}</a>' in section, section


def test_a_version_stored_before_authors_were_recorded_names_nobody(
        make_cluster: object, tmp_path: Path) -> None:
    c: Cluster = make_cluster()  # type: ignore[operator]
    c.start_master()
    c.kill_master()
    # As the row a Titan before migration 28 stored: no created_by column was written.
    storage = open_storage(f"sqlite:///{c.data / 'titan.db'}")
    try:
        with storage.transaction() as tx:
            tx.add_blob("a" * 64, 3, 1.0)
            tx.add_file({"name": "old.txt", "sha256": "a" * 64, "size": 3, "store_key": None,
                         "dag_id": None, "job": None, "created_at": 1.0})
    finally:
        storage.close()
    c.start_master()
    (row,) = c.api("GET", "/files")["files"]
    assert row["name"] == "old.txt" and row["created_by"] is None, row
    reply = json.loads(titan(c, "files", "list", "--json").stdout)
    assert reply["files"][0]["created_by"] is None
    (line,) = [x for x in titan(c, "files", "list").stdout.splitlines() if "old.txt" in x]
    assert line.split()[-1] == "-", line
