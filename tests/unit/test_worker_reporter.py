"""The reporter's window: several reports in flight over the channel, one over HTTP, the
queue's order kept, refusals dropped and a hard stop ending it.

The link is the reporter's own interface (the channel and the HTTP route implement it and are
tested end to end in tests/integration); here a scripted link answers when the test says.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from titan import errors
from titan.worker.channel_wire import report_frame
from titan.worker.reporter import (
    ENTRY_OVERHEAD,
    Done,
    Reporter,
    SyncLink,
    line_bytes,
)
from titan.worker.settings import OUTPUT_BUFFER_ENV, output_buffer

WAIT = 10.0


class HeldLink:
    """Keeps every post until the test answers it."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.posts: list[tuple[dict[str, Any], Done]] = []
        self.cond = threading.Condition()

    def post(self, body: dict[str, Any], done: Done) -> None:
        with self.cond:
            self.posts.append((body, done))
            self.cond.notify_all()

    def wait_posts(self, n: int) -> list[tuple[dict[str, Any], Done]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.posts) >= n, WAIT), self.posts
            return list(self.posts)


def _result(job: int) -> dict[str, Any]:
    return {"id": job, "attempt": 1, "exit_code": 0, "error": None, "timed_out": False}


def _line(job: int, text: str) -> dict[str, Any]:
    return {"id": job, "attempt": 1, "seq": 1, "stream": "stdout", "ts": 0.0, "line": text}


def test_results_go_out_while_earlier_reports_wait_for_their_ack() -> None:
    link = HeldLink(window=3)
    acked: list[list[dict[str, Any]]] = []
    reporter = Reporter(lambda: link, lambda results, _rejected: acked.append(results))
    reporter.start()
    try:
        reporter.log(_line(1, "hello"))
        reporter.result(_result(1))
        first = link.wait_posts(1)[0]
        # Nothing answered yet: the next results still leave, up to the window.
        reporter.result(_result(2))
        link.wait_posts(2)
        reporter.result(_result(3))
        link.wait_posts(3)
        reporter.result(_result(4))  # the window is full: this one waits in the queue
        assert reporter.results_pending == 4
        assert sorted(reporter.unacked()) == [(1, 1), (2, 1), (3, 1), (4, 1)]
        with link.cond:
            assert len(link.posts) == 3
        bodies = [body for body, _ in link.posts]
        # A job's lines travel before its result (its own FIFO, taken in order).
        assert first[0]["logs"][0]["line"] == "hello" and first[0]["results"][0]["id"] == 1
        assert [r["id"] for body in bodies for r in body["results"]] == [1, 2, 3]
        first[1]({"rejected": []}, None)  # acks may come in any order; the window reopens
        fourth = link.wait_posts(4)[3]
        assert [r["id"] for r in fourth[0]["results"]] == [4]
        for _body, done in link.posts[1:]:
            done({}, None)
        assert reporter.flush(WAIT)
        assert reporter.results_pending == 0 and reporter.unacked() == [] and reporter.idle()
        assert sorted(r["id"] for batch in acked for r in batch) == [1, 2, 3, 4]
    finally:
        reporter.close(WAIT)


def test_a_refused_report_is_dropped_and_a_hard_stop_ends_the_reporter() -> None:
    link = HeldLink(window=2)
    reporter = Reporter(lambda: link)
    reporter.start()
    try:
        reporter.result(_result(1))
        link.wait_posts(1)[0][1](None, errors.APIError("bad report", status=400))
        assert reporter.flush(WAIT)  # refused whole: never re-sent, nothing blocks behind it
        assert reporter.results_pending == 0
        reporter.result(_result(2))
        reporter.result(_result(3))
        posts = link.wait_posts(2)
        posts[1][1](None, errors.ConnectionFailed("stopping"))
        assert reporter.flush(WAIT)  # a hard stop: what was queued is given up
        assert reporter.idle() and reporter.results_pending == 0
        reporter.result(_result(4))  # nothing more is sent once stopped
        reporter.close(WAIT)
        with link.cond:
            assert len(link.posts) == 2
    finally:
        reporter.close(WAIT)


def test_a_report_refused_by_a_master_that_no_longer_leads_is_sent_again() -> None:
    # A failover with the report in flight: nothing of it was applied. Dropped (as a refusal
    # is), its results were lost, and the new leader ran their attempts a second time.
    link = HeldLink(window=2)
    acked: list[list[dict[str, Any]]] = []
    reporter = Reporter(lambda: link, on_acked=lambda results, rejected: acked.append(results))
    reporter.start()
    try:
        reporter.log(_line(1, "done"))
        reporter.result(_result(1))
        first = link.wait_posts(1)[0]
        first[1](None, errors.NotLeader("no longer leads", details={"leader": None}))
        again = link.wait_posts(2)[1]
        assert again[0]["logs"] == first[0]["logs"] and again[0]["results"] == first[0]["results"]
        assert reporter.results_pending == 1 and reporter.unacked() == [(1, 1)]
        again[1]({"rejected": []}, None)
        assert reporter.flush(WAIT) and reporter.results_pending == 0
        assert acked == [[_result(1)]]
    finally:
        reporter.close(WAIT)


def test_a_report_whose_statement_the_database_cancelled_is_sent_again() -> None:
    # 503 statement_cancelled (PostgreSQL's statement_timeout): nothing of the report was
    # applied. Over HTTP the worker asks again (a 503); over its channel the error frame was
    # taken for a 4xx and the report dropped: its result was lost, acknowledged to the worker
    # as if the master had it. Kept and sent again now, as HTTP does.
    link = HeldLink(window=2)
    acked: list[list[dict[str, Any]]] = []
    reporter = Reporter(lambda: link, on_acked=lambda results, rejected: acked.append(results))
    reporter.start()
    try:
        reporter.log(_line(1, "done"))
        reporter.result(_result(1))
        first = link.wait_posts(1)[0]
        refusal = errors.from_response(503, {"error": {
            "code": "statement_cancelled", "message": "canceling statement due to statement "
            "timeout", "details": {}}})
        assert isinstance(refusal, errors.StatementCancelled)
        first[1](None, refusal)
        assert acked == []  # not taken for acknowledged
        again = link.wait_posts(2)[1]
        assert again[0]["logs"] == first[0]["logs"] and again[0]["results"] == first[0]["results"]
        assert reporter.results_pending == 1 and reporter.unacked() == [(1, 1)]
        again[1]({"rejected": []}, None)
        assert reporter.flush(WAIT) and reporter.results_pending == 0
        assert acked == [[_result(1)]]
    finally:
        reporter.close(WAIT)


def test_over_http_one_report_is_in_flight_at_a_time() -> None:
    in_send = threading.Event()
    release = threading.Event()
    sent: list[dict[str, Any]] = []

    def send(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        in_send.set()
        assert release.wait(WAIT)
        return {"rejected": []}

    reporter = Reporter(lambda: SyncLink(send))
    reporter.start()
    try:
        reporter.result(_result(1))
        assert in_send.wait(WAIT)
        reporter.result(_result(2))
        reporter.result(_result(3))
        assert len(sent) == 1  # the rest waits for the answer, then goes as one batch
        release.set()
        assert reporter.flush(WAIT)
        assert [[r["id"] for r in body["results"]] for body in sent] == [[1], [2, 3]]
    finally:
        release.set()
        reporter.close(WAIT)


def test_the_channel_sends_an_unanswered_report_again_first_thing_on_reconnect() -> None:
    """Against a scripted master over a real WebSocket: the first connection drops with a
    report unanswered; the next one gets the hello, then that report (same id), then the
    one posted meanwhile, and the acks end both posts; a report posted after the master's
    welcome carries the slot its result freed."""
    from websockets.sync.server import ServerConnection, serve

    from titan.worker.channel import ChannelIntake

    seen: list[list[dict[str, Any]]] = []

    def master(ws: ServerConnection) -> None:
        frames = [json.loads(ws.recv(timeout=WAIT))]
        if not seen:  # the first connection: take the report, hang up without an ack
            frames.append(json.loads(ws.recv(timeout=WAIT)))
            seen.append(frames)
            return
        ws.send(json.dumps({"t": "welcome", "credit_in_reports": True}))
        frames += [json.loads(ws.recv(timeout=WAIT)) for _ in range(2)]
        for frame in frames[1:]:
            ws.send(json.dumps({"t": "ack", "id": frame["id"], "rejected": []}))
        frames.append(json.loads(ws.recv(timeout=WAIT)))  # posted once those were answered
        seen.append(frames)
        ws.send(json.dumps({"t": "ack", "id": frames[-1]["id"], "rejected": []}))
        ws.recv()  # until the worker goes

    stopped, hard = threading.Event(), threading.Event()
    with serve(master, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        intake = ChannelIntake(
            url=f"ws://127.0.0.1:{server.socket.getsockname()[1]}/", headers=dict, slots=2,
            supervisor=None,  # type: ignore[arg-type]  # no job is pushed here
            held=list, stopped=stopped, hard=hard, reattach=lambda: None,
            on_error=lambda exc: None)
        intake.connect_first()
        answers: list[tuple[int, dict[str, Any] | None, BaseException | None]] = []
        both = threading.Event()

        def done(n: int) -> Done:
            def call(reply: dict[str, Any] | None, exc: BaseException | None) -> None:
                answers.append((n, reply, exc))
                if len(answers) >= 2:
                    both.set()
            return call

        intake.post({"logs": [], "results": [_result(1)]}, done(1))
        intake.start()  # reads until the drop, then reconnects with backoff
        intake.post({"logs": [], "results": [_result(2)]}, done(2))
        assert both.wait(WAIT), (answers, seen)
        both.clear()
        intake.post({"logs": [], "results": [_result(3)]}, done(3))
        assert both.wait(WAIT) and len(answers) == 3, (answers, seen)
        stopped.set()
        hard.set()
        intake.wake()
    first, second = seen
    assert [f["t"] for f in first] == ["hello", "report"]
    assert [f["t"] for f in second] == ["hello", "report", "report", "report"]
    assert second[1] == first[1]  # the very frame, id included: the master deduplicates it
    assert [f["results"][0]["id"] for f in second[1:]] == [1, 2, 3]
    # Re-sent and held-back reports carry no credit (the hello counted those slots); a report
    # first sent to a master that takes credit in reports returns the slot its result freed.
    assert [f.get("credit") for f in second[1:]] == [None, None, 1]
    assert sorted((n, exc) for n, _reply, exc in answers) == [(1, None), (2, None), (3, None)]


def test_a_job_flooding_its_output_does_not_hold_back_another_jobs_result() -> None:
    # Lines and results shared one FIFO: a trivial job behind another's 210 MB of output
    # took 11.5 s instead of 0.3. Each attempt has its own FIFO now, taken from in turn.
    link = HeldLink(window=1)
    reporter = Reporter(lambda: link)
    for i in range(20_000):
        reporter.log(_line(1, f"flood {i}"))
    reporter.log(_line(2, "quick"))
    reporter.result(_result(2))
    reporter.start()
    try:
        body, done = link.wait_posts(1)[0]
        assert [r["id"] for r in body["results"]] == [2]
        lines = [(e["id"], e["line"]) for e in body["logs"]]
        assert (2, "quick") in lines
        flood = [text for job, text in lines if job == 1]
        assert flood == [f"flood {i}" for i in range(len(flood))]  # in order, from the start
        done({}, None)
        seen = list(flood)
        while len(seen) < 20_000:  # the rest of the flood follows, in order, whole
            posts = link.wait_posts(1 + len(link.posts))
            body, done = posts[-1]
            seen += [e["line"] for e in body["logs"]]
            done({}, None)
        assert seen == [f"flood {i}" for i in range(20_000)]
        assert reporter.flush(WAIT)
    finally:
        reporter.close(WAIT)


def test_an_attempt_holding_its_buffer_is_paused_until_the_master_takes_most_of_it() -> None:
    # The backlog grew without bound while the master was away: a job printing gigabytes
    # took the worker's memory. Past its buffer an attempt is told to pause (the worker stops
    # reading its pipes); it goes on once a quarter of the buffer is left. Others go on.
    link = HeldLink(window=1)
    told: list[tuple[Any, bool]] = []
    line = "x" * (1000 - ENTRY_OVERHEAD)  # 1,000 bytes held per line
    reporter = Reporter(lambda: link, on_pressure=lambda key, paused: told.append((key, paused)),
                        buffer=10_000)
    for _ in range(10):
        reporter.log(_line(1, line))
    assert told == []  # at the limit, not past it
    reporter.log(_line(1, line))
    reporter.log(_line(1, line))  # told once, however many more come
    reporter.log(_line(2, "quiet"))
    assert told == [((1, 1), True)]
    reporter.start()
    try:
        body, done = link.wait_posts(1)[0]
        assert len(body["logs"]) == 13
        assert told == [((1, 1), True)]  # in flight is still held
        done({}, None)
        assert reporter.flush(WAIT)
        assert told == [((1, 1), True), ((1, 1), False)]
        for _ in range(11):  # held again past the limit: told again
            reporter.log(_line(1, line))
        assert told[-1] == ((1, 1), True)
        posts = link.wait_posts(2)
        posts[1][1](None, errors.ConnectionFailed("stopping"))  # a hard stop lets all go
        assert reporter.flush(WAIT)
        assert told[-1] == ((1, 1), False)
    finally:
        reporter.close(WAIT)


def test_the_output_buffer_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OUTPUT_BUFFER_ENV, raising=False)
    assert output_buffer() == 16 << 20
    monkeypatch.setenv(OUTPUT_BUFFER_ENV, "2.5")
    assert output_buffer() == int(2.5 * (1 << 20))
    for bad in ("0", "lots", "nan", "-4"):
        monkeypatch.setenv(OUTPUT_BUFFER_ENV, bad)
        with pytest.raises(errors.ConfigError, match=OUTPUT_BUFFER_ENV) as caught:
            output_buffer()
        # Its bounds in full: the highest was "1.04858e+06".
        assert ", 1 to 1048576 (got " in str(caught.value), caught.value


def test_a_batch_and_the_buffer_count_bytes_not_characters() -> None:
    # A line of emoji was counted as a quarter of its size: batches of "2 MiB" were frames of
    # 24 MB (each emoji escaped to 12 bytes), past the master's limit, sent again for ever.
    assert line_bytes("abc") == 3 and line_bytes("é") == 2 and line_bytes("\U0001F600") == 4
    link = HeldLink(window=1)
    reporter = Reporter(lambda: link)
    line = "\U0001F600" * 100_000  # 400 kB of UTF-8 each
    for _ in range(12):
        reporter.log(_line(1, line))
    reporter.start()
    try:
        body, done = link.wait_posts(1)[0]
        assert len(body["logs"]) == 6  # 2 MiB of bytes, not 2 Mi characters
        frame = report_frame({"t": "report", "id": 1, **body})
        assert len(frame.encode()) < 3 << 20 and "\\ud83d" not in frame
        done({}, None)
        body, done = link.wait_posts(2)[1]
        assert len(body["logs"]) == 6
        done({}, None)
        assert reporter.flush(WAIT)
    finally:
        reporter.close(WAIT)


def test_a_frame_with_a_lone_surrogate_is_still_sent() -> None:
    # An exception's text may carry one (a file name undecodable as UTF-8): escaped then.
    frame = report_frame({"t": "report", "logs": [{"line": "bad \udcff name"}]})
    assert json.loads(frame)["logs"][0]["line"] == "bad \udcff name"
    assert frame.isascii()
