"""TitanClient over HTTP against a scripted master (httpx.MockTransport): error mapping,
retries, content-addressed uploads, long polls, logs, store and artifacts.

Integration tests against the real master live in tests/integration.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import socket
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from titan import errors, retry
from titan.client import TitanClient, TitanJob
from titan.client import logs as client_logs
from titan.client import long_poll as long_poll_mod
from titan.client.http_wire import BodyCutOff
from titan.client.transport import Transport

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def isolated(clean_client_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp_path = clean_client_env
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "0.4")  # retries, briefly
    return tmp_path


def client_for(handler: Handler, token: str | None = "t-test") -> TitanClient:
    client = TitanClient(host="127.0.0.1", port=9, token=token)
    client._transport = Transport(client.endpoint, http_transport=httpx.MockTransport(handler))
    return client


def err(status: int, code: str, message: str, **details: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message,
                                                  "details": details}})


class FakeMaster:
    """Just enough of the v1 API, recording every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.blobs: dict[str, bytes] = {}
        self.store: dict[str, str] = {}
        self.dags: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode().split("?")[0].removeprefix("/api/v1")
        method = request.method
        if method == "POST" and path == "/blobs/missing":
            wanted = json.loads(request.content)["sha256"]
            return httpx.Response(200, json={"missing": [s for s in wanted
                                                         if s not in self.blobs]})
        if method == "PUT" and path.startswith("/blobs/"):
            body = request.read()
            sha = path.rsplit("/", 1)[1]
            assert hashlib.sha256(body).hexdigest() == sha
            self.blobs[sha] = body
            return httpx.Response(201, json={"sha256": sha, "size": len(body)})
        if method == "POST" and path == "/dags":
            body = json.loads(request.content)
            self.dags.append(body)
            run = sum(1 for d in self.dags if d["name"] == body["name"])
            return httpx.Response(201, json={"id": len(self.dags), "name": body["name"],
                                             "run": run, "ref": f"{body['name']}#{run}",
                                             "status": "WAITING", "jobs": body["jobs"]})
        if method == "PUT" and path.startswith("/files/"):
            body = request.read()
            return httpx.Response(201, json={"id": 1, "name": path.rsplit("/", 1)[1],
                                             "sha256": hashlib.sha256(body).hexdigest()})
        if path.startswith("/store/values/"):
            key = httpx.URL(path).path.split("/store/values/", 1)[1]
            if method == "PUT":
                self.store[key] = json.loads(request.content)["value"]
                return httpx.Response(200, json={"key": key, "value": self.store[key]})
            return httpx.Response(200, json={"key": key, "value": self.store.get(key)})
        return err(404, "not_found", f"no route {method} {path}")

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.raw_path.decode().removeprefix('/api/v1')}"
                for r in self.requests]


# --------------------------------------------------------------------------- errors


def test_4xx_bodies_become_titan_errors() -> None:
    replies = {
        "/api/v1/jobs/a": err(404, "not_found", "no job 'a'", ref="a"),
        "/api/v1/dags": err(400, "invalid_dag", "cycle a -> a", job_id="a"),
        "/api/v1/jobs/b/retry": err(409, "stale_attempt", "stale"),
        "/api/v1/jobs/b": err(404, "not_found", "no job 'b'"),
        "/api/v1/dags/b": err(404, "not_found", "no DAG 'b'"),
        "/api/v1/store/values/k": err(413, "payload_too_large", "too big"),
    }
    client = client_for(lambda r: replies[r.url.path])
    with pytest.raises(errors.NotFound) as nf:
        client.get_job("a")
    assert (nf.value.message, nf.value.details, nf.value.status) == ("no job 'a'", {"ref": "a"},
                                                                     404)
    with pytest.raises(errors.InvalidDAG) as bad:
        client.api("POST", "/dags", json={})
    assert bad.value.details == {"job_id": "a"}
    with pytest.raises(errors.StaleAttempt):
        client.retry("b")
    with pytest.raises(errors.PayloadTooLarge):
        client.store_put("k", "v")


def test_401_without_a_token_says_how_to_get_one() -> None:
    client = client_for(lambda r: err(401, "unauthorized", "a token is required"), token=None)
    with pytest.raises(errors.Unauthorized, match="TITAN_TOKEN"):
        client.get_job("a")
    assert "Authorization" not in client._transport._http.headers


def test_bearer_token_is_sent() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization", ""))
        return httpx.Response(200, json={"status": "ok"})

    client_for(handler).health()
    assert seen == ["Bearer t-test"]


def test_5xx_is_reported_as_a_master_bug_and_non_json_4xx_kept() -> None:
    client = client_for(lambda r: httpx.Response(500, text="Internal Server Error"))
    with pytest.raises(errors.APIError, match="bug in the master") as info:
        client.health()
    assert info.value.status == 500
    # A master's own 500 (its error body) is said in its words: the CLI printed the body's
    # dict, `{'error': {'code': 'internal_error', 'message': ...}}`.
    crash = err(500, "internal_error", "internal error: KeyError('x')", where="GET /health")
    client = client_for(lambda r: crash)
    with pytest.raises(errors.APIError) as info:
        client.health()
    assert str(info.value) == ("the Titan master failed with HTTP 500 (a bug in the master): "
                               "internal error: KeyError('x')")
    assert info.value.code == "internal_error" and info.value.details == {"where": "GET /health"}
    client = client_for(lambda r: httpx.Response(404, text="nope"))
    with pytest.raises(errors.NotFound, match="HTTP 404"):
        client.health()
    # Another web server on that port: one line naming its page, not the page (12 lines of
    # HTML), and no "bug in the master" for its 501.
    page = ("<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>\n<body>"
            "<h1>Error response</h1></body></html>\n")
    for status in (404, 501):
        client = client_for(lambda r, s=status: httpx.Response(
            s, text=page, headers={"content-type": "text/html;charset=utf-8"}))
        with pytest.raises(errors.APIError) as info:
            client.health()
        said = str(info.value)
        assert "\n" not in said and "text/html: Error response" in said, said
        assert ("is not a Titan master's answer" in said) == (status == 404), said
    # The database away (a read on a connection a restart had just ended) is said as such,
    # not as a bug, and a read sent as POST is sent again like a GET.
    away = {"error": {"code": "database_unavailable", "message": "the database is unavailable",
                      "details": {}}}
    client = client_for(lambda r: httpx.Response(503, json=away))
    with pytest.raises(errors.APIError, match="the database is unavailable") as info:
        client.api("POST", "/runs/prune", json={})
    assert info.value.code == "database_unavailable" and "bug" not in str(info.value)
    answers = iter([httpx.Response(503, json=away), httpx.Response(200, json={"missing": []})])
    sent: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return next(answers)

    client = client_for(flaky)
    assert client.upload_blobs([b"x"]) == [hashlib.sha256(b"x").hexdigest()]
    assert sent == ["/api/v1/blobs/missing"] * 2


def test_a_redirect_is_an_error_and_dot_keys_stay_keys() -> None:
    # The API never redirects: a 3xx (a proxy, a URL normalised away) is not a success.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        if request.url.raw_path.endswith(b"/moved"):
            return httpx.Response(307, headers={"Location": "http://elsewhere/"})
        return httpx.Response(200, json={"key": ".", "value": None})

    client = client_for(handler)
    with pytest.raises(errors.APIError) as caught:
        client.store_put("moved", "v")
    assert caught.value.status == 307 and "elsewhere" in caught.value.message
    client.store_get(".")
    client.store_get("..")
    assert seen[-2:] == ["/api/v1/store/values/%2E", "/api/v1/store/values/%2E%2E"]
    # An empty reference is refused before anything is sent (the path would name the list).
    asked = len(seen)
    for empty in (lambda: client.get_job(""), lambda: client.agent_run("")):
        with pytest.raises(errors.ValidationFailed, match="empty reference"):
            empty()
    assert len(seen) == asked


def test_a_wait_of_zero_seconds_still_asks_and_a_bad_timeout_sends_nothing() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params.get("timeout", ""))
        return httpx.Response(200, json={"key": "k", "value": "here"})

    client = client_for(handler)
    assert client.store_wait("k", timeout=0) == "here"  # set already: the answer, no 408
    assert asked == ["0.0"]
    for bad in (float("nan"), -1, float("inf"), "5"):
        with pytest.raises(errors.ValidationFailed, match="timeout"):
            client.store_wait("k", timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(errors.ValidationFailed, match="timeout"):
            client.submit_dag("d", [TitanJob(job_id="a", filename=__file__)], wait=True,
                              timeout=bad)  # type: ignore[arg-type]
    assert asked == ["0.0"]  # nothing submitted, nothing waited on


def test_unreachable_master_is_connection_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = TitanClient(host="127.0.0.1", port=port, token="t")
    with pytest.raises(errors.ConnectionFailed) as info:
        client.health()
    message = str(info.value)
    assert f"http://127.0.0.1:{port}" in message and "titan up" in message
    client.close()


# --------------------------------------------------------------------------- retries


def flaky(fail: int, exc: type[httpx.TransportError]) -> tuple[Handler, list[str]]:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) <= fail:
            raise exc("boom", request=request)
        return httpx.Response(200, json={"key": "k", "value": "v", "deleted": True})

    return handler, calls


def test_connect_errors_are_retried_for_any_method() -> None:
    handler, calls = flaky(2, httpx.ConnectError)
    assert client_for(handler).store_get("k") == "v"
    assert len(calls) == 3
    handler, calls = flaky(2, httpx.ConnectError)
    client_for(handler).api("POST", "/x")
    assert len(calls) == 3


def test_mid_flight_errors_retry_only_idempotent_methods() -> None:
    handler, calls = flaky(1, httpx.ReadError)
    assert client_for(handler).store_delete("k") is True
    assert calls == ["DELETE", "DELETE"]
    handler, calls = flaky(1, httpx.ReadError)
    with pytest.raises(errors.ConnectionFailed):
        client_for(handler).api("POST", "/dags", json={})
    assert calls == ["POST"]


def test_retries_give_up_once_the_grace_is_spent() -> None:
    handler, calls = flaky(1000, httpx.ConnectError)
    began = time.monotonic()
    with pytest.raises(errors.ConnectionFailed, match="tries within 0.4s"):
        client_for(handler).health()
    assert 0.4 <= time.monotonic() - began < 1.0
    # Retried, and not in a tight loop: at least once (a loaded CI box stretched the backoff's
    # sleeps so that a third try fell past the grace), never more than a backoff allows.
    assert 2 <= len(calls) < 20


def test_a_master_never_reached_is_given_up_on_quickly_but_a_restart_is_ridden_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a job, a client that has had no answer yet (a wrong address, nothing running)
    gives up after FIRST_CONTACT_GRACE; once it has reached its master, an outage is a
    restart and gets the whole grace."""
    monkeypatch.setattr(retry, "FIRST_CONTACT_GRACE", 0.2)
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "5")
    monkeypatch.delenv("TITAN_JOB_UID", raising=False)
    handler, calls = flaky(1000, httpx.ConnectError)
    began = time.monotonic()
    with pytest.raises(errors.ConnectionFailed, match="within 0.2s"):
        client_for(handler).health()
    assert time.monotonic() - began < 1.5

    answers: list[str] = []

    def restarting(request: httpx.Request) -> httpx.Response:
        answers.append(request.method)
        if 2 <= len(answers) <= 6:  # down for a while after the first answer
            raise httpx.ConnectError("restarting", request=request)
        return httpx.Response(200, json={"key": "k", "value": "v"})

    client = client_for(restarting)
    assert client.store_get("k") == "v"
    assert client.store_get("k") == "v"  # rode out ~0.75 s of outage, past 0.2 s
    assert len(answers) == 7
    # Inside a job the master was up to start it: the whole grace from the first call.
    handler, calls = flaky(6, httpx.ConnectError)
    with pytest.raises(errors.ConnectionFailed):
        client_for(handler).store_get("k")
    monkeypatch.setenv("TITAN_JOB_UID", "7")
    handler, calls = flaky(6, httpx.ConnectError)
    assert client_for(handler).store_get("k") == "v" and len(calls) == 7


def test_a_body_cut_off_twice_is_not_taken_for_a_restart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A master that takes the connection and closes it mid-body, with no answer left to read
    # (its 413 is read when there is one: tests/integration/test_body_limits.py), refuses the
    # body: the SDK sent 70 MiB again and again for the whole restart grace.
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "30")
    handler, calls = flaky(1000, BodyCutOff)
    began = time.monotonic()
    with pytest.raises(errors.ConnectionFailed, match="does not take this body"):
        client_for(handler).store_put("k", "v")
    assert calls == ["PUT", "PUT"] and time.monotonic() - began < 5
    # Once, then a restart (refused, then answered): ridden out as before.
    answers = iter([BodyCutOff, httpx.ConnectError, None])

    def restarting(request: httpx.Request) -> httpx.Response:
        failure = next(answers)
        if failure is not None:
            raise failure("gone", request=request)
        return httpx.Response(200, json={"key": "k", "value": "v"})

    client_for(restarting).store_put("k", "v")
    assert next(answers, "spent") == "spent"  # three tries, the third answered


def test_keyed_posts_are_retried_with_the_same_key() -> None:
    calls: list[str] = []
    seen: list[str | None] = []

    def recording(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        seen.append(request.headers.get("Idempotency-Key"))
        if len(calls) == 1:  # the master took it and died before replying
            raise httpx.ReadError("reset", request=request)
        return httpx.Response(200, json={"key": "k", "value": 1})

    client_for(recording).store_incr("k")
    assert calls == ["POST", "POST"]
    assert seen[0] and seen[0] == seen[1]
    client_for(recording).store_incr("k")
    assert calls == ["POST", "POST", "POST"] and seen[2] != seen[0]  # a new logical call gets a new key


def test_gateway_answers_are_retried_only_when_repeatable() -> None:
    statuses = iter([503, 502, 200])
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        status = next(statuses)
        return httpx.Response(status, json={"key": "k", "value": 3})

    assert client_for(handler).store_incr("k") == 3
    assert len(calls) == 3
    statuses, calls[:] = iter([503, 200]), []
    with pytest.raises(errors.APIError):
        client_for(handler).api("POST", "/x")  # no key: the master may have applied it
    assert calls == ["POST"]


# --------------------------------------------------------------------------- submitting


def test_submit_dag_uploads_each_script_once(tmp_path: Path) -> None:
    (tmp_path / "etl").mkdir()
    (tmp_path / "etl" / "extract.py").write_text("print('extract')\n")
    (tmp_path / "train.py").write_text("print('train')\n")
    master = FakeMaster()
    client = client_for(master)
    jobs = [TitanJob("a", "etl/extract.py", priority=5),
            TitanJob("b", "train.py", parents=["a"], requirement="GPU"),
            TitanJob("c", "train.py", parents=["a"])]
    dag = client.submit_dag("nightly", jobs, agent_run_id="RUN1")
    assert dag["ref"] == "nightly#1"
    body = master.dags[0]
    assert body["name"] == "nightly" and body["agent_run_id"] == "RUN1"
    sha = hashlib.sha256(b"print('train')\n").hexdigest()
    assert [j["script_sha256"] for j in body["jobs"]][1:] == [sha, sha]
    assert body["jobs"][0]["filename"] == "etl/extract.py"
    scripts = {sha, hashlib.sha256(b"print('extract')\n").hexdigest()}
    assert scripts <= set(master.blobs)
    # Each script once (the driver's own file goes up too: it is what a replay re-runs).
    assert sorted(p for p in master.paths() if p.startswith("PUT /blobs/")
                  and p.rsplit("/", 1)[1] in scripts) == sorted(f"PUT /blobs/{s}" for s in scripts)

    master.requests.clear()
    client.submit_job(TitanJob("again", "train.py"))  # already uploaded: straight to /dags
    assert master.paths() == ["POST /dags"]
    assert master.dags[-1]["name"] == "again"

    fresh = client_for(master)  # a new client asks, and the master already has it
    fresh.submit_job(TitanJob("b2", "train.py"))
    assert [p.split()[1] for p in master.paths()[1:]] == ["/blobs/missing", "/dags"]


def test_agent_run_id_defaults_to_the_jobs_own(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("")
    monkeypatch.setenv("TITAN_AGENT_RUN_ID", "RESEARCH_1")
    master = FakeMaster()
    client_for(master).submit_job(TitanJob("x", "x.py"))
    assert master.dags[0]["agent_run_id"] == "RESEARCH_1"


def test_submit_checks_before_sending(tmp_path: Path) -> None:
    master = FakeMaster()
    client = client_for(master)
    with pytest.raises(errors.ScriptNotFound):
        client.submit_job(TitanJob("x", "missing.py"))
    (tmp_path / "x.py").write_text("")
    with pytest.raises(errors.InvalidDAG, match="duplicate"):
        client.submit_dag("d", [TitanJob("x", "x.py"), TitanJob("x", "x.py")])
    with pytest.raises(errors.ValidationFailed):
        client.submit_dag("d", TitanJob("x", "x.py"))  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationFailed):
        client.submit_dag("a/b", [TitanJob("x", "x.py")])
    assert master.requests == []


def test_a_folder_given_as_a_file_is_an_is_a_directory_error_sending_nothing(
        tmp_path: Path) -> None:
    master = FakeMaster()
    client = client_for(master)
    folder = tmp_path / "results"
    folder.mkdir()
    for call in (lambda: client.upload_file(folder), lambda: client.publish_artifact(
            "k", str(folder))):
        with pytest.raises(IsADirectoryError, match="is a folder, not a file") as exc:
            call()
        assert isinstance(exc.value, errors.LocalPathIsFolder)
        assert exc.value.filename == str(folder) and exc.value.errno == errno.EISDIR
    assert master.requests == []


def test_archive_jobs_upload_nothing() -> None:
    master = FakeMaster()
    client_for(master).submit_job(TitanJob("x", "proj/main.py", is_archive=True))
    assert master.paths() == ["POST /dags"]
    assert master.dags[0]["jobs"][0]["script_sha256"] is None


def test_archive_jobs_name_the_upload_this_client_made(tmp_path: Path) -> None:
    # Its own upload, pinned: one under the name after it (anyone's) is not what runs.
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "main.py").write_text("print(1)\n")
    master = FakeMaster()
    client = client_for(master)
    uploaded = client.upload_project_folder(tmp_path / "proj")
    client.submit_dag("d", [TitanJob("x", "proj/main.py", is_archive=True),
                            TitanJob("y", "./proj/sub/run.py", is_archive=True),
                            TitanJob("z", "other/main.py", is_archive=True)])
    shas = [job["script_sha256"] for job in master.dags[0]["jobs"]]
    assert shas == [uploaded["sha256"], uploaded["sha256"], None]
    assert master.paths() == ["PUT /files/proj.zip", "POST /dags"]


def test_submit_yaml(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.py").write_text("")
    (tmp_path / "p" / "pipe.yaml").write_text("name: pipe\njobs:\n  - {id: a, file: a.py}\n")
    master = FakeMaster()
    dag = client_for(master).submit_yaml(tmp_path / "p" / "pipe.yaml", agent_run_id="R")
    assert dag["name"] == "pipe" and master.dags[0]["agent_run_id"] == "R"


# --------------------------------------------------------------------------- waiting


def test_wait_tries_the_job_then_the_dag() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.raw_path.decode())
        if request.url.path.startswith("/api/v1/jobs/"):
            return err(404, "not_found", "no job")
        return httpx.Response(200, json={"ref": "pipe#1", "status": "COMPLETED"})

    assert client_for(handler).wait("DAG-pipe", timeout=5)["status"] == "COMPLETED"
    assert asked[0].startswith("/api/v1/jobs/DAG-pipe/wait?timeout=")
    assert asked[1].startswith("/api/v1/dags/DAG-pipe/wait?timeout=")


def test_wait_loops_over_slices_then_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(long_poll_mod, "WAIT_SLICE", 0.01)
    timeouts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(float(request.url.params["timeout"]))
        return err(408, "wait_timeout", "still running")

    with pytest.raises(errors.WaitTimeout, match="job 'j'"):
        client_for(handler).wait_job("j", timeout=0.05)
    assert len(timeouts) >= 2 and max(timeouts) <= 0.01


def test_wait_not_found_anywhere() -> None:
    client = client_for(lambda r: err(404, "not_found", "nope"))
    with pytest.raises(errors.NotFound, match="no job or DAG 'ghost'"):
        client.wait("ghost", timeout=1)


def test_refs_are_escaped_as_one_segment() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"state": "RUNNING"})

    assert client_for(handler).get_job_status("pipe#2/train") == "RUNNING"
    assert seen == ["/api/v1/jobs/pipe%232%2Ftrain"]


# --------------------------------------------------------------------------- logs


def test_fetch_logs_pages_and_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_logs, "LOG_PAGE", 10)
    calls: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append(params)
        after = int(params["after"])
        limit = int(params["limit"])
        lines = [{"seq": i, "stream": "stdout", "ts": 0.0, "line": f"line {i}"}
                 for i in range(after + 1, min(after + limit, 25) + 1)]
        return httpx.Response(200, json={"job": "j", "attempt": 2, "lines": lines,
                                         "next": lines[-1]["seq"] if lines else after,
                                         "done": True})

    logs = client_for(handler).fetch_logs("j")
    assert logs.split("\n") == [f"line {i}" for i in range(1, 26)]
    assert len(calls) == 3  # two full pages of 10, then a short one
    assert calls[0]["wait"] == "0" and "attempt" not in calls[0]
    assert calls[1]["attempt"] == "2" and calls[1]["after"] == "10"


def test_follow_stops_when_done() -> None:
    replies = iter([
        {"attempt": 1, "lines": [{"seq": 1, "line": "a"}], "next": 1, "done": False},
        {"attempt": 1, "lines": [], "next": 1, "done": False},
        {"attempt": 1, "lines": [{"seq": 2, "line": "b"}], "next": 2, "done": True},
        {"attempt": 1, "lines": [], "next": 2, "done": True},
    ])
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return httpx.Response(200, json=next(replies))

    lines = [item["line"] for item in client_for(handler).iter_logs("j", follow=True)]
    assert lines == ["a", "b"]
    assert seen[1]["attempt"] == "1" and seen[1]["after"] == "1" and seen[1]["wait"] != "0"


# --------------------------------------------------------------------------- store


def test_store_round_trip_and_missing_is_none() -> None:
    master = FakeMaster()
    client = client_for(master)
    assert client.store_get("agent_retry_count") is None
    client.store_put("research:r1:plan", '{"a": 1}')
    assert client.store_get("research:r1:plan") == '{"a": 1}'
    assert "PUT /store/values/research%3Ar1%3Aplan" in master.paths()


def test_store_refuses_non_strings_before_sending() -> None:
    master = FakeMaster()
    client = client_for(master)
    with pytest.raises(errors.ValidationFailed, match="str"):
        client.store_put("k", 3)  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationFailed):
        client.store_sadd("k", None)  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationFailed):
        client.store_get("")
    assert master.requests == []


def test_store_sets_incr_keys_wait() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        if path.startswith("/store/sets/") and request.method == "POST":
            return httpx.Response(200, json={"added": 1})
        if path.startswith("/store/sets/"):
            return httpx.Response(200, json={"key": "s", "members": ["a", "b"]})
        if path.startswith("/store/incr/"):
            return httpx.Response(200, json={"key": "n", "value": 5 + json.loads(
                request.content)["by"]})
        if path.startswith("/store/wait/"):
            return httpx.Response(200, json={"key": "k", "value": "done"})
        if path == "/store":
            assert request.url.params["prefix"] == "research:"
            return httpx.Response(200, json={"keys": [{"key": "research:a", "kind": "value"}]})
        return err(404, "not_found", path)

    client = client_for(handler)
    assert client.store_sadd("s", "a") == 1
    assert client.store_smembers("s") == {"a", "b"}
    assert client.store_incr("n", by=2) == 7
    assert client.store_wait("k", timeout=3) == "done"
    assert client.store_keys("research:") == ["research:a"]


# --------------------------------------------------------------------------- files


def test_artifacts_publish_and_get(tmp_path: Path) -> None:
    published: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            published.update(params=dict(request.url.params), body=request.read(),
                             length=request.headers.get("content-length"))
            return httpx.Response(201, json={"id": 1, "name": "report.md"})
        return httpx.Response(200, content=b"# Report\n",
                              headers={"X-Titan-Filename": "report.md"})

    (tmp_path / "report.md").write_text("# Report\n")
    client = client_for(handler)
    assert client.publish_artifact("research:r:report", "report.md")["name"] == "report.md"
    assert published["params"] == {"key": "research:r:report", "name": "report.md"}
    assert published["body"] == b"# Report\n" and published["length"] == "9"

    out = tmp_path / "out"
    out.mkdir()
    assert client.get_artifact("k", save_path=str(out)) == str(out / "report.md")
    target = tmp_path / "final.md"
    assert client.get_artifact("k", save_path=target) == str(target)
    assert target.read_text() == "# Report\n"
    (tmp_path / "report.md").unlink()
    assert client.get_artifact("k") == str(tmp_path / "report.md")
    assert client.fetch_artifact("report.md", save_path=out / "x.md") == str(out / "x.md")


def test_missing_artifact_leaves_no_file(tmp_path: Path) -> None:
    client = client_for(lambda r: err(404, "not_found", "no artifact under 'k'"))
    with pytest.raises(errors.NotFound):
        client.get_artifact("k", save_path=tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_upload_project_folder_skips_caches(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    for rel in ("main.py", "pkg/mod.py", "pkg/__pycache__/mod.cpython-311.pyc", ".git/HEAD",
                "stale.pyc"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("x")
    uploaded: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        uploaded.update(path=request.url.path, body=request.read())
        return httpx.Response(201, json={"id": 1, "name": "myproj.zip"})

    client_for(handler).upload_project_folder(project, project_name="myproj")
    assert uploaded["path"] == "/api/v1/files/myproj.zip"
    names = zipfile.ZipFile(io.BytesIO(uploaded["body"])).namelist()
    assert sorted(names) == ["main.py", "pkg/mod.py"]


def test_upload_file_missing_is_clear(tmp_path: Path) -> None:
    with pytest.raises(errors.ScriptNotFound, match="nope.txt"):
        client_for(lambda r: httpx.Response(201, json={})).upload_file(tmp_path / "nope.txt")


def test_uploading_what_is_there_but_no_file_says_what_it_is(tmp_path: Path) -> None:
    # /dev/null is there: "not found" sent people looking for a typo.
    client = client_for(lambda r: httpx.Response(201, json={}))
    with pytest.raises(errors.ScriptNotFound, match="not a regular file.*character device"):
        client.upload_file("/dev/null")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(errors.ScriptNotFound, match="named pipe"):
        client.publish_artifact("k", fifo)


def test_context_manager_closes() -> None:
    with client_for(lambda r: httpx.Response(200, json={"status": "ok"})) as client:
        assert client.health() == {"status": "ok"}
    assert client._transport._http.is_closed


def test_a_port_that_does_not_speak_http_is_said_at_once() -> None:
    """An SSH daemon (or any other service) on the port: no master restarting answers that,
    so the client says so at once instead of waiting out the restart grace (60 s)."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-OpenSSH_8.9\r\n")

    threading.Thread(target=serve, daemon=True).start()
    client = TitanClient(host="127.0.0.1", port=server.getsockname()[1], token="tt_x")
    started = time.monotonic()
    try:
        with pytest.raises(errors.ConnectionFailed, match="not a Titan master.*SSH-2.0"):
            client.store_get("k")
    finally:
        client.close()
        server.close()
    assert time.monotonic() - started < 10
