"""The comparison of a replay with its original, by key: every divergence kind and the
statuses that are not divergences (order, forks, strict stops, retried jobs)."""

from __future__ import annotations

import hashlib
from typing import Any

from titan.trace.compare import compare, json_diff

_seq = iter(range(1, 1 << 30))


def act(actor: str, name: str, ordinal: int = 0, *, channel: str = "tool", inputs: str = "i",
        outputs: str = "o", status: str | None = None, seq: int | None = None) -> dict[str, Any]:
    return {"seq": seq if seq is not None else next(_seq), "actor": actor, "channel": channel,
            "name": name, "ordinal": ordinal, "inputs_hash": inputs, "outputs_hash": outputs,
            "outcome": "replayed" if status == "served" else "success",
            "replay_status": status}


def statuses(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["key"][0], r["key"][2], r["status"]) for r in result["rows"]]


def test_parallel_actors_in_another_order_match() -> None:
    original = [act("ITER1/r0", "search", seq=1), act("ITER1/r1", "search", seq=2),
                act("ITER1/r0", "call_llm", channel="llm", seq=3),
                act("ITER1/r1", "call_llm", channel="llm", seq=4)]
    replay = [act("ITER1/r1", "search", status="served", seq=1),
              act("ITER1/r1", "call_llm", channel="llm", status="served", seq=2),
              act("ITER1/r0", "search", status="served", seq=3),
              act("ITER1/r0", "call_llm", channel="llm", status="served", seq=4)]
    result = compare(original, replay)
    assert result["divergences"] == [] and result["match_rate"] == 1.0
    assert result["matched"] == result["recorded"] == 4


def test_input_mismatch_extra_missing_and_leak() -> None:
    original = [act("A", "plan", seq=1), act("A", "search", seq=2), act("B", "write", seq=3)]
    replay = [act("A", "plan", inputs="changed", status="served", seq=1),
              act("A", "search", status="served", seq=2),
              act("A", "search", 1, status="refused", seq=3),
              act("A", "connect", channel="network", status="refused", seq=4)]
    result = compare(original, replay)
    assert statuses(result) == [("A", "plan", "input_mismatch"), ("A", "search", "match"),
                                ("B", "write", "missing"), ("A", "search", "extra"),
                                ("A", "connect", "leak")]
    assert result["matched"] == 1 and result["recorded"] == 3
    assert result["match_rate"] == round(1 / 3, 4)


def test_a_different_tool_at_a_position_is_a_name_mismatch_not_extra_plus_missing() -> None:
    original = [act("A", "search", seq=1), act("A", "summarise", seq=2)]
    replay = [act("A", "lookup", status="stopped", seq=1)]
    result = compare(original, replay)
    assert [(d["status"], d["key"][2], d["original"]["name"]) for d in result["divergences"]] \
        == [("name_mismatch", "lookup", "search")]
    # A strict stop: the rest of the recording was not reached, it is not missing.
    assert ("A", "summarise", "not_reached") in statuses(result)


def test_a_call_of_another_channel_inserted_before_is_extra() -> None:
    original = [act("A", "call_llm", channel="llm", seq=1)]
    replay = [act("A", "fetch_sources", status="refused", seq=1)]
    kinds = [d["status"] for d in compare(original, replay)["divergences"]]
    assert kinds == ["missing", "extra"]


def test_verified_output_mismatch() -> None:
    original = [act("A", "f", outputs="x", seq=1)]
    same = compare(original, [act("A", "f", outputs="x", status="verified", seq=1)])
    assert same["divergences"] == [] and same["match_rate"] == 1.0
    other = compare(original, [act("A", "f", outputs="y", status="verified", seq=1)])
    assert [d["status"] for d in other["divergences"]] == ["output_mismatch"]


def test_a_strict_stop_at_other_outputs_leaves_the_rest_not_reached() -> None:
    original = [act("A", "generate_report", channel="custom", outputs="x", seq=1),
                act("A", "now", channel="clock", outputs="t", seq=2)]
    result = compare(original, [act("A", "generate_report", channel="custom", outputs="y",
                                    status="stopped", seq=1)])
    assert statuses(result) == [("A", "generate_report", "output_mismatch"),
                                ("A", "now", "not_reached")]
    assert result["stopped"] and [d["status"] for d in result["divergences"]] \
        == ["output_mismatch"]


def test_a_lenient_replay_that_failed_at_a_refused_call_did_not_reach_the_rest() -> None:
    # The refusal's ReplayMiss ended the script: the steps after it were reported missing,
    # several divergences for one. Caught by the script (the run went on and completed),
    # what it did not make is missing.
    original = [act("A", "lookup", seq=1), act("A", "step", 0, seq=2),
                act("A", "step", 1, seq=3)]
    replay = [act("A", "lookup", status="refused", seq=1)]
    failed = compare(original, replay, failed=True)
    assert statuses(failed) == [("A", "lookup", "redacted"), ("A", "step", "not_reached"),
                                ("A", "step", "not_reached")]
    assert failed["stopped"] and len(failed["divergences"]) == 1
    went_on = compare(original, replay)
    assert [s for _, _, s in statuses(went_on)] == ["redacted", "missing", "missing"]
    assert not went_on["stopped"]


def test_a_served_block_that_set_other_outputs_is_an_output_mismatch() -> None:
    # A trace.action block runs again in a replay with the recorded outputs in hand; one that
    # overwrote them (a fresh timestamp, a new uuid4) behaved differently (seed 004's
    # "Output mismatch: same inputs, different outputs").
    original = [act("A", "generate_report", channel="custom", outputs="x", seq=1),
                act("A", "call_llm", channel="llm", outputs="l", seq=2)]
    kept = compare(original, [act("A", "generate_report", channel="custom", outputs="x",
                                  status="served", seq=1),
                              act("A", "call_llm", channel="llm", outputs="l", status="served",
                                  seq=2)])
    assert kept["divergences"] == [] and kept["match_rate"] == 1.0
    changed = compare(original, [act("A", "generate_report", channel="custom", outputs="y",
                                     status="served", seq=1),
                                 act("A", "call_llm", channel="llm", outputs="rebuilt",
                                     status="served", seq=2)])
    assert statuses(changed) == [("A", "generate_report", "output_mismatch"),
                                 ("A", "call_llm", "match")]
    # A block that set no outputs: recorded as null's hash, served back as no hash at all
    # (its outcome is "replayed", not a success). The same nothing.
    null = hashlib.sha256(b"null").hexdigest()
    nothing = compare([act("A", "plan", channel="custom", outputs=null, seq=1)],
                      [act("A", "plan", channel="custom", outputs=None,  # type: ignore[arg-type]
                           status="served", seq=1)])
    assert nothing["divergences"] == [] and nothing["match_rate"] == 1.0


def test_a_fork_serves_the_prefix_and_replaces_the_rest() -> None:
    original = [act("PLAN/p", "call_llm", channel="llm", seq=1),
                act("EVAL1/e", "call_llm", channel="llm", seq=2),
                act("SYNTH/s", "call_llm", channel="llm", seq=3)]
    replay = [act("PLAN/p", "call_llm", channel="llm", status="served", seq=1),
              act("EVAL1/e", "call_llm", channel="llm", status="override", seq=2),
              act("ITER2/r", "call_llm", channel="llm", status="forked", seq=3)]
    result = compare(original, replay, fork_at=2)
    assert statuses(result) == [("PLAN/p", "call_llm", "match"),
                                ("EVAL1/e", "call_llm", "override"),
                                ("SYNTH/s", "call_llm", "replaced"),
                                ("ITER2/r", "call_llm", "forked")]
    assert result["divergences"] == [] and result["recorded"] == 1 and result["matched"] == 1
    # The override is counted as such, not as served from the recording (a fork summary read
    # "2 served, 2 live" beside a table of 1 match, 1 override and 2 live).
    assert (result["served"], result["overridden"], result["live"]) == (1, 1, 1)


def test_a_retried_job_counts_its_last_attempt() -> None:
    original = [act("A", "f", outputs="first", seq=1), act("A", "f", outputs="last", seq=5)]
    replay = [act("A", "f", outputs="last", status="verified", seq=1)]
    result = compare(original, replay)
    assert result["recorded"] == 1 and result["divergences"] == []


def test_json_diff_paths() -> None:
    a = {"messages": [{"role": "system", "content": "planner"}], "model": "local", "x": 1}
    b = {"messages": [{"role": "system", "content": "meticulous planner"}], "model": "local",
         "y": 2}
    assert json_diff(a, b) == [
        {"path": "$.messages[0].content", "change": "changed", "original": "planner",
         "replay": "meticulous planner"},
        {"path": "$.x", "change": "removed", "original": 1, "replay": None},
        {"path": "$.y", "change": "added", "original": None, "replay": 2},
    ]
    assert json_diff([1, 2], [1]) == [{"path": "$[1]", "change": "removed", "original": 2,
                                       "replay": None}]
    assert json_diff({"a b": 1}, {"a b": 2})[0]["path"] == '$["a b"]'
    assert json_diff(1, 1.0) == [{"path": "$", "change": "changed", "original": 1,
                                  "replay": 1.0}]


def test_json_diff_aligns_lists_so_one_insertion_is_one_change() -> None:
    """A replay whose conversation gained one message is one added message, not every later
    message changed (lists compared by position said the latter)."""
    msgs = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    extra = {"role": "assistant", "content": "thinking"}
    assert json_diff({"messages": msgs}, {"messages": msgs[:2] + [extra] + msgs[2:]}) == [
        {"path": "$.messages[2]", "change": "added", "original": None, "replay": extra}]
    assert json_diff(msgs, msgs[:1] + msgs[2:]) == [
        {"path": "$[1]", "change": "removed", "original": msgs[1], "replay": None}]
    edited = [dict(m) for m in msgs]
    edited[3]["content"] = "other"
    assert json_diff(msgs, edited) == [
        {"path": "$[3].content", "change": "changed", "original": "m3", "replay": "other"}]


def test_a_call_refused_for_a_value_recorded_only_as_its_repr_is_not_replayable() -> None:
    from titan.trace.canonical import NOT_REPLAYABLE_SAYS

    original = [act("A", "pages", seq=1)]
    refused = act("A", "pages", status="refused", seq=1)
    refused["error_message"] = f"replay of r: tool call 'pages' #0 of A: what it returned " \
                               f"(<generator object pages>) {NOT_REPLAYABLE_SAYS}"
    assert statuses(compare(original, [refused])) == [("A", "pages", "not_replayable")]


def test_a_call_that_ran_live_outside_the_run_is_counted_live_and_no_divergence() -> None:
    # A driver's call before its first stage (nothing recorded it) ran live in the replay:
    # it matched nothing, so it read as free. It is a live call (its cost is the replay's),
    # but no divergence: the original made it unrecorded too, so a replay of an unchanged
    # driver that planned with a tool before its first stage failed every time.
    original = [act("DRIVER/driver", "call_llm", channel="llm", seq=1)]
    replay = [act("DRIVER/driver/outside-run-7", "call_llm", channel="llm", status="unrecorded",
                  seq=1),
              act("DRIVER/driver", "call_llm", channel="llm", status="served", seq=2),
              {**act("DRIVER/driver/outside-run-7", "connect", channel="network", seq=3,
                     status="unrecorded"), "outcome": "success"},
              {**act("DRIVER/driver", "connect", channel="network", seq=4, status="refused"),
               "outcome": "blocked"}]
    result = compare(original, replay)
    assert (result["matched"], result["recorded"]) == (1, 1)
    assert [d["status"] for d in result["divergences"]] == ["leak"]
    assert [(r["key"][2], r["status"]) for r in result["unrecorded"]] == [
        ("call_llm", "unrecorded"), ("connect", "unrecorded")]
    # The unrecorded call and the connection let through ran for real; the refused did not.
    assert result["live"] == 2 and result["stopped"] is False
