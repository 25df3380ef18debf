"""A master whose blobs live in its PostgreSQL database (TITAN_BLOB_STORE=database): a job's
script goes up, the job runs and publishes a file, and everything comes back over the API
with nothing written to the master's disk. And what PostgreSQL's text cannot hold (NUL)
never reaches it as a 500."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.integration.harness import Cluster
from titan import TitanJob
from titan.storage import schema as t

pytestmark = pytest.mark.postgres

MAKER = """
    import os
    from titan import TitanClient

    with open("made.bin", "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 7))  # four chunks in the database
    TitanClient().publish_artifact("made", "made.bin")
"""


def test_a_master_keeping_its_blobs_in_postgresql(make_cluster: object, postgres_url: str,
                                                  tmp_path: Path) -> None:
    cluster: Cluster = make_cluster(database_url=postgres_url,  # type: ignore[operator]
                                    env={"TITAN_BLOB_STORE": "database"}).up()
    client = cluster.client()
    script = Path(cluster.script("maker.py", MAKER))
    client.submit_job(TitanJob(job_id="maker", filename=str(script)))
    job = client.wait("maker", timeout=60)
    assert job["state"] == "COMPLETED", client.fetch_logs("maker")

    saved = Path(client.get_artifact("made", tmp_path / "made.bin")).read_bytes()
    [published] = client.api("GET", "/files", params={"dag_id": job["dag_id"]})["files"]
    assert published["sha256"] == hashlib.sha256(saved).hexdigest()
    assert published["size"] == len(saved) == 3 * 1024 * 1024 + 7

    # The script the worker ran, by its hash, with what a file download always carried.
    script_sha = hashlib.sha256(script.read_bytes()).hexdigest()
    auth = {"Authorization": f"Bearer {cluster.admin_token}"}
    with httpx.Client(base_url=f"{cluster.url}/api/v1", headers=auth) as http:
        r = http.get(f"/blobs/{script_sha}")
        assert r.status_code == 200 and r.content == script.read_bytes()
        assert r.headers["content-length"] == str(len(r.content))
        assert r.headers["x-titan-sha256"] == script_sha
        assert r.headers["etag"] == f'"{script_sha}"'
        assert http.get(f"/blobs/{script_sha}",
                        headers={"If-None-Match": r.headers["etag"]}).status_code == 304

        # A byte range across two chunks of the published file, and one past its end.
        lo, hi = 1024 * 1024 - 10, 1024 * 1024 + 9
        r = http.get("/artifacts", params={"key": "made"}, headers={"Range": f"bytes={lo}-{hi}"})
        assert r.status_code == 206 and r.content == saved[lo:hi + 1]
        assert r.headers["content-range"] == f"bytes {lo}-{hi}/{len(saved)}"
        assert r.headers["content-disposition"] == 'attachment; filename="made.bin"'
        r = http.get("/files/made.bin", headers={"Range": f"bytes={len(saved)}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(saved)}"
        assert http.get(f"/blobs/{'0' * 64}").status_code == 404

    # Nothing on the master's disk: the bodies are rows of the database.
    assert not (cluster.data / "blobs").exists()

    # PostgreSQL's text holds no NUL: a job that prints one keeps its lines (as U+FFFD, the
    # report with them used to fail whole), and a NUL in a URL or a name is a 400, not a 500.
    nul = Path(cluster.script("nul.py", 'import sys\nprint("a\\x00b")\n'
                                        'sys.exit("bad\\x00exit")\n'))
    client.submit_job(TitanJob(job_id="nul", filename=str(nul)))
    assert client.wait("nul", timeout=60)["state"] == "FAILED"
    assert client.fetch_logs("nul").splitlines() == ["a\ufffdb", "bad\ufffdexit"]
    with httpx.Client(base_url=f"{cluster.url}/api/v1", headers=auth) as http:
        for url in ("/runs/a%00b", "/runs?agent_id=a%00b", "/dags?name=%00"):
            r = http.get(url)
            assert r.status_code == 400 and "NUL" in r.json()["error"]["message"], url
        r = http.post("/runs", json={"agent_id": "a\x00b"})
        assert r.status_code == 400 and "NUL" in r.json()["error"]["message"]
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            chunks = conn.execute(sa.select(t.blob_chunks.c.sha256, sa.func.count())
                                  .group_by(t.blob_chunks.c.sha256)).all()
    finally:
        engine.dispose()
    assert dict(chunks)[published["sha256"]] == 4 and dict(chunks)[script_sha] == 1
