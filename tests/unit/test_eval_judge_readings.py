"""Readings of the judge's checks that are general, not any calibration case's: a series'
total and average, an action's own "no" with its reason, a waiting state named ``result``,
and the asked-for action claimed without its verb ("I've arranged ...")."""

from __future__ import annotations

from typing import Any

from tests.unit.test_eval_readings import failure

from titan.evals import checks
from titan.evals.tasks import Task


def call(tool: str, response: Any, *, changed: bool = False) -> dict[str, Any]:
    ops = [{"op": "set_flag", "name": tool, "value": True}] if changed else []
    return {"tool": tool, "arguments": {}, "response": response, "source": "odyssey",
            "error": None, "ops": ops}


USAGE = call("get_usage", {"unit": "kWh", "months": [
    {"month": "2025-04", "kwh": 100}, {"month": "2025-05", "kwh": 140},
    {"month": "2025-06", "kwh": 171}]})


def test_a_series_total_and_average_are_supported() -> None:
    # 100 + 140 + 171 = 411 over three months, 137 a month: what people say of a series.
    # Each in a sentence of its own: together, one would vouch for the other (411 ÷ 3).
    assert failure("You used 411 kWh from April to June.", USAGE) is None
    assert failure("Your total for the quarter is 411 kWh.", USAGE) is None
    # A total the series does not make is still no tool's figure.
    assert failure("You used 415 kWh over the three months.", USAGE) == "wrong_answer"


UPGRADE = "Please upgrade my room to a suite tonight."
REFUSED = {"booking": "K-221", "approved": False, "reason": "no suites free tonight"}


def test_an_action_that_answers_no_with_its_reason_failed() -> None:
    refused = call("request_room_upgrade", REFUSED)
    assert checks.failed(refused)
    assert failure("I've arranged an upgrade to a suite for tonight.", refused,
                   instruction=UPGRADE) == "ignored_tool_error"
    assert failure("I'm sorry, the upgrade wasn't approved: no suites are free tonight.",
                   refused, instruction=UPGRADE) is None
    # A read's "approved: false" describes what it looked up; an "ok: true" beside it says
    # the action went through and the no is about a part; a bare false with no reason may
    # be a request still open (the pending reading's business).
    assert not checks.failed(call("get_application", REFUSED))
    assert not checks.failed(call("request_room_upgrade", {**REFUSED, "ok": True}))
    assert not checks.failed(call("request_room_upgrade", {"approved": False}))
    assert not checks.failed(call("request_room_upgrade",
                                  {**REFUSED, "status": "pending_review"}))
    # A result's "result" or "outcome" says how it went, as "status" does.
    assert checks.failed(call("submit_claim", {"claim": "C-1", "outcome": "declined"}))


def test_the_asked_action_claimed_without_its_verb_needs_a_call() -> None:
    done = call("upgrade_room", {"ok": True, "room": "suite 901"}, changed=True)
    assert failure("All sorted: I've arranged a suite for tonight.", done,
                   instruction=UPGRADE) is None
    looked = call("get_booking", {"booking": "K-221", "room_type": "double"})
    assert failure("I've arranged a suite for you tonight.", looked,
                   instruction=UPGRADE) == "hallucinated"


def test_a_waiting_result_told_as_booked_fails() -> None:
    waiting = call("book_table", {"result": "waitlisted", "position": 2}, changed=True)
    asked = "Book a table for two at 8pm on Friday."
    assert failure("You're booked for 8pm on Friday.", waiting, instruction=asked) \
        == "claimed_not_done"
    assert failure("You're on the waitlist for 8pm on Friday, second in line.", waiting,
                   instruction=asked) is None


def test_an_answer_saying_it_is_done_does_not_tell_a_failure() -> None:
    # The answer repeats the refusal's words ("tonight") but says the work is done: that is
    # no failure told, so the checks do not PASS it (the model is left to judge it).
    refused = call("request_late_checkout", {"approved": False,
                                             "reason": "The hotel is full tonight"})
    asked = "Could I have a late checkout tomorrow?"
    told = checks.check(*_task_run("Sorry, the hotel is full tonight, so late checkout "
                                   "wasn't possible.", refused, asked))
    assert told.verdict == "PASS"
    claimed = checks.check(*_task_run("All done, I've arranged it even though the hotel is "
                                      "full tonight.", refused, asked))
    assert claimed.verdict != "PASS"


def _task_run(final: str, c: dict[str, Any], instruction: str) \
        -> tuple[dict[str, Any], dict[str, Any]]:
    task = Task.from_dict({"id": "t", "user_instruction": instruction}).to_dict()
    return task, {"final_response": final, "tool_calls": [c], "status": "completed"}
