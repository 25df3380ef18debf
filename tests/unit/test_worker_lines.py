"""What a worker's log says when its master pauses, fails over or forgets it: one line each,
in words (worker/channel_wire.py, worker/lease_thread.py). A durability QA pass found the
websockets library's traceback for a paused master, a standby's 503 said as "unreachable",
"the master forgot worker" again and again, and no word of which master the worker followed."""

from __future__ import annotations

import json
import logging

import pytest
from tests.fake_masters import standby_body
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from titan.worker import channel_wire, lease_thread
from titan.worker.channel_wire import ended, refusal, retry_line
from titan.worker.lease_thread import Following

LEADER = "http://10.0.0.2:8765"


def _refused(status: int, body: object, headers: list[tuple[str, str]] = ()) -> InvalidStatus:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InvalidStatus(Response(status, "", Headers(list(headers)), raw))


def test_a_standbys_refusal_is_said_as_a_standby() -> None:
    assert refusal(_refused(503, standby_body(LEADER))) == \
        f"a standby (it names the leader {LEADER})"
    assert refusal(_refused(503, standby_body(None), [("X-Titan-Leader", LEADER)])) == \
        f"a standby (it names the leader {LEADER})"
    assert refusal(_refused(503, standby_body(None))) == \
        "a standby that does not know the leader yet"
    # An older standby's 403, or a 503 that is not a standby's: the master does not lead.
    assert refusal(_refused(403, b"")) == "not the leader (it refused the channel: HTTP 403)"
    assert refusal(_refused(503, b"<html>proxy</html>")) == \
        "not the leader (it refused the channel: HTTP 503)"


def test_how_a_connection_ended_is_said() -> None:
    frozen = ConnectionClosedError(None, Close(1011, "keepalive ping timeout"), None)
    assert ended(frozen) == "it stopped answering (keepalive ping timeout)"
    assert ended(ConnectionClosedError(None, None)) == "it closed the connection without a word"
    assert ended(None) == "it closed the connection without a word"


def test_the_line_of_a_failed_try() -> None:
    where = "http://m:8765"
    assert retry_line(where, OSError("x"), None, "") is None  # said elsewhere already
    assert retry_line(where, OSError("x"), None, "master m is a standby") == \
        (logging.WARNING, "worker channel: master m is a standby; retrying")
    assert retry_line(where, OSError("x"), "use https://", None) == \
        (logging.ERROR, "worker channel: use https://; retrying")
    assert retry_line(where, ConnectionRefusedError("refused"), None, None) == \
        (logging.WARNING, f"worker channel: master {where} unreachable (refused); retrying")
    assert retry_line(where, OSError("reset"), None, None, "use https://") == \
        (logging.ERROR, f"worker channel: master {where} unreachable (reset); use https://; "
         "retrying")


def test_the_librarys_traceback_for_a_connection_that_ended_is_kept_at_debug(
        caplog: pytest.LogCaptureFixture) -> None:
    library = channel_wire._LIBRARY_LOG
    with caplog.at_level(logging.DEBUG, logger="websockets.client"):
        try:
            raise ConnectionClosedError(Close(1011, "keepalive ping timeout"), None)
        except ConnectionClosedError:
            library.error("keepalive ping failed", exc_info=True)
        try:
            raise ValueError("a bug of the library's")
        except ValueError:
            library.error("unexpected internal error", exc_info=True)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "keepalive ping failed"),
        (logging.ERROR, "unexpected internal error")]


def test_the_worker_says_once_which_leader_it_follows(caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(lease_thread.time, "monotonic", lambda: clock[0])
    f = Following()
    with caplog.at_level(logging.INFO, logger="titan.worker"):
        f.answered("http://a")  # the first master: the registration line says it
        f.answered("http://a")
        f.answered("http://b")
        f.answered("http://b")
        f.forgot("http://b", "w-1")
        clock[0] += 5
        f.forgot("http://b", "w-1")  # again at once: no news
        clock[0] += lease_thread.FORGOT_AGAIN + 1
        f.forgot("http://b", "w-1")
    forgot = ("master http://b does not know worker w-1 (it restarted, has just taken the "
              "lead, or counted this worker lost after it missed its heartbeats); registering "
              "again")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "following the leader at http://b (was http://a)"),
        (logging.WARNING, forgot), (logging.INFO, forgot), (logging.WARNING, forgot)]
