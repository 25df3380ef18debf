"""The master's last word on an error no handler took (master/http_errors.py): answered and
logged once, never raised on to the server (which logged each again, with its traceback)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from titan.errors import APIError, BlobStoreUnavailable
from titan.master import http_errors
from titan.master.http_errors import ErrorGuard


class Away(Exception):
    """What a driver raises while the database is away."""


async def _answer(_request: Request, err: APIError) -> Response:
    return JSONResponse(err.to_body(), status_code=err.status)


def _call(app: Any, path: str = "/api/v1/dags/1") -> tuple[ErrorGuard, list[dict[str, Any]]]:
    guard = ErrorGuard(app, answer=_answer)
    return guard, _request(guard, path)


def _request(guard: ErrorGuard, path: str = "/api/v1/dags/1") -> list[dict[str, Any]]:
    storage = SimpleNamespace(unavailable=lambda exc: isinstance(exc, Away),
                              corrupt=lambda exc: None, cancelled=lambda exc: None)
    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b"",
             "app": SimpleNamespace(state=SimpleNamespace(ctx=SimpleNamespace(storage=storage)))}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))  # raises nothing, whatever the app raised
    return sent


def _raising(exc: Exception, start_first: bool = False) -> Any:
    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        if start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise exc
    return app


def test_a_bug_is_a_500_with_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="titan.master"):
        _guard, sent = _call(_raising(ValueError("boom")))
    assert sent[0]["status"] == 500 and b"internal_error" in sent[1]["body"]
    [record] = caplog.records
    assert record.getMessage() == "internal error on GET /api/v1/dags/1"
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_a_bug_after_the_answer_began_is_logged_and_the_answer_left(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="titan.master"):
        _guard, sent = _call(_raising(ValueError("late"), start_first=True))
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert [r.getMessage() for r in caplog.records] == ["internal error on GET /api/v1/dags/1"]


def test_a_download_cut_by_its_blob_store_going_away_is_no_bug(
        caplog: pytest.LogCaptureFixture) -> None:
    # Starlette re-raises an APIError met after the answer began as a RuntimeError from it.
    # The blob store said its outage on the log itself: no "internal error" traceback here.
    def cut(err: APIError) -> Exception:
        try:
            raise RuntimeError("Caught handled exception, but response already started.") \
                from err
        except RuntimeError as exc:
            return exc

    gone = BlobStoreUnavailable("the blob store s3://b cannot be reached (refused)")
    with caplog.at_level(logging.DEBUG, logger="titan.master"):
        _guard, sent = _call(_raising(cut(gone), start_first=True), "/api/v1/blobs/ab")
        _guard, later = _call(_raising(cut(APIError("no")), start_first=True), "/api/v1/x")
    assert [m["type"] for m in sent] == [m["type"] for m in later] == ["http.response.start"]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "GET /api/v1/blobs/ab: answer cut short: the blob store s3://b cannot "
                        "be reached (refused)"),
        (logging.WARNING, "GET /api/v1/x: answer cut short: no")]
    assert all(r.exc_info is None for r in caplog.records)


def test_the_database_away_is_a_503_and_one_warning_then_a_count(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(http_errors.time, "monotonic", lambda: clock[0])
    app = _raising(Away("connection failed: server closed the connection\nDETAIL: ..."))
    with caplog.at_level(logging.DEBUG, logger="titan.master"):
        guard, sent = _call(app)
        for _ in range(5):  # an outage's next refusals: counted, not logged
            clock[0] += 1
            assert _request(guard)[0]["status"] == 503
        clock[0] += http_errors.AWAY_EVERY
        _request(guard, "/api/v1/store/k")
        clock[0] += 2 * http_errors.AWAY_EVERY + 1  # quiet that long: a new outage
        _request(guard)
    assert sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert b"database_unavailable" in sent[1]["body"]
    said = [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)
    assert said == [
        "database unavailable on GET /api/v1/dags/1: connection failed: server closed the "
        "connection; requests that need it answer 503 until it is back",
        "database still unavailable: 6 more request(s) answered 503 (last: GET /api/v1/store/k: "
        "connection failed: server closed the connection)",
        "database unavailable on GET /api/v1/dags/1: connection failed: server closed the "
        "connection; requests that need it answer 503 until it is back"]


def test_a_websocket_is_left_to_its_own_handling() -> None:
    async def app(_scope: Any, _receive: Any, _send: Any) -> None:
        raise ValueError("ws")

    async def nothing() -> dict[str, Any]:
        return {}

    async def drop(_message: Any) -> None:
        return None

    guard = ErrorGuard(app, answer=_answer)
    with pytest.raises(ValueError):
        asyncio.run(guard({"type": "websocket"}, nothing, drop))
