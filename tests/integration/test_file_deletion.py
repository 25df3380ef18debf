"""Deleting files and artifacts on a running master: ``DELETE /files/{name}``, ``DELETE
/artifacts?key=``, ``titan files rm`` and the SDK's ``delete_file``/``delete_artifact``; the
old versions that go with pruned DAG runs and after ``TITAN_FILE_RETENTION``; and the blobs
only they named, collected afterwards (``POST /blobs/gc``).

Files, runs and blobs are aged by moving their times back in the master's SQLite file, then
the master is restarted (as in test_blob_gc.py: a master keeps the blobs it wrote itself
lately whatever the database says). ``TITAN_BLOB_GC=off``: no collection of the master's own
races the test's."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster
from tests.integration.test_blob_gc import collect, sql, stored
from tests.integration.test_cli import on_terminal, titan
from titan import TitanJob
from titan.errors import ConfigError, Forbidden, NotFound
from titan.master.config import MasterConfig

DAY = 86_400.0

REFUSED_IN_A_JOB = """
from titan import TitanClient
from titan.errors import Forbidden
try:
    TitanClient().delete_file("notes.txt")
except Forbidden as exc:
    print("refused:", exc)
"""

PUBLISHER = """
import sys
from pathlib import Path
from titan import TitanClient
n = sys.argv[1]
client = TitanClient()
Path("report.txt").write_text(f"report of run {n}")
client.upload_file("report.txt")
Path("summary.txt").write_text(f"summary of run {n}")
client.publish_artifact(f"runs/{n}/summary", "summary.txt")
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def versions(c: Cluster, name: str) -> list[str]:
    """The sha256 of each version of ``name``, oldest first."""
    files = c.api("GET", "/files?limit=10000")["files"]
    return [f["sha256"] for f in reversed(files) if f["name"] == name]


def restart(c: Cluster) -> None:
    c.kill_master()
    c.start_master()


def age(c: Cluster, days: float = 3) -> None:
    """Every blob, file and finished DAG run ``days`` older."""
    back = days * DAY
    sql(c, "UPDATE blobs SET created_at = created_at - :b, used_at = used_at - :b", b=back)
    sql(c, "UPDATE files SET created_at = created_at - :b", b=back)
    sql(c, "UPDATE dags SET finished_at = finished_at - :b WHERE finished_at IS NOT NULL",
        b=back)


def ask(c: Cluster, name: str, answer: bytes) -> int:
    """``titan files rm NAME`` on a terminal, answering its question; its exit status."""
    out = on_terminal(c, "files", "rm", name, answer=answer)
    # The question goes to stderr: stdout stays the command's output (--json included).
    assert f"delete every version of {name}? [y/N]" in out.stderr, out
    if out.returncode:
        assert "nothing deleted" in out.stderr, out.stderr
    return out.returncode


@pytest.fixture
def gc_off(make_cluster: Any) -> Cluster:
    c: Cluster = make_cluster(env={"TITAN_BLOB_GC": "off"})
    c.start_master()
    c.add_worker()
    return c


def test_files_and_artifacts_deleted_by_hand(gc_off: Cluster, tmp_path: Path) -> None:
    c = gc_off
    client = c.client()
    notes = [b"first notes", b"second notes!", b"third notes, a secret"]
    for body in notes:
        client.upload_file(write(tmp_path / "notes.txt", body))
    assert versions(c, "notes.txt") == [sha(b) for b in notes]

    # Who may: an operator or an admin, not a viewer nor a job (which may only add versions).
    viewer_token = client.create_token("viewer", "v")["token"]
    viewer = c.client(viewer_token)
    with pytest.raises(Forbidden, match="a viewer token may not delete files or artifacts"):
        viewer.delete_file("notes.txt")
    with pytest.raises(Forbidden):
        viewer.delete_artifact("anything")
    job = client.submit_dag("deleter", [TitanJob(job_id="rm", filename=c.script(
        "rm.py", REFUSED_IN_A_JOB))])
    assert client.wait_dag(job["id"], timeout=60)["status"] == "COMPLETED"
    said = client.fetch_logs("deleter/rm")
    assert "refused: a job token may not delete files or artifacts" in said, said
    operator = c.client(client.create_token("operator", "ops")["token"])

    # Every version but the newest: the newest is still what the name serves.
    kept = operator.delete_file("notes.txt", keep_latest=True)
    assert (kept["name"], kept["deleted"], kept["kept"]) == ("notes.txt", 2, 1)
    assert kept["bytes"] == len(notes[0]) + len(notes[1]) and kept["store"] == {}
    assert versions(c, "notes.txt") == [sha(notes[2])]
    assert Path(client.fetch_artifact("notes.txt", tmp_path / "got")).read_bytes() == notes[2]
    assert operator.delete_file("notes.txt", keep_latest=True)["deleted"] == 0

    # A reply lost and the request sent again with its key: the first answer, not a 404.
    headers = {"Authorization": f"Bearer {c.admin_token}", "Idempotency-Key": "k" * 20}
    with httpx.Client(base_url=f"{c.url}/api/v1", headers=headers, timeout=30) as h:
        first = h.delete("/files/notes.txt")
        again = h.delete("/files/notes.txt")
        assert first.status_code == again.status_code == 200, first.text
        assert first.json() == again.json() and first.json()["deleted"] == 1
        missing = h.delete("/files/notes.txt", headers={"Idempotency-Key": "m" * 20})
        assert missing.status_code == 404 and "no file named 'notes.txt'" in missing.text
        assert h.delete("/files/a%2Fb").status_code == 400
    with pytest.raises(NotFound, match="no file named 'notes.txt'"):
        client.fetch_artifact("notes.txt", tmp_path / "gone")
    with pytest.raises(NotFound):
        client.delete_file("notes.txt")

    # From the shell: asks nothing off a terminal; --json as the other commands.
    for body in (b"a", b"bb"):
        client.upload_file(write(tmp_path / "data.csv", body))
    out = titan(c, "files", "rm", "data.csv", "--yes", token=viewer_token, check=False)
    assert out.returncode == 1 and "may not delete files" in out.stderr, out.stderr
    assert ask(c, "data.csv", b"n\n") == 1  # on a terminal it asks; "n" deletes nothing
    assert len(versions(c, "data.csv")) == 2
    out = titan(c, "files", "rm", "data.csv", "--keep-latest", "--json")
    assert json.loads(out.stdout)["deleted"] == 1
    out = titan(c, "files", "rm", "data.csv", "--yes")
    assert "deleted 1 version(s) of data.csv (2 B); 0 kept" in out.stdout, out.stdout
    out = titan(c, "files", "rm", "data.csv", check=False)
    assert out.returncode == 1 and "no file named 'data.csv'" in out.stderr, out.stderr
    assert "rm (delete)   delete every version" in titan(c, "files", "--help").stdout

    # Artifacts by key: the key's value (publish set it to the name) goes with the last.
    for body in (b"model v1", b"model v2"):
        client.publish_artifact("models/best", write(tmp_path / "model.bin", body))
    client.publish_artifact("models/other", write(tmp_path / "model.bin", b"other model"))
    assert client.store_get("models/best") == "model.bin"
    done = operator.delete_artifact("models/best", keep_latest=True)
    assert (done["deleted"], done["kept"], done["value_deleted"]) == (1, 1, False)
    assert client.read_artifact("models/best") == ("model.bin", b"model v2")
    done = operator.delete_artifact("models/best")
    assert (done["key"], done["deleted"], done["kept"]) == ("models/best", 1, 0)
    assert done["value_deleted"] is True and done["store"] == {"models/best": None}
    assert client.store_get("models/best") is None
    with pytest.raises(NotFound, match="no artifact published under key 'models/best'"):
        client.read_artifact("models/best")
    with pytest.raises(NotFound):
        operator.delete_artifact("models/best")
    # The other key's artifact, of the same name, is the name's newest now.
    assert client.read_artifact("models/other") == ("model.bin", b"other model")
    assert versions(c, "model.bin") == [sha(b"other model")]

    # Deleting a name moves a key whose newest artifact had it on to the newest left.
    client.publish_artifact("a/k", write(tmp_path / "x.bin", b"x"))
    client.publish_artifact("a/k", write(tmp_path / "y.bin", b"y"))
    done = operator.delete_file("y.bin")
    assert done["store"] == {"a/k": "x.bin"}
    assert client.store_get("a/k") == "x.bin"
    assert client.read_artifact("a/k") == ("x.bin", b"x")
    # A value written since by other means is not publish's: it stays.
    client.publish_artifact("b/k", write(tmp_path / "z.bin", b"z"))
    client.store_put("b/k", "set by hand")
    done = operator.delete_artifact("b/k")
    assert done["value_deleted"] is False and done["store"] == {}
    assert client.store_get("b/k") == "set by hand"

    # An archive job yet to start runs the upload pinned at its submission: deleting its
    # project's name takes nothing from it (its row names that blob, which stays).
    project = tmp_path / "proj"
    project.mkdir()
    (project / "main.py").write_text("print('hi')\n")
    uploaded = client.upload_project_folder(project)
    client.upload_project_folder(project)  # the same content again: a second version
    waiting = client.submit_dag("archived", [TitanJob(job_id="main", filename="proj/main.py",
                                                      is_archive=True, requirement="GPU")])
    ref = f"archived#{waiting['run']}"
    assert sql(c, "SELECT script_sha256 FROM jobs WHERE job_id = 'main'") == [
        (uploaded["sha256"],)]
    assert operator.delete_file("proj.zip")["deleted"] == 2
    client.cancel(ref)

    # The blobs only the deleted versions named go with the next collection.
    gone = [sha(b) for b in (*notes, b"a", b"bb", b"model v1", b"model v2", b"y", b"z")]
    stays = [sha(b"other model"), sha(b"x"), uploaded["sha256"]]
    assert all(stored(c, s) for s in gone + stays)
    age(c)
    restart(c)
    done = collect(c)
    assert set(gone) <= set(done["sha256"]), done
    for s in gone:
        assert stored(c, s) is None
    for s in stays:
        assert stored(c, s), s


def test_old_versions_go_with_pruned_runs_and_file_retention(gc_off: Cluster,
                                                             tmp_path: Path) -> None:
    c = gc_off
    client = c.client()
    publisher = c.script("publish.py", PUBLISHER)
    for n in (1, 2, 3):
        dag = client.submit_dag("etl", [TitanJob(job_id="p", filename=publisher,
                                                 args=[str(n)])])
        assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED", \
            client.fetch_logs(f"etl#{n}/p")
    reports = [sha(f"report of run {n}".encode()) for n in (1, 2, 3)]
    summaries = [sha(f"summary of run {n}".encode()) for n in (1, 2, 3)]
    assert versions(c, "report.txt") == reports
    manual = [b"uploaded by hand, v1", b"uploaded by hand, v2"]
    for body in manual:
        client.upload_file(write(tmp_path / "manual.txt", body))

    age(c)
    assert c.api("POST", "/dags/prune", {"older_than": "1d"})["pruned"] == 2
    # The newest report stays, its older versions went with their runs; each run's summary
    # stays: it is the newest under its own key (GET /artifacts?key=runs/1/summary).
    assert versions(c, "report.txt") == [reports[2]]
    assert versions(c, "summary.txt") == summaries
    assert client.read_artifact("runs/1/summary") == ("summary.txt", b"summary of run 1")
    assert versions(c, "manual.txt") == [sha(b) for b in manual]  # no run: not the prune's
    assert "retention: deleted 2 old file version(s) of pruned DAG runs" in c.log()

    # TITAN_FILE_RETENTION: older versions stored before the window go at start (then hourly).
    c.env["TITAN_FILE_RETENTION"] = "2d"
    restart(c)
    deadline = time.monotonic() + 30
    while len(versions(c, "manual.txt")) > 1:
        assert time.monotonic() < deadline, c.log()
        time.sleep(0.1)
    assert versions(c, "manual.txt") == [sha(manual[1])]
    assert versions(c, "summary.txt") == summaries
    assert "retention: deleted 1 old file version(s) past TITAN_FILE_RETENTION" in c.log()

    done = collect(c)
    assert set(done["sha256"]) == {*reports[:2], sha(manual[0])}, done
    for s in (reports[2], *summaries, sha(manual[1])):
        assert stored(c, s), s


def test_a_file_retention_that_is_not_hours_or_days_stops_the_master() -> None:
    MasterConfig(file_retention="90d").check()
    with pytest.raises(ConfigError, match="TITAN_FILE_RETENTION must be a number of hours"):
        MasterConfig(file_retention="30m").check()
