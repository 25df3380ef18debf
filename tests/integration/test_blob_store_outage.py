"""A master whose blob store goes away while it serves, and comes back.

With an S3 store whose server stopped, every upload, download and submission was a ``500
internal_error`` ("a bug in the master", the error body's dict printed by the CLI) with a
botocore traceback in the master's log per request. Now: ``503 blob_store_unavailable`` with
``Retry-After``, naming the store and what happened, one line on the log for the outage; the
SDK rides it out as it does ``database_unavailable``, and the CLI, once its grace is spent,
says what the master said. With the ``database`` store, a database that went away is the
master's ``503 database_unavailable``, the blobs' as every other request's.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.chaos.tcp_proxy import TcpProxy
from tests.integration.harness import Cluster
from tests.moto_s3 import AWS_ENV, s3_server


def _http(cluster: Cluster) -> httpx.Client:
    return httpx.Client(base_url=f"{cluster.url}/api/v1", timeout=60,
                        headers={"Authorization": f"Bearer {cluster.admin_token}"})


def _cli(cluster: Cluster, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "titan", *argv, "--master", cluster.url],
        env={**cluster.env, "TITAN_TOKEN": cluster.admin_token,
             "TITAN_MASTER_RESTART_GRACE": "2"},
        capture_output=True, text=True, timeout=120, cwd=cwd)


def test_an_s3_store_that_stops_answers_503_then_serves_again(
        make_cluster: object, tmp_path: Path) -> None:
    with s3_server() as s3:
        bucket = s3.bucket()
        cluster: Cluster = make_cluster(env={  # type: ignore[operator]
            **AWS_ENV, "TITAN_BLOB_STORE": f"s3://{bucket}/titan",
            "TITAN_S3_ENDPOINT_URL": s3.url}).start_master()
        client = cluster.client()
        kept = tmp_path / "report.md"
        kept.write_text("# findings\n")
        sha = client.upload_file(kept)["sha256"]
        fresh = tmp_path / "fresh.txt"
        fresh.write_text("made during the outage\n")

        s3.stop()
        where = f"the blob store s3://{bucket}/titan at {s3.url} cannot be reached"
        with _http(cluster) as http:
            for r in (http.put("/files/x.txt", content=b"x"),
                      http.get("/files/report.md"),
                      http.get(f"/blobs/{sha}"),
                      http.post("/blobs/missing", json={"sha256": [sha]})):
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                error = r.json()["error"]
                assert error["code"] == "blob_store_unavailable"
                assert error["message"].startswith(where), error["message"]
                assert error["details"]["reason"] == "unreachable"

        # The CLI, its grace spent: the master's words, not a dict nor "a bug".
        for argv in (["files", "upload", str(fresh)], ["files", "get", "report.md"]):
            cli = _cli(cluster, *argv, cwd=tmp_path)
            assert cli.returncode == 1, cli.stderr
            said = cli.stderr.strip()
            assert said.startswith("error: the Titan master at ") and where in said, said
            assert "blob store is unavailable for now" in said, said
            assert "bug in the master" not in said and "{'error'" not in said, said

        # The SDK rides the outage out (as a restart of the master): an upload sent while
        # the store is away lands once it is back.
        landed: list[str] = []
        upload = threading.Thread(
            target=lambda: landed.append(client.upload_file(fresh)["sha256"]))
        upload.start()
        time.sleep(1.5)
        s3.start()
        upload.join(timeout=60)
        assert landed == [hashlib.sha256(fresh.read_bytes()).hexdigest()]
        with _http(cluster) as http:
            assert http.get("/files/fresh.txt").content == fresh.read_bytes()
            assert http.get("/files/report.md").content == kept.read_bytes()

        log = (cluster.root / "master.log").read_text()
        assert log.count("blob store unavailable: ") == 1, log
        assert "blob store back after" in log
        assert "Traceback" not in log and "internal error" not in log, log


@pytest.mark.postgres
def test_a_database_store_whose_database_went_away_answers_database_unavailable(
        make_cluster: object, postgres_url: str) -> None:
    host_port = postgres_url.split("@")[-1].split("/")[0]
    host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "5432")
    proxy = TcpProxy((host, int(port)))
    try:
        cluster: Cluster = make_cluster(  # type: ignore[operator]
            database_url=postgres_url.replace(host_port, f"127.0.0.1:{proxy.port}"),
            env={"TITAN_BLOB_STORE": "database"}).start_master()
        with _http(cluster) as http:
            stored = http.put("/files/kept.txt", content=b"kept")
            assert stored.status_code == 201, stored.text
            sha = stored.json()["sha256"]
            proxy.cut(down_for=4)
            r = http.get(f"/blobs/{sha}")
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "database_unavailable"
            assert r.headers["retry-after"] == "1"
            deadline = time.monotonic() + 30
            while (r := http.get(f"/blobs/{sha}")).status_code == 503 \
                    and time.monotonic() < deadline:
                time.sleep(0.5)
            assert r.status_code == 200 and r.content == b"kept"
        log = (cluster.root / "master.log").read_text()
        assert "internal error" not in log, log
    finally:
        proxy.close()
