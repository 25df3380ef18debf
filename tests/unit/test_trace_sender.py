"""The recorder's sender (titan/trace/recorder.py, titan/trace/batches.py) against a master
that refuses, resets and stays silent: nothing it does may loop for ever, flood the program's
stderr or spin a core. The master here is an object answering as the real one does (its
refusal bodies are those of master/runs/ingest.py), so each case is exact and fast."""

from __future__ import annotations

import atexit
import json
import threading
import time
from typing import Any

import pytest

from titan import errors
from titan.trace import batches, context
from titan.trace.recorder import Recorder


class Reply:
    def json(self) -> dict[str, Any]:
        return {"accepted": 1}


class NamesOneAtATime:
    """A master that refuses, per request, the first action holding a value JSON refuses,
    naming it by its place (as it does for an integer past 64 bits)."""

    def __init__(self) -> None:
        self.requests = 0
        self.got: list[int] = []

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        self.requests += 1
        actions = json.loads(body)["actions"]
        for i, a in enumerate(actions):
            if a.get("bad"):
                raise errors.ValidationFailed("integer too large",
                                              details={"field": f"actions[{i}].inputs"})
        self.got.extend(a["n"] for a in actions)
        return Reply()


def test_a_batch_with_many_refused_actions_delivers_the_rest_in_bounded_requests(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Named one per answer, 1,000 bad actions recursed past Python's limit: the batch was
    # never taken off the queue, nothing more was ever sent, and stderr took tens of
    # thousands of lines.
    master = NamesOneAtATime()
    rec = Recorder()
    rec.client = lambda run=None: master  # type: ignore[method-assign]
    batch = [json.dumps({"n": i, "bad": i % 2 == 1}) for i in range(2400)]
    rec._post_actions(context.RunHandle("r1", "agent"), batch)
    assert sorted(master.got) == list(range(0, 2400, 2))
    assert rec.refused == 1200
    assert master.requests <= 4 + 2400  # a few whole tries, then each action once
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 5 and "further refusals are counted" in said[-1]


class ResetsLargeUploads:
    """A master with a small body limit: a large upload is cut off (the connection closed
    before the body was read), a small request answered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.got: list[int] = []

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        if len(body) > self.limit:
            raise errors.ConnectionFailed("the Titan master ... (WriteError: [Errno 104])")
        self.got.extend(a["n"] for a in json.loads(body)["actions"])
        return Reply()

    def call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "/health")
        return {"status": "ok"}


def test_an_upload_the_master_cuts_off_is_split_not_retried_for_ever(
        capsys: pytest.CaptureFixture[str]) -> None:
    master = ResetsLargeUploads(limit=3 << 20)
    rec = Recorder()
    rec.client = lambda run=None: master  # type: ignore[method-assign]
    big = [json.dumps({"n": i, "pad": "x" * (400 << 10)}) for i in range(12)]  # 4.8 MB
    huge = json.dumps({"n": 99, "pad": "y" * (4 << 20)})
    assert rec._post_actions(context.RunHandle("r1", "agent"), [*big, huge]) is not None
    assert sorted(master.got) == list(range(12)) and rec.refused == 1
    assert "as too large" in capsys.readouterr().err


def test_an_upload_that_fails_while_the_master_is_away_is_kept_for_a_retry() -> None:
    class Away(ResetsLargeUploads):
        def call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
            raise errors.ConnectionFailed("unreachable")

    rec = Recorder()
    rec.client = lambda run=None: Away(limit=0)  # type: ignore[method-assign]
    with pytest.raises(errors.ConnectionFailed):
        rec._post_actions(context.RunHandle("r1", "agent"),
                          [json.dumps({"n": 1, "pad": "x" * (2 << 20)})])
    assert rec.refused == 0


def test_an_action_larger_than_a_request_may_be_is_kept_with_its_payloads_noted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "MAX_ACTION_BYTES", 4 << 20)
    inputs = json.dumps({"text": "é" * (3 << 20)})
    text = batches.fitted({"id": "a1", "name": "read"}, inputs, '{"ok":true}')
    action = json.loads(text)
    assert action["id"] == "a1" and action["outputs"] == {"ok": True}
    noted = action["inputs"]["titan_payload_omitted"]
    assert noted["bytes"] == len(inputs.encode()) and len(noted["sha256"]) == 64
    small = batches.fitted({"id": "a2"}, '{"a":1}', None)
    assert json.loads(small)["inputs"] == {"a": 1}


def test_an_idle_sender_sleeps_even_with_a_flush_interval_of_zero(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # TITAN_TRACE_FLUSH_INTERVAL=0 (send at once) spun a core while nothing was queued.
    monkeypatch.setenv("TITAN_TRACE_FLUSH_INTERVAL", "0")
    rec = Recorder()
    turns = []
    send = rec._send_some

    def counted() -> bool:
        turns.append(1)
        return send()

    rec._send_some = counted  # type: ignore[method-assign]
    rec.ensure_started()
    atexit.unregister(rec.close)
    time.sleep(0.3)
    assert len(turns) <= 2, len(turns)


def test_actions_past_the_buffer_are_counted_and_flush_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import titan.trace.recorder as recorder

    monkeypatch.setattr(recorder, "MAX_BUFFER", 10)
    gate = threading.Event()

    class Slow:
        def send(self, *a: Any, **kw: Any) -> Reply:
            gate.wait(10)
            return Reply()

    rec = Recorder()
    rec.client = lambda run=None: Slow()  # type: ignore[method-assign]
    run = context.RunHandle("r1", "agent")
    for i in range(25):
        rec.put("action", run, ({"id": f"a{i}", "name": "t"}, "{}", None, 0.0))
    atexit.unregister(rec.close)
    assert rec.dropped >= 15 - batches.MAX_BATCH  # the newest went, never the oldest
    first = rec.queue[0][2][0]["id"] if rec.queue else None
    assert first in (None, "a0") or rec.in_flight
    gate.set()
    assert rec.flush(10) is False  # something recorded was not delivered


@pytest.mark.parametrize("name", ["x" * 201, "", "  ", "a\x00b", 7])
def test_an_action_name_the_master_would_refuse_is_refused_at_once(name: Any) -> None:
    # Refused at the master, the action was lost (a line on stderr) and its run ended
    # completed without it, its cost missing (a QA pass of the dashboard).
    import titan
    from titan.trace import actions

    with pytest.raises(ValueError, match="action's name"):
        actions.action(name)
    if name != "":  # a tool's empty name is no name: its function's is used
        with pytest.raises(ValueError, match="action's name"):
            titan.tool(name=name)(lambda: None)
    assert actions.action("x" * 200).name == "x" * 200


class Paced:
    """A master that takes each request after ``pause`` seconds (one a time, as a master
    busy with many runs answers), or refuses all while ``down``."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.down = False
        self.ended: list[str] = []

    def _take(self) -> None:
        if self.down:
            raise errors.ConnectionFailed("connection refused")
        time.sleep(self.pause)

    def send(self, *a: Any, **kw: Any) -> Reply:
        self._take()
        return Reply()

    def call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self._take()
        if method == "PATCH":
            self.ended.append(path.rsplit("/", 1)[-1])
        return {}


def recorded(rec: Recorder, runs: int) -> None:
    for i in range(runs):
        run = context.RunHandle(f"run-{i}", "agent")
        rec.put("create", run, {"id": run.id, "agent_id": "agent"})
        rec.put("action", run, ({"id": f"a{i}", "name": "t"}, "{}", None, 0.0))
        rec.put("patch", run, {"status": "completed"})
    atexit.unregister(rec.close)


def test_the_exit_waits_past_the_flush_timeout_while_the_master_takes_what_is_sent(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # 10 s at exit, however fast the master took them: a script that recorded 1,500 runs lost
    # 600 with the master up, and stderr said it could not be reached.
    monkeypatch.setenv("TITAN_TRACE_FLUSH_TIMEOUT", "0.5")
    master = Paced(0.01)
    rec = Recorder()
    rec.client = lambda run=None: master  # type: ignore[method-assign]
    recorded(rec, 60)  # 180 requests of 10 ms: ~2 s, four times the timeout
    rec.close()
    assert len(master.ended) == 60 and not rec.queue
    assert capsys.readouterr().err == ""


def test_the_exit_says_what_was_delivered_and_why_the_rest_was_not(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import titan.trace.recorder as recorder

    monkeypatch.setattr(recorder, "EXIT_CAP", 0.6)
    monkeypatch.setenv("TITAN_TRACE_FLUSH_TIMEOUT", "0.3")
    master = Paced(0.01)
    rec = Recorder()
    rec.client = lambda run=None: master  # type: ignore[method-assign]
    recorded(rec, 500)
    rec.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 600, err  # every lost id was 60 KB
    delivered = len(master.ended)
    assert 0 < delivered < 500
    assert f"{delivered} run end(s)" in err and "still taking them" in err, err
    assert "and " in err and " more)" in err and "could not be reached" not in err

    master.down = True  # unreachable: said so, and soon
    rec = Recorder()
    rec.client = lambda run=None: master  # type: ignore[method-assign]
    recorded(rec, 5)
    began = time.monotonic()
    rec.close()
    assert time.monotonic() - began < 0.3 + recorder.PROGRESS_WINDOW + 1.5
    err = capsys.readouterr().err
    assert "0 run end(s)" in err and "could not be reached (connection refused" in err, err
    assert "run-0, run-1, run-2 and 2 more" in err, err


class Older:
    """A master from before ``field``: it refuses a body holding it as an unknown field (or,
    ``field`` None, refuses every body for a field it does know)."""

    def __init__(self, field: str | None) -> None:
        self.field = field
        self.bodies: list[dict[str, Any]] = []

    def call(self, method: str, path: str, json: Any = None, **kw: Any) -> dict[str, Any]:
        self.bodies.append(json)
        if self.field is None or self.field in json:
            field = self.field or "error"
            raise errors.ValidationFailed(
                f"invalid run: {field}: unknown field",
                details={"errors": [{"index": None, "field": field,
                                     "message": "unknown field (known: ...)"}]})
        return {}


def test_a_run_is_opened_watched_and_again_plainly_for_a_master_without_watched() -> None:
    master = Older("watched")
    rec = Recorder()
    rec.client = lambda run=None: master  # type: ignore[method-assign]
    for i in range(2):
        run = context.RunHandle(f"r{i}", "agent")
        rec._send_change("create", run, {"id": run.id, "agent_id": "agent"})
    # Asked watched once, then plainly: both runs opened, no refusal counted.
    assert [b.get("watched") for b in master.bodies] == [True, None, None]
    assert rec.changes_refused == 0


def test_a_run_ends_for_a_master_without_without_stages() -> None:
    # A master from before "without_stages" refused it as unknown, and with it the block's
    # end: the run stayed running until the master called it crashed.
    master = Older("without_stages")
    rec = Recorder()
    rec.client = lambda run=None: master  # type: ignore[method-assign]
    end = {"status": "ended", "without_stages": "completed", "ended_at": 1.0}
    for i in range(2):
        rec._send_change("patch", context.RunHandle(f"r{i}", "agent"), dict(end))
    # Asked with the field once, then without it: both runs ended, nothing refused.
    assert master.bodies == [end, {"status": "ended", "ended_at": 1.0},
                             {"status": "ended", "ended_at": 1.0}]
    assert rec.changes_refused == 0

    # Another refusal of the end is still one, and is not asked again without the field.
    refusing = Older(None)
    rec = Recorder()
    rec.client = lambda run=None: refusing  # type: ignore[method-assign]
    rec._send_change("patch", context.RunHandle("r", "agent"), dict(end))
    assert refusing.bodies == [end] and rec.changes_refused == 1
    atexit.unregister(rec.close)


class Batching:
    """A master with ``POST /runs/batch`` (``route`` False: one from before it, a 404) that
    refuses the run named ``refuse`` (its create, whichever route it comes by)."""

    def __init__(self, route: bool, refuse: str = "") -> None:
        self.route, self.refuse = route, refuse
        self.requests: list[str] = []
        self.opened: list[str] = []

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        self.requests.append(path)
        if path != "/runs/batch":
            return Reply()
        if not self.route:
            raise errors.NotFound("no such route")
        ops = json.loads(body)["ops"]
        for i, op in enumerate(ops):
            if "create" in op and op["run"] == self.refuse:
                reply = {"applied": i, "results": [{}] * i, "error": {"index": i}}
                break
            if "create" in op:
                self.opened.append(op["run"])
        else:
            reply = {"applied": len(ops), "results": [{}] * len(ops)}

        class R:
            def json(self) -> dict[str, Any]:
                return reply
        return R()

    def call(self, method: str, path: str, json: Any = None, **kw: Any) -> dict[str, Any]:
        self.requests.append(path)
        if method == "POST" and path == "/runs":
            if json["id"] == self.refuse:
                raise errors.ValidationFailed("invalid run: agent_id: nope")
            self.opened.append(json["id"])
        return {}


@pytest.mark.parametrize("route", [True, False])
def test_many_runs_go_in_one_request_where_the_master_takes_them(
        route: bool, capsys: pytest.CaptureFixture[str]) -> None:
    master = Batching(route, refuse="run-3")
    rec = Recorder()
    rec.client = lambda run=None: master  # type: ignore[method-assign]
    recorded(rec, 10)
    rec.close()
    assert master.opened == [f"run-{i}" for i in range(10) if i != 3] and not rec.queue
    assert "the master refused to open run run-3" in capsys.readouterr().err
    if route:  # the batch up to the refusal, the refused create alone, then the rest
        assert master.requests == ["/runs/batch", "/runs", "/runs/batch"], master.requests
    else:  # a 404 once, then the per-run routes: three a run
        assert master.requests[0] == "/runs/batch" and len(master.requests) == 1 + 30
        assert master.requests.count("/runs/batch") == 1
