"""Blob garbage collection on a running master (``POST /blobs/gc``, ``titan admin blobs gc``,
and the master's own after a prune), on SQLite with the directory store and on PostgreSQL
with the database store: what nothing names goes, everything named or lately used stays,
and a blob uploaded again while a collection deletes it survives whole.

Blobs are aged by moving their times back in the master's database (the grace period is an
hour at least: a test cannot wait for one), then the master is restarted: a master keeps the
blobs it wrote itself within the last 15 minutes whatever the database says (their records
may be on their way: ``storage/blobs/gate.py``), and a new process has written none.
``TITAN_BLOB_GC=off`` where a collection of the master's own would race the test's."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import fresh_postgres_database
from tests.integration.harness import Cluster
from tests.integration.test_cli import titan
from titan import TitanJob

DAY = 86_400.0
SETUPS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=SETUPS)
def gc_cluster(request: pytest.FixtureRequest, make_cluster: Any) -> Iterator[Cluster]:
    """A master and a worker, blobs collected only when asked: SQLite and its blob
    directory, or PostgreSQL holding the blobs too."""
    env = {"TITAN_BLOB_GC": "off"}
    if request.param == "sqlite":
        c = make_cluster(env=env)
        yield c.start_master()
        return
    # A database of the test's own: the counts are of what this test stored.
    template = request.getfixturevalue("postgres_template")
    with fresh_postgres_database("titan_gc", template=template) as url:
        c = make_cluster(database_url=url, env={**env, "TITAN_BLOB_STORE": "database"})
        try:
            yield c.start_master()
        finally:
            c.stop()  # before its database is dropped


def days_later(c: Cluster, days: float = 3) -> None:
    """Every blob last used, DAG run finished and agent run started ``days`` earlier, and
    the master restarted (as it would have been, or not, meanwhile: it makes no difference)."""
    age_everything(c, days)
    c.kill_master()
    c.start_master()


def sql(c: Cluster, statement: str, **params: Any) -> list[Any]:
    """Run ``statement`` on the master's database, beside the master."""
    engine = sa.create_engine(c.database_url or f"sqlite:///{c.data / 'titan.db'}")
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def age_everything(c: Cluster, days: float = 3) -> None:
    """Every blob last used, DAG run finished and agent run started ``days`` earlier."""
    back = days * DAY
    sql(c, "UPDATE blobs SET created_at = created_at - :b, used_at = used_at - :b", b=back)
    sql(c, "UPDATE dags SET finished_at = finished_at - :b WHERE finished_at IS NOT NULL", b=back)
    sql(c, "UPDATE agent_runs SET created_at = created_at - :b, started_at = started_at - :b, "
           "ended_at = ended_at - :b WHERE ended_at IS NOT NULL", b=back)


def http(c: Cluster) -> httpx.Client:
    return httpx.Client(base_url=f"{c.url}/api/v1", timeout=60,
                        headers={"Authorization": f"Bearer {c.admin_token}"})


def stored(c: Cluster, sha: str, h: httpx.Client | None = None) -> bytes | None:
    """The blob's bytes from the master (None: 404), checked against its name."""
    if h is None:
        with http(c) as h:
            return stored(c, sha, h)
    r = h.get(f"/blobs/{sha}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == sha
    return r.content


def on_disk(c: Cluster, sha: str) -> bool:
    return (c.data / "blobs" / sha[:2] / sha).exists()


def collect(c: Cluster, token: str | None = None, **body: Any) -> Any:
    return c.api("POST", "/blobs/gc", body, token=token)


def test_what_nothing_names_goes_and_everything_named_stays(gc_cluster: Cluster,
                                                            tmp_path: Path) -> None:
    c = gc_cluster
    c.add_worker()
    client = c.client()
    sha = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()  # noqa: E731

    # A DAG run that retention prunes (not its name's latest), and the latest run.
    gone_script = c.script("gone.py", "print('the old version')\n")
    latest_script = c.script("v2/gone.py", "print('the new version')\n")
    for script in (gone_script, latest_script):
        dag = client.submit_dag("etl", [TitanJob(job_id="x", filename=script)])
        assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
    # A job running while it all happens.
    live_script = c.script("live.py", "import time\ntime.sleep(120)\n")
    live = client.submit_dag("live", [TitanJob(job_id="sleeper", filename=live_script)])
    # A file, a published artifact, an upload nothing names, a run's large payload.
    (tmp_path / "notes.txt").write_text("a file kept by its name")
    (tmp_path / "model.bin").write_bytes(b"an artifact kept by its key" * 100)
    kept_file = client.upload_file(tmp_path / "notes.txt")["sha256"]
    artifact = client.publish_artifact("models/best", tmp_path / "model.bin")["sha256"]
    [orphan] = client.upload_blobs([b"uploaded once, named by nothing"])
    c.api("POST", "/runs", {"id": "old-run", "agent_id": "agent"})
    c.api("POST", "/runs/old-run/actions", {"actions": [
        {"name": "summarise", "started_at": time.time(), "outputs": {"text": "y" * 70_000}}]})
    c.api("PATCH", "/runs/old-run", {"status": "completed"})
    [action] = c.api("GET", "/runs/old-run/actions")["actions"]
    payload = action["outputs_hash"]
    [(mark,)] = sql(c, "SELECT value FROM meta WHERE key = 'blob_store_mark'")
    assert all(stored(c, s) for s in (sha(gone_script), payload, orphan, mark, artifact))

    days_later(c)
    assert c.api("POST", "/dags/prune", {"older_than": "1d"})["pruned"] == 1
    assert c.api("POST", "/runs/prune", {"older_than": "1d"})["run_ids"] == ["old-run"]
    # Uploaded after the aging: within the grace period, named by nothing.
    [recent] = client.upload_blobs([b"uploaded a moment ago, named by nothing yet"])
    doomed = sorted([sha(gone_script), payload, orphan])
    kept = [sha(latest_script), sha(live_script), kept_file, artifact, recent, mark]  # mark last

    operator = client.create_token("operator", "ops")["token"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        collect(c, token=operator, dry_run=True)
    assert refused.value.code == 403 and "collect unused blobs" in refused.value.read().decode()
    for bad in ({"dry_run": "yes"}, {"min_age": "30m"}, {"min_age": 5}, {"oops": 1}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            collect(c, **bad)
        assert refused.value.code == 400, bad

    dry = collect(c, dry_run=True)
    assert (dry["dry_run"], dry["blobs"], sorted(dry["sha256"])) == (True, 3, doomed)
    assert dry["min_age"] == "1d" and dry["bytes"] > 70_000
    assert all(stored(c, s) for s in doomed)  # a dry run deletes nothing
    out = titan(c, "admin", "blobs", "gc", "--dry-run")
    assert "would delete 3 blob(s)" in out.stdout and payload in out.stdout, out.stdout

    done = collect(c)
    assert (done["dry_run"], done["blobs"], sorted(done["sha256"])) == (False, 3, doomed)
    assert done["bytes"] == dry["bytes"]
    for s in doomed:
        assert stored(c, s) is None
        assert not on_disk(c, s)
    for s in kept:
        assert stored(c, s), s
    if not c.database_url:
        assert on_disk(c, mark)  # the mark has no row; it is never a candidate
    assert "blob gc: deleted 3 blob(s)" in c.log()
    with http(c) as h:  # forgotten too: a client asking is told to upload them again
        missing = h.post("/blobs/missing", json={"sha256": [*doomed, *kept[:-1]]}).json()
    assert sorted(missing["missing"]) == doomed
    out = titan(c, "admin", "blobs", "gc", "--json")
    assert json.loads(out.stdout)["blobs"] == 0

    # This client took the old script for uploaded: refused once, it uploads it again.
    again = client.submit_dag("etl", [TitanJob(job_id="x", filename=gone_script)])
    assert client.wait_dag(again["id"], timeout=60)["status"] == "COMPLETED"
    assert stored(c, sha(gone_script))
    client.cancel(f"live#{live['run']}")


def test_a_blob_uploaded_again_while_it_is_collected_survives_whole(
        gc_cluster: Cluster) -> None:
    c = gc_cluster
    client = c.client()
    bodies = [f"blob {i} ".encode() * 50 for i in range(1500)]
    names = client.upload_blobs(bodies)
    days_later(c)
    again = {names[i]: bodies[i] for i in range(0, len(names), 15)}
    result: dict[str, Any] = {}
    collector = threading.Thread(target=lambda: result.update(collect(c)))
    uploaded_during = 0
    with http(c) as h:
        collector.start()
        while collector.is_alive():  # upload some of them again, over and over, meanwhile
            for name, body in again.items():
                assert h.put(f"/blobs/{name}", content=body).status_code == 201
                uploaded_during += collector.is_alive()
        collector.join()
        said = h.post("/blobs/missing", json={"sha256": names}).json()["missing"]
        assert uploaded_during, "the uploads never overlapped the collection"
        # (Those uploaded again before it read the database were not even candidates.)
        assert result["blobs"] + result["kept"] <= len(names) and result["blobs"]
        # Whatever each race's order, a blob is recorded and whole, or gone from both.
        recorded = set(names) - set(said)
        for name, body in zip(names, bodies, strict=True):
            assert stored(c, name, h) == (body if name in recorded else None), name
        assert set(again) <= recorded  # each one's last upload came after any deletion


def test_the_master_collects_after_a_prune_and_only_a_store_it_owns(make_cluster: Any) -> None:
    c = make_cluster().start_master()  # the default: collected, after a prune too
    c.add_worker()
    client = c.client()
    old = c.script("v1/step.py", "print(1)\n")
    for script in (old, c.script("v2/step.py", "print(2)\n")):
        dag = client.submit_dag("step", [TitanJob(job_id="s", filename=script)])
        assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
    old_sha = hashlib.sha256(Path(old).read_bytes()).hexdigest()
    days_later(c)
    assert c.api("POST", "/dags/prune", {"older_than": "1d"})["pruned"] == 1
    deadline = time.time() + 30
    while on_disk(c, old_sha) and time.time() < deadline:
        time.sleep(0.1)
    assert not on_disk(c, old_sha), c.log()
    assert "blob gc: deleted 1 blob(s)" in c.log()

    # A second database pointed at the same blob directory: its collection would delete
    # what the first one uses, so it collects nothing.
    other = make_cluster(env={"TITAN_BLOB_DIR": str(c.data / "blobs")}).start_master()
    with pytest.raises(urllib.error.HTTPError) as refused:
        collect(other, dry_run=True)
    said = refused.value.read().decode()
    assert refused.value.code == 409 and "belongs to another Titan database" in said, said
    # And the first one learned of it at the second's start: it collects nothing either (it
    # went on collecting, and deleted the second's scripts it did not know of).
    assert "is shared with another Titan database" in other.log()
    with pytest.raises(urllib.error.HTTPError) as refused:
        collect(c, dry_run=True)
    said = refused.value.read().decode()
    assert refused.value.code == 409 and "is shared with another Titan database" in said, said
