"""titan.trace's pure parts: canonical JSON, names, action validation, recording offline."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time

import pytest

import titan
from titan.errors import ValidationFailed
from titan.master.runs.ingest import parse_actions, parse_run, payload
from titan.trace import canonical, context, runs
from titan.trace.batches import encode
from titan.trace.naming import DRIVER_ACTOR, agent_of_run, job_actor, stage_label
from titan.trace.recorder import RECORDER


def test_canonical_json_is_one_spelling_per_value() -> None:
    assert canonical.dumps({"b": 1, "a": [1, 2.5, "é"]}) == '{"a":[1,2.5,"é"],"b":1}'
    assert canonical.dumps({"a": 1, "b": 2}) == canonical.dumps({"b": 2, "a": 1})
    assert canonical.digest(canonical.dumps({"x": 1})) == canonical.digest('{"x":1}')


def test_canonical_json_takes_what_plain_json_cannot() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    assert json.loads(canonical.dumps(Point(1, 2))) == {"x": 1, "y": 2}
    assert json.loads(canonical.dumps({"s": {3, 1, 2}})) == {"s": [1, 2, 3]}
    assert json.loads(canonical.dumps(b"ab")) == {"$bytes": "YWI="}
    assert json.loads(canonical.dumps({"f": math.nan})) == {"f": "nan"}
    assert json.loads(canonical.dumps(object)) == "<class 'object'>"
    # Keys json cannot sort or spell, and a value holding itself, are still recorded (the
    # call being recorded must not fail for it).
    assert json.loads(canonical.dumps({1: "a", "b": 2})) == {"1": "a", "b": 2}
    assert json.loads(canonical.dumps({(1, 2): "x", None: 1})) == {"(1, 2)": "x", "null": 1}
    loop: list = [1]
    loop.append(loop)
    assert json.loads(canonical.dumps({"v": loop})) == {"v": [1, "<cycle: list>"]}


@dataclasses.dataclass
class _Node:
    name: str
    parent: _Node | None = None
    children: list[_Node] = dataclasses.field(default_factory=list)


class _Raises:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def isoformat(self) -> str:
        raise ValueError("no date")


def test_a_value_that_cannot_be_encoded_gets_a_stand_in_and_the_tool_still_returns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A tree node pointing at its parent, a chain 3,000 deep, a repr that raises: the tool
    # ran (its side effects happened), then the caller got RecursionError or the repr's
    # exception instead of the result, and nothing was recorded (QA).
    root = _Node("root")
    root.children.append(_Node("child", parent=root))
    assert json.loads(canonical.dumps(root)) == {
        "name": "root", "parent": None,
        "children": [{"name": "child", "parent": "<cycle: _Node>", "children": []}]}
    chain = None
    for i in range(3000):
        chain = _Node(str(i), parent=chain)
    text = canonical.dumps(chain)
    assert text.count("{") == canonical.MAX_DEPTH and "<cut: nested deeper than 61" in text
    assert json.loads(canonical.dumps({"v": [_Raises()]})) == {
        "v": ["<_Raises: not recordable (ValueError)>"]}

    queued: list[tuple] = []
    monkeypatch.setattr(RECORDER, "put", lambda kind, run, item: queued.append(item))

    @titan.tool
    def charge(node: _Node) -> dict:
        return {"ok": True, "node": node, "odd": _Raises()}

    token = context.enter_run(context.RunHandle("r-odd", "agent"))
    try:
        assert charge(root)["ok"] is True
        assert charge(chain)["ok"] is True
    finally:
        context.leave_run(token)
    assert len(queued) == 2
    for _meta, inputs, outputs, _cost in queued:
        json.loads(inputs), json.loads(outputs)


def test_integers_past_64_bits_and_deep_values_become_what_the_master_takes() -> None:
    # 25!, a uuid's int, a JSON AST 80 deep: the master refused the whole action (QA).
    from titan.master.api.body import MAX_DEPTH, loads

    assert canonical.MAX_DEPTH == MAX_DEPTH - 3  # {"actions": [{"inputs": ...}]}
    assert canonical.dumps(math.factorial(25)) == '"15511210043330985984000000"'
    assert canonical.dumps([2**63 - 1, -(2**63), 2**63, -(2**63) - 1]) == (
        '[9223372036854775807,-9223372036854775808,"9223372036854775808",'
        '"-9223372036854775809"]')
    assert canonical.dumps({"s": "12345678901234567890123", 2**70: 1}) == (
        '{"1180591620717411303424":1,"s":"12345678901234567890123"}')
    assert canonical.dumps(10**5000) == '"<int of 16610 bits>"'
    # A float's digits are not an integer's: 20 after its point were quoted inside the number
    # (0."000234..."), and the master refused the batch with every action in it (a QA pass).
    floats = {"took": 0.00023436546325683594, "tiny": 1.2345678901234566e-25,
              "big": 123456789012345678901.5, "n": [-0.00012345678901234567, 2**64]}
    assert json.loads(canonical.dumps(floats)) == dict(floats, n=[floats["n"][0], str(2**64)])
    assert loads(canonical.dumps(floats).encode()) is not None  # what the master parses

    def nested(depth: int, filler: str = "") -> dict:
        top = cur = {}
        for _ in range(depth - 1):
            cur["child"] = {"s": filler}
            cur = cur["child"]
        return top

    fits = canonical.dumps(nested(61))
    assert "<cut" not in fits and fits.count("{") == 61
    # Brackets and escaped quotes in strings neither deepen nor hide the nesting.
    assert "<cut" not in canonical.dumps(nested(61, filler='[[{\\"[{'))
    assert "<cut" in canonical.dumps(nested(62, filler=']}\\"]'))
    for value in (nested(80), math.factorial(25), [nested(70, "]")]):
        meta = {"id": "a1", "name": "parse", "started_at": time.time(), "ordinal": 0}
        body = '{"actions":[' + encode(meta, canonical.dumps(value), canonical.dumps(value)) + "]}"
        assert len(parse_actions(loads(body.encode()))) == 1


def test_an_exception_whose_str_fails_is_recorded_as_itself() -> None:
    from titan.trace.emit import _said

    class Odd(Exception):
        def __str__(self) -> str:
            raise ValueError("no")

    assert _said(Odd()) == "<Odd: its str() raised ValueError>"


@pytest.mark.parametrize(("dag", "run", "label"), [
    ("RESEARCH_1a9ac3_PLAN", "RESEARCH_1a9ac3", "PLAN"),
    ("RESEARCH_1a9ac3-ITER2", "RESEARCH_1a9ac3", "ITER2"),
    ("OTHER", "RESEARCH_1a9ac3", "OTHER"),
    ("R1__DOUBLE", "R1", "DOUBLE"),
    ("lab-1.ITER1", "lab-1", "ITER1"),  # a dot separates as _ and - do
    ("lab-1 SYNTH", "lab-1", "SYNTH"),
    ("R10_X", "R1", "R10_X"),  # another run's stage, not R1's "0_X"
    ("RESEARCH_1a9ac3_ITER1", "1a9ac3", "ITER1"),  # seed 000: "run 1a9ac3"
    ("RESEARCH_R10_X", "R1", "RESEARCH_R10_X"), ("XR1_Y", "R1", "XR1_Y"),
    ("R10_R1_X", "R1", "X"),
    ("R1", "R1", "R1"),
    ("R1_", "R1", "R1_"),
])
def test_stage_labels_drop_the_run_id(dag: str, run: str, label: str) -> None:
    assert stage_label(dag, run) == label


@pytest.mark.parametrize(("run", "agent"), [
    ("RESEARCH_1a9ac3", "RESEARCH"), ("support-bot-17", "support-bot"),
    ("planner:deadbeef", "planner"), ("solo", "solo"), ("x_ab", "x_ab"),
    # A schedule's fires ("nightly-{tick}") are runs of one agent, not each its own.
    ("nightly-20260302T050000Z", "nightly"), ("etl_20260302T0500", "etl"),
    ("report-20260302", "report"), ("v-2026T05", "v-2026T05"),
])
def test_a_runs_agent_is_its_id_without_a_random_tail(run: str, agent: str) -> None:
    assert agent_of_run(run) == agent


def test_a_jobs_actor_is_stage_and_job() -> None:
    assert job_actor("R_abcdef_ITER1", "researcher-1-0", "R_abcdef") == "ITER1/researcher-1-0"


def action(**over: object) -> dict:
    return {"id": "a-1", "name": "call_llm", "started_at": time.time(), **over}


def test_a_valid_action_gets_its_defaults() -> None:
    [a] = parse_actions({"actions": [action()]})
    assert (a["actor"], a["channel"], a["outcome"], a["inputs"], a["outputs"]) == (
        "main", "custom", "success", {}, None)
    [e] = parse_actions({"actions": [action(error="boom")]})
    assert (e["outcome"], e["error_type"], e["error_message"]) == ("error", "Error", "boom")


@pytest.mark.parametrize(("bad", "field"), [
    ({"name": None}, "name"), ({"nmae": "x"}, "nmae"), ({"outcome": "fine"}, "outcome"),
    ({"cost_usd": -1}, "cost_usd"), ({"usage": {"tokens": 3}}, "usage.tokens"),
    ({"started_at": "now"}, "started_at"), ({"started_at": 5}, "started_at"),
    ({"channel": "web"}, "channel"), ({"duration_ns": 1.5}, "duration_ns"),
    ({"id": "has space"}, "id"), ({"tags": 3}, "tags"), ({"ordinal": -1}, "ordinal"),
    ({"ordinal": 2**31}, "ordinal"), ({"usage": {"input_tokens": 10**15 + 1}}, "usage.input_tokens"),
    ({"error": {"type": "E", "message": "m", "stack": "..."}}, "error.stack"),
    # A plain string error is checked as {"message"} is: PostgreSQL failed the batch with a
    # 500 on NUL, SQLite cut the message there, and 2,000,000 characters were kept.
    ({"error": "bad\x00tail"}, "error"), ({"error": "E" * 100_001}, "error"),
])
def test_a_bad_action_rejects_the_batch_naming_index_and_field(bad: dict, field: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_actions({"actions": [action(id="ok-1"), action(**{"id": "bad-2", **bad})]})
    errors = info.value.details["errors"]
    assert errors[0]["index"] == 1 and errors[0]["field"] == field
    assert f"actions[1].{field}" in str(info.value)


def test_a_refused_action_is_named_by_its_name_and_ordinal() -> None:
    # "actions[3].outputs" (a position in the SDK's batch) was all the agent's stderr said.
    from titan.master.api.body import loads

    with pytest.raises(ValidationFailed) as info:
        parse_actions({"actions": [action(), action(id="b", name="search", ordinal=2,
                                                    usage={"tokens": 3})]})
    assert 'actions[1].usage.tokens (the action "search", ordinal 2): unknown' in str(info.value)
    body = json.dumps({"actions": [action(), action(id="b", name="fact", ordinal=0,
                                                    outputs=2**70)]})
    with pytest.raises(ValidationFailed) as info:
        loads(body.encode())
    assert 'actions[1].outputs (the action "fact", ordinal 0): is an integer' in str(info.value)
    assert info.value.details["field"] == "actions[1].outputs"  # what the SDK reads back


@pytest.mark.parametrize("body", [None, [], {"actions": []}, {"actions": {}},
                                  {"actions": [action()] * 10_001}])
def test_a_batch_must_be_a_non_empty_bounded_list(body: object) -> None:
    with pytest.raises(ValidationFailed):
        parse_actions(body)


def test_duplicate_ids_in_one_batch_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="appears twice"):
        parse_actions({"actions": [action(), action()]})


def test_run_bodies_are_checked() -> None:
    assert parse_run({"agent_id": "a", "budget_usd": 2}, creating=True) == {
        "agent_id": "a", "budget_usd": 2}
    with pytest.raises(ValidationFailed, match="status"):
        parse_run({"status": "done"}, creating=False)
    with pytest.raises(ValidationFailed, match="unknown field"):
        parse_run({"agent": "a"}, creating=True)


def test_large_payloads_keep_a_preview_and_go_to_the_blob_store() -> None:
    cols, data = payload({"text": "x" * 100_000}, 64 * 1024)
    assert cols["blob"] and data is not None and len(cols["text"]) == 2000
    assert cols["hash"] == canonical.digest(data.decode())
    cols, data = payload({"small": 1}, 64 * 1024)
    assert not cols["blob"] and data is None and cols["text"] == '{"small":1}'


def test_outside_a_run_nothing_is_recorded_and_code_runs() -> None:
    before = len(RECORDER.queue)

    @titan.tool
    def double(x: int) -> int:
        return 2 * x

    with titan.trace.action("step", inputs={"a": 1}) as a:
        a.outputs = double(4)
    assert a.outputs == 8 and len(RECORDER.queue) == before
    assert titan.trace.current_run_id() is None
    with pytest.raises(ZeroDivisionError):
        with titan.trace.action("fails"):
            raise ZeroDivisionError


def test_a_replayed_driver_runs_outside_any_run_until_its_first_stage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An orchestrator driving stages from outside drew its run id with titan.trace.uuid()
    and called a tool before its first stage, outside any run: nothing was recorded. Its
    replay, in a job of the replay's run, must not look them up in the recording (strict
    mode stopped at an 'extra' call, a QA pass): they run as they ran. A tool that runs live
    is recorded in the replay's run as what it is — unrecorded, live, outside the run — so
    the replay never reads as free (its clock and random values reach nothing: not
    recorded). From its first stage on, its calls are the run's, as the original's were
    (DRIVER/driver)."""
    monkeypatch.setenv("TITAN_AGENT_RUN_ID", "RESEARCH_1a9ac3-replay-0f0f0f")
    monkeypatch.setenv("TITAN_DAG", "RESEARCH_1a9ac3-replay-0f0f0f_DRIVER")
    monkeypatch.setenv("TITAN_JOB_ID", "driver")
    monkeypatch.setenv("TITAN_REPLAY", json.dumps({"of": "RESEARCH_1a9ac3"}))
    monkeypatch.setattr(context, "_replayed_driver", True)
    monkeypatch.setattr(context, "_replay_driving", False)
    monkeypatch.setattr(context, "_env_run", None)
    monkeypatch.setattr(context, "_outside", None)
    calls: list[int] = []

    @titan.tool
    def search(x: int) -> int:
        calls.append(x)
        return x

    before = len(RECORDER.queue)
    ids = {titan.trace.uuid() for _ in range(3)}
    assert len(ids) == 3 and isinstance(titan.trace.now(), float)
    assert len(RECORDER.queue) == before
    assert search(1) == 1 and calls == [1]  # live: the recording was not asked
    (kind, handle, (meta, *_)), = list(RECORDER.queue)[before:]
    assert (kind, handle.id, handle.outside) == ("action", "RESEARCH_1a9ac3-replay-0f0f0f", True)
    assert (meta["name"], meta["replay_status"], meta["actor"]) == (
        "search", "unrecorded", f"DRIVER/driver/outside-run-{os.getpid()}")
    assert context.current_run() is None and context.outside_replayed_run()
    with titan.trace.run("RESEARCH", run_id="opened") as run:
        assert context.current_run() is run.handle and not context.outside_replayed_run()
    context.replayed_driver_drives()  # its first stage was submitted
    found = context.current_run()
    assert found is not None and found.id == "RESEARCH_1a9ac3-replay-0f0f0f"
    assert context.current_actor(found) == DRIVER_ACTOR == "DRIVER/driver"
    assert not context.outside_replayed_run()


@pytest.mark.parametrize(("value", "ends"), [
    ("false", False), ("OFF", False), ("no", False), (" 0 ", False),
    ("true", True), ("on", True), ("", True), ("maybe", True)])
def test_trace_driver_is_read_as_a_switch(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture, value: str,
                                          ends: bool) -> None:
    """TITAN_TRACE_DRIVER takes the words every Titan switch takes: `false` or `off` was taken
    for on (only "0" turned it off), so the run a user meant to resume ended when the driving
    process exited. Another word is said on the log and the default (on) used: the setting
    is read inside the user's program, which it must not stop (a docs walkthrough)."""
    monkeypatch.delenv("TITAN_AGENT_RUN_ID", raising=False)
    monkeypatch.setattr(context, "_driven", None)
    monkeypatch.setattr(runs, "_driving", {})
    monkeypatch.setattr(RECORDER, "driven", {})
    monkeypatch.setattr(RECORDER, "ensure_started", lambda: None)
    monkeypatch.setattr(RECORDER, "beat", lambda handles: None)
    monkeypatch.setattr(runs, "_watch_uncaught", lambda: None)
    monkeypatch.setenv("TITAN_TRACE_DRIVER", value)
    with caplog.at_level(logging.WARNING, logger="titan.trace"):
        runs.drive("R-switch")
    assert ("R-switch" in RECORDER.driven) is ends
    said = [r.getMessage() for r in caplog.records if "TITAN_TRACE_DRIVER" in r.getMessage()]
    assert said == (["TITAN_TRACE_DRIVER='maybe' is not one of 1, true, yes, on (on) or 0, "
                     "false, no, off (off): using on"] if value == "maybe" else [])


def test_a_driving_process_records_its_own_calls_in_the_run_it_drove_last(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver's @titan.tool calls once it drives a run are the run's, made by the actor
    its replay's DRIVER job has: the replay matches them there (they were left out, and the
    replay found them extra, a QA pass)."""
    monkeypatch.delenv("TITAN_AGENT_RUN_ID", raising=False)
    monkeypatch.setattr(context, "_replayed_driver", False)
    monkeypatch.setattr(context, "_driven", None)
    queued: list[tuple[str, tuple]] = []
    monkeypatch.setattr(RECORDER, "put", lambda kind, run, item: queued.append((run.id, item)))

    @titan.tool
    def search(q: str) -> str:
        return q.upper()

    assert search("before") == "BEFORE" and not queued  # its run is not known yet
    # Left to end by another (no network here): its calls are the run's all the same.
    monkeypatch.setenv("TITAN_TRACE_DRIVER", "0")
    monkeypatch.setattr(runs, "_driving", {})
    runs.drive("R1")
    assert search("a") == "A"
    runs.drive("R2")
    assert search("b") == "B" and titan.trace.current_run_id() == "R2"
    runs.drive("R1")  # back to R1: its calls go on numbering where they were
    assert search("c") == "C"
    assert [(run_id, meta["actor"], meta["ordinal"]) for run_id, (meta, *_) in queued] == [
        ("R1", "DRIVER/driver", 0), ("R2", "DRIVER/driver", 0), ("R1", "DRIVER/driver", 1)]
    assert "R1" not in RECORDER.driven  # TITAN_TRACE_DRIVER=0: not ended at its exit
    first = context.current_run()
    assert first is not None
    # Its sub-agents nest below it, as in its replay's DRIVER job.
    with context.actor("critic"):
        assert context.current_actor(first) == "DRIVER/driver/critic"


def test_ordinals_count_per_actor_channel_and_name() -> None:
    run = context.RunHandle(id="r")
    assert [run.next_ordinal("a", "tool", "t") for _ in range(3)] == [0, 1, 2]
    assert run.next_ordinal("b", "tool", "t") == 0
    assert run.next_ordinal("a", "llm", "t") == 0


def test_encoding_splices_canonical_payloads_into_valid_json() -> None:
    text = encode({"id": "x", "name": "n"}, '{"a":1}', None)
    assert json.loads(text) == {"id": "x", "name": "n", "inputs": {"a": 1}, "outputs": None}


def test_action_ids_are_unique() -> None:
    ids = {context.new_action_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_a_batch_too_large_for_the_master_is_split_and_only_what_cannot_fit_is_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from titan import errors
    from titan.trace.recorder import Recorder

    got: list[int] = []

    class Master:  # refuses a body past 1,000 bytes, as the master's limit would (413)
        def send(self, method: str, path: str, body: bytes, headers: dict) -> object:
            if len(body) > 1000:
                raise errors.PayloadTooLarge("too large")
            got.extend(a["n"] for a in json.loads(body)["actions"])

            class Reply:
                def json(self) -> dict:
                    return {"accepted": 1}
            return Reply()

    rec = Recorder()
    monkeypatch.setattr(rec, "client", lambda run: Master())
    run = context.RunHandle("r1", "agent")
    small = [json.dumps({"n": i}) for i in range(5)]
    huge = json.dumps({"n": 99, "blob": "x" * 5000})
    assert rec._post_actions(run, [*small[:2], huge, *small[2:]]) is not None
    assert sorted(got) == [0, 1, 2, 3, 4] and rec.refused == 1
    assert "refused an action of run r1 as too large" in capsys.readouterr().err


def test_a_generator_tool_is_refused_when_decorated() -> None:
    # Its items come after the call returns: nothing of them could be recorded or replayed.
    with pytest.raises(TypeError, match="generator function 'gen'"):
        @titan.tool
        def gen(n: int):  # type: ignore[no-untyped-def]
            yield from range(n)
    with pytest.raises(TypeError, match="generator function 'agen'"):
        @titan.tool(name="agen")
        async def stream(n: int):  # type: ignore[no-untyped-def]
            yield n


@pytest.mark.parametrize("kind", [classmethod, staticmethod])
def test_a_tool_above_classmethod_or_staticmethod_is_refused_when_decorated(
        kind: type) -> None:
    # Above it, the tool wrapped the descriptor: every call of the method failed (QA).
    with pytest.raises(TypeError, match=rf"put @titan.tool below @{kind.__name__}"):
        class Tools:
            @titan.tool  # type: ignore[misc]
            @kind
            def search(*args: str) -> str:
                return args[-1]

    class Fine:
        @kind  # type: ignore[misc]
        @titan.tool
        def search(*args: str) -> str:
            return args[-1]

    assert Fine.search("q") == "q" and Fine().search("q") == "q"


def test_threads_and_pool_tasks_started_in_a_run_record_into_it() -> None:
    import concurrent.futures
    import threading

    import titan.trace  # noqa: F401 - installs the thread hooks

    def where() -> tuple[str | None, str | None]:
        run = context.current_run()
        return (run.id if run else None), (context.current_actor(run) if run else None)

    seen: list[tuple[str | None, str | None]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        token = context.enter_run(context.RunHandle("threaded", "agent"))
        try:
            with context.actor("critic"):
                t = threading.Thread(target=lambda: seen.append(where()))
                t.start()
                t.join()
                assert pool.submit(where).result() == ("threaded", "main/critic")
        finally:
            context.leave_run(token)
        assert seen == [("threaded", "main/critic")]
        # The pool's thread, reused outside the run, is outside it too.
        assert pool.submit(where).result() == (None, None)
    t = threading.Thread(target=lambda: seen.append(where()))
    t.start()
    t.join()
    assert seen[-1] == (None, None)


def test_an_object_is_recorded_without_its_memory_address() -> None:
    # "<Obj object at 0x7f...>" differed on every run: a replay read the value as changed.
    from titan.trace.canonical import dumps

    class Obj:
        pass

    a, b = dumps({"o": Obj()}), dumps({"o": Obj()})
    assert a == b and "0x" not in a and "Obj object>" in a


@pytest.mark.parametrize(("raw", "interval"), [("", 0.2), ("abc", 0.2), ("nan", 0.2),
                                               ("-1", 0.2), ("0.05", 0.05)])
def test_a_bad_trace_setting_falls_back_to_its_default(
        raw: str, interval: float, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # float("abc") stopped the user's program at its first run (QA): read inside it, a bad
    # setting is said on the log and the default used.
    from titan.trace.recorder import Recorder

    monkeypatch.setenv("TITAN_TRACE_FLUSH_INTERVAL", raw)
    with caplog.at_level("WARNING", logger="titan.trace"):
        assert Recorder().interval == interval
    assert ("TITAN_TRACE_FLUSH_INTERVAL" in caplog.text) == (raw not in ("", "0.05"))


def test_the_network_guard_of_a_replay_that_ended_lets_connections_through(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard stays installed for the process once a replay began in it; a process no
    # longer replaying (TITAN_REPLAY gone: a test that set it for a while) had every later
    # connection refused as a replay's leak — the unit suite's worker tests then failed.
    import socket

    from titan.trace import netguard, replay

    monkeypatch.setenv("TITAN_REPLAY", json.dumps({"of": "R_1"}))
    monkeypatch.setattr(replay, "_session", None)
    assert replay.active() is not None and netguard._installed
    monkeypatch.delenv("TITAN_REPLAY")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass  # refused with "replay of ?: ... not intercepted" before
