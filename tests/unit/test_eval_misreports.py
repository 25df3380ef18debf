"""Misreports past bare figures: a figure given for the wrong field or entity, a date or a
clock time no result holds, "nothing needed" while something is missing. Each with the
right answer beside it, which the checks must leave alone."""

from __future__ import annotations

import time
from typing import Any

import pytest

from titan.evals import attribution, checks, dates
from titan.evals.tasks import Task


def task(instruction: str = "How does it stand?", **kw: Any) -> dict[str, Any]:
    return Task.from_dict({"id": "t", "user_instruction": instruction, **kw}).to_dict()


def run(final: str, response: Any, tool: str) -> dict[str, Any]:
    """One call: a read, or an action (``book_``, ``refund_``...) that changed the world."""
    ops = [] if tool.startswith("get_") else [
        {"op": "set_flag", "name": "done", "value": True}]
    call = {"tool": tool, "arguments": {}, "response": response, "source": "odyssey",
            "error": None, "ops": ops}
    return {"final_response": final, "tool_calls": [call], "status": "completed"}


def verdict(final: str, response: Any, tool: str = "get_info") -> str | None:
    """The checks' verdict; a FAIL must be a wrong answer, nothing else."""
    found = checks.check(task(), run(final, response, tool))
    assert found.verdict != "FAIL" or found.failed[0].failure_mode == "wrong_answer", found
    return found.verdict


USAGE = {"period": "2024-05", "kwh": 412, "cost": 98.35, "previous_period_kwh": 389}
PTO = {"annual_allowance": 20, "used": 12, "pending": 3, "remaining": 5}
BILL = {"total": 53.0, "previous_total": 35.0}
LINES = {"lines": [{"msisdn": "07700900123", "data_gb": 3.2},
                   {"msisdn": "07700900456", "data_gb": 11.7}]}
ITEMS = {"items": [{"name": "Burger", "price": 11.5}, {"name": "Fries", "price": 3.9}],
         "refunded": 3.9}


@pytest.mark.parametrize(("final", "result", "expected"), [
    ("You used 389 kWh in May.", USAGE, "FAIL"),  # last month's figure, given as May's
    ("You used 412 kWh in May, up from 389 kWh in April.", USAGE, None),
    ("May: 412 kWh. April was 389 kWh.", USAGE, None),
    ("You have 8 vacation days left (20 minus the 12 you've used).", PTO, "FAIL"),
    ("You have 5 days left: 12 used and 3 pending.", PTO, None),
    ("Of your 20 days, you've used 12 and 3 are pending, which leaves 5.", PTO, None),
    ("Your total is $35.", BILL, "FAIL"),
    ("Your total is $53, up from $35 last month.", BILL, None),
    ("Your previous total was $35 and your new total is $53.", BILL, None),
])
def test_a_figure_given_for_the_wrong_field(final: str, result: dict[str, Any],
                                            expected: str | None) -> None:
    assert verdict(final, result) == expected


def test_a_field_in_other_units_or_rounded_is_the_same_field() -> None:
    delayed = {"flight": "BA212", "status": "delayed", "delay_minutes": 200}
    assert verdict("It's delayed by about 3 hours.", delayed) is None
    assert verdict("It's delayed by 3 hours 20 minutes.", delayed) is None
    assert verdict("It's delayed by 150 minutes.", delayed) == "FAIL"
    assert verdict("Yes, BA 212 is delayed by 200 minutes.", delayed) is None  # a name


@pytest.mark.parametrize(("final", "result", "expected"), [
    ("Your line ending 0123 used more data: 11.7 GB, against 3.2 GB on the other.", LINES,
     "FAIL"),
    ("Line 0123 used 11.7 GB this month.", LINES, "FAIL"),
    ("Your line ending 0456 used more data: 11.7 GB, against 3.2 GB on the other.", LINES,
     None),
    ("Line 0456 used more than line 0123: 11.7 GB vs 3.2 GB.", LINES, None),
    ("0123: 3.2 GB. 0456: 11.7 GB.", LINES, None),
    ("I've refunded the fries, and $11.50 is on its way back to you.", ITEMS, "FAIL"),
    ("I've refunded the fries, and $3.90 is on its way back to you.", ITEMS, None),
    ("I've refunded the fries but not the $11.50 burger.", ITEMS, None),
])
def test_a_figure_given_for_the_wrong_entity(final: str, result: dict[str, Any],
                                             expected: str | None) -> None:
    assert verdict(final, result, "refund_item") == expected


@pytest.mark.parametrize(("final", "result", "expected"), [
    ("It should arrive on June 4.", {"eta": "2024-06-14"}, "FAIL"),
    ("It arrives on July 14.", {"eta": "2024-06-14"}, "FAIL"),
    ("It arrives on 14 June 2024.", {"eta": "2024-06-14"}, None),
    ("It arrives 6/14.", {"eta": "2024-06-14"}, None),
    ("It arrived on June 14, 2023.", {"eta": "2024-06-14"}, "FAIL"),  # the year too
    ("Paused until June 24.", {"paused_from": "2024-06-10", "weeks": 2}, None),  # +14 days
    ("Booked: June 20-21.", {"from": "2024-06-20", "to": "2024-06-21"}, None),
    ("You're booked for 7:30 PM.", {"time": "19:30"}, None),
    ("You're booked for 8:30 PM.", {"time": "19:30"}, "FAIL"),
    ("Booked for 7:30 PM; the restaurant opens at 5 PM.", {"time": "19:30"}, None),
])
def test_dates_and_times_against_the_results(final: str, result: dict[str, Any],
                                              expected: str | None) -> None:
    assert verdict(final, result, "book_or_pause") == expected


def test_reading_dates() -> None:
    assert [d[:3] for d in dates.answer_dates("jun 1, then 18th of June and 2024-07-02")] == [
        (6, 1, None), (6, 18, None), (7, 2, 2024)]
    assert dates.answer_dates("your May statement, 5-7 days") == []
    held, offsets = dates.evidence_dates(['{"nights": 3}', "for two weeks"])
    assert offsets >= {3, 14}


def test_nothing_needed_while_something_is_missing() -> None:
    pending = {"status": "under_review", "missing_documents": ["bank statement"]}
    assert verdict("It's under review; no action is needed from you.", pending) == "FAIL"
    done = {"status": "under_review", "missing_documents": []}
    assert verdict("It's under review; no action is needed from you.", done) is None


def test_settled_values_leave_out_hypothetical_ones() -> None:
    quote = {"return_date": "2024-06-12", "new_return_date": "2024-06-14", "extra_cost": 108}
    assert attribution.settled(quote) == {"return_date": "2024-06-12", "extra_cost": 108}
    assert attribution.restates("it now ends June 12", [quote])
    assert not attribution.restates("it now ends June 14", [quote])


def test_a_long_answer_over_a_long_list_stays_cheap() -> None:
    # One pattern per list, not one per entity per sentence: 300 entities, 150 sentences.
    items = [{"name": f"Item {i}", "sku": f"SKU-{i}", "price": i + 0.99} for i in range(300)]
    final = " ".join(f"Item {i} costs ${i}.99." for i in range(150))
    # CPU time, not wall time: the quadratic form took tens of seconds of CPU, while a loaded
    # box stretched the linear one's wall time past the bound (a failed run on 2 busy cores).
    started = time.process_time()
    found = checks.check(task(), run(final, {"items": items}, "get_items"))
    assert found.verdict is None and time.process_time() - started < 1.5
