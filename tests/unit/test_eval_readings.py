"""Readings the judge's checks added in the third round, each with the right answer beside it
that they must leave alone: figures as people write them (decimal commas, thousands marks in
both conventions, currency signs, "14.30"), a figure's own unit against its neighbour's, a
list sharing its name, a sibling's state given for an entity, gross pay given as take-home,
a valid request declined though a result says it may be done, a failure whose message the
answer does not pass on, and one failed call of a batch."""

from __future__ import annotations

from typing import Any

import pytest

from titan.evals import checks, numbers
from titan.evals.tasks import Task

WRITES = ("refund", "change", "create", "place", "set", "cancel")


def call(tool: str, response: Any, arguments: dict[str, Any] | None = None,
         error: str | None = None) -> dict[str, Any]:
    """A read (``get_``, ``search_``...) changes nothing; a write that did not fail sets a
    flag."""
    ops = [{"op": "set_flag", "name": tool, "value": True}] \
        if tool.startswith(WRITES) and not error else []
    return {"tool": tool, "arguments": arguments or {}, "response": response,
            "source": "injected" if error else "odyssey", "error": error, "ops": ops}


def verdict(final: str, *calls: dict[str, Any],
            instruction: str = "How does it stand?") -> str | None:
    task = Task.from_dict({"id": "t", "user_instruction": instruction}).to_dict()
    run = {"final_response": final, "tool_calls": list(calls), "status": "completed"}
    return checks.check(task, run).verdict


def failure(final: str, *calls: dict[str, Any], instruction: str = "How does it stand?") \
        -> str | None:
    """The failure mode of the checks' FAIL, or None when they do not fail the run."""
    task = Task.from_dict({"id": "t", "user_instruction": instruction}).to_dict()
    run = {"final_response": final, "tool_calls": list(calls), "status": "completed"}
    found = checks.check(task, run)
    return found.failed[0].failure_mode if found.failed else None


# --- figures as people write them ---------------------------------------------------------

@pytest.mark.parametrize(("text", "readings"), [
    ("6,60 €", ((6.6,),)),                       # a decimal comma, the sign after
    ("€6.60", ((6.6,),)),
    ("1.234,50 €", ((1234.5,),)),                # both marks: the last is the decimal one
    ("1,234.50", ((1234.5,),)),
    ("1 234,50 €", ((1234.5,),)),                # a space between thousands
    ("1\u00a0234", ((1234.0,),)),
    ("1,234,567", ((1234567.0,),)),
    ("1.234.567", ((1234567.0,),)),
    ("1,500", ((1500.0,), (1.5,))),              # either convention: both readings
    ("3.125", ((3.125,), (3125.0,))),
    ("21,22", ((21.22,), (21.0, 22.0))),         # or a list
    ("2 100", ((2100.0,), (2.0, 100.0))),
    ("£1,350", ((1350.0,),)),                    # money shows two places, not three
    ("1.500 €", ((1500.0,),)),
])
def test_figures_are_read_in_every_convention(text: str,
                                              readings: tuple[tuple[float, ...], ...]) -> None:
    [figure] = numbers.find(text)
    assert figure.readings == readings


def test_a_dotted_figure_may_be_a_clock_time_unless_it_is_money() -> None:
    [time] = numbers.find("the 14.30 sailing")
    assert time.value == 14.3 and 14 * 60 + 30 in time.clock
    [price] = numbers.find("it costs £14.30")
    assert price.money and not price.clock
    assert not numbers.find("version 1.2.3") and not numbers.find("v1.2")


REFUND = {"refund_id": "RF-20931", "amount_eur": 6.6, "status": "issued"}


@pytest.mark.parametrize(("final", "expected"), [
    ("refunded 6,60 € (RF-20931)", "PASS"),
    ("refunded €6.60", "PASS"),
    ("refunded 6.60€", "PASS"),
    ("refunded 6,90 € (RF-20931)", "FAIL"),
    ("refunded 60 €", "FAIL"),
])
def test_an_amount_with_a_decimal_comma(final: str, expected: str) -> None:
    assert (verdict(final, call("refund_ride", REFUND)) or "PASS") == expected


@pytest.mark.parametrize(("final", "expected"), [
    ("Your total is 1.234,50 €.", None),
    ("Your total is 1,234.50 €.", None),
    ("Your total is 1 234,50 €.", None),
    ("Your total is 1.243,50 €.", "FAIL"),
    ("Your balance is 1,500 points.", None),
    ("Your balance is 1.500 points.", None),    # 1500 the other way round
    ("Your balance is 1.600 points.", "FAIL"),  # wrong either way
])
def test_thousands_marks_in_both_conventions(final: str, expected: str | None) -> None:
    assert verdict(final, call("get_account", {"total": 1234.5, "points": 1500})) == expected


DEPARTS = {"booking_ref": "FR-1", "departs": "2024-07-06T14:30", "check_in": "2024-07-06T13:45"}


@pytest.mark.parametrize(("final", "expected"), [
    ("changed to the 14.30 one, checkin closes 13.45", None),
    ("changed to the 2.30pm sailing", None),
    ("changed to the sailing at 14h30", None),
    ("changed to the 15.30 one", "FAIL"),
    ("changed to the 3.30pm sailing", "FAIL"),
    ("changed to the sailing at 15h30", "FAIL"),
    ("changed to the 15h30 sailing", None),       # "takes 2h30" is a duration: unread
    ("changed; the crossing takes 3h15", None),
])
def test_clock_times_with_a_point_or_an_h(final: str, expected: str | None) -> None:
    assert verdict(final, call("change_sailing", DEPARTS)) == expected


TARIFFS = {"current": {"annual_cost": 1284.5}, "quotes": [{"id": "T-1", "annual_cost": 1139.2}]}


@pytest.mark.parametrize(("final", "expected"), [
    ("It costs £1,139.20 a year, roughly £145 less than now.", None),  # rounded, said so
    ("It costs about £1,139 a year.", None),              # rounded to its own precision
    ("It costs £1,139.20 a year, 11% less than now.", None),   # a percentage they make
    ("It costs £1,139.20 a year, about 11.3% less.", None),
    ("It costs £1,139.20 a year, 25% less than now.", "FAIL"),
    ("It costs £1,350 a year.", "FAIL"),
    ("It costs about £1,350 a year.", "FAIL"),            # rough, but not that rough
])
def test_rounded_rough_and_percentage_figures(final: str, expected: str | None) -> None:
    assert verdict(final, call("get_tariffs", TARIFFS)) == expected


def test_a_field_rounded_to_the_places_shown_is_the_field() -> None:
    trip = {"distance_km": 12.4, "fare": 23.75}
    assert verdict("The fare is £24 for 12 km.", call("get_trip", trip)) is None
    assert verdict("The fare is £23.80.", call("get_trip", trip)) is None
    assert verdict("The fare is £25.", call("get_trip", trip)) == "FAIL"


# --- which field a figure names -------------------------------------------------------------

VM = {"instance": {"name": "vm-1", "vcpus": 4, "memory_gb": 16}}


@pytest.mark.parametrize(("final", "expected"), [
    ("vm-1 is now 4 vCPU / 16 GB.", None),       # GB is the 16's, vCPU the 4's
    ("vm-1 now has 4 vCPUs, 16 GB of memory.", None),
    ("vm-1 now has 16 GB RAM and 4 vCPUs.", None),
    ("vm-1 now has 4 vCPUs, 8 GB of memory.", "FAIL"),
])
def test_a_unit_right_after_a_figure_is_its_own(final: str, expected: str | None) -> None:
    assert verdict(final, call("get_instance", VM)) == expected


def seats(*pairs: tuple[str, int]) -> dict[str, Any]:
    return {"tickets": [{"ticket_id": f"TK-{n}", "row": row, "seat": seat}
                        for n, (row, seat) in enumerate(pairs)]}


def test_figures_of_a_list_share_its_name() -> None:
    apart = seats(("F", 21), ("G", 21))
    assert failure("Yes, together: row F, seats 21 and 22.", call("get_order", apart)) \
        == "wrong_answer"
    together = seats(("F", 21), ("F", 22))
    assert verdict("Yes, together: row F, seats 21 and 22.", call("get_order", together)) \
        is None
    assert verdict("Yes: row F, seats 21,22.", call("get_order", together)) is None
    # Only a list ending its clause shares a name, and not a value another field holds.
    pto = {"annual_allowance": 20, "used": 12, "pending": 3, "remaining": 5}
    assert verdict("You've used 12 and 3 are pending.", call("get_pto", pto)) is None
    fees = {"booking_fee": 20, "service_charge": 5}
    assert verdict("Booking fee £20 and £5.", call("get_quote", fees)) is None


def test_a_figure_related_to_a_field_is_not_that_field() -> None:
    quote = {"subtotal": 100.0, "tax": 20.0, "total": 120.0}
    assert verdict("Your total after tax is $120.", call("get_quote", quote)) is None
    assert verdict("That's $100 before tax, $120 after tax.", call("get_quote", quote)) is None
    assert verdict("Your total is $100.", call("get_quote", quote)) == "FAIL"
    party = {"adults": 2, "children": 1}
    assert verdict("Two adults and 1 child.", call("get_booking", party)) is None


# --- a sibling's state given for an entity --------------------------------------------------

YARD = {"containers": [
    {"number": "MSKU7734120", "status": "ON_HOLD", "available_for_pickup": False},
    {"number": "TGHU4402187", "status": "RELEASED", "available_for_pickup": True}]}


@pytest.mark.parametrize(("final", "expected"), [
    ("Yes, MSKU7734120 is released and available for pickup.", "FAIL"),
    ("MSKU7734120 has been released.", "FAIL"),
    ("MSKU7734120 is available for pickup.", "FAIL"),
    ("No, MSKU7734120 is on hold for customs. TGHU4402187 is released.", None),
    ("MSKU7734120 is not released yet; TGHU4402187 is.", None),
    ("MSKU7734120 is on hold, while TGHU4402187 has been released.", None),
    ("MSKU7734120 isn't available for pickup yet; TGHU4402187 is released.", None),
    ("MSKU7734120 will be released after the inspection.", None),
    ("Your containers: MSKU7734120 (on hold) and TGHU4402187 (released).", None),
    ("Both containers (MSKU7734120 and TGHU4402187) are released.", None),  # the model's
])
def test_a_siblings_state_given_for_an_entity(final: str, expected: str | None) -> None:
    assert verdict(final, call("get_booking_containers", YARD)) == expected


# --- gross given as net ------------------------------------------------------------------------

PAYSLIP = {"pay_date": "2024-06-28", "gross": 4250.0, "net": 3187.42, "deductions": [
    {"type": "income_tax", "amount": 641.8}, {"type": "national_insurance", "amount": 234.38},
    {"type": "pension", "amount": 186.4}]}


@pytest.mark.parametrize(("final", "expected"), [
    ("Your June pay after tax will be £4,250.00, paid on 28 June.", "FAIL"),
    ("Take-home pay: £4,250.00", "FAIL"),
    ("Your net pay is £4,250.", "FAIL"),
    ("Your June pay after tax will be £3,187.42, paid on 28 June.", None),
    ("Gross is £4,250.00; after tax and other deductions you'll get £3,187.42.", None),
    ("You'll take home £3,187.42 (gross £4,250.00, deductions £1,062.58).", None),
    ("£4,250 before tax, £3,187.42 after tax.", None),
    ("Your pay before tax is £4,250 and after tax £3,187.42.", None),
])
def test_an_amount_before_deductions_given_as_after(final: str, expected: str | None) -> None:
    assert verdict(final, call("get_payslip_preview", PAYSLIP)) == expected


def test_tax_added_to_a_price_is_no_deduction() -> None:
    invoice = {"net": 100.0, "vat": 20.0, "gross": 120.0}
    assert verdict("It comes to £120 after tax.", call("get_invoice", invoice)) is None


# --- a valid request declined though a result says it may be done ---------------------------

HOLD = "Could you place a hold on Dune for me? Card 2900388120."
TITLE = {"results": [{"bib_id": "B-1", "title": "Dune", "available": 0, "holdable": True}]}
PATRON = {"card_number": "2900388120", "status": "active", "holds_active": 1,
          "holds_limit": 10, "fines_owed": 0.0}
DECLINED = ("Unfortunately I couldn't place that hold: all copies are out, and holds can only "
            "be placed on titles with a copy on the shelf.")


def declined(title: dict[str, Any] = TITLE, patron: dict[str, Any] = PATRON,
             final: str = DECLINED) -> str | None:
    return failure(final, call("search_catalog", title), call("get_patron", patron),
                   instruction=HOLD)


def test_declined_though_a_result_says_it_may_be_done() -> None:
    assert declined() == "refused_valid_task"


@pytest.mark.parametrize(("title", "patron"), [
    ({"results": [dict(TITLE["results"][0], holdable=False)]}, PATRON),  # it may not
    (TITLE, dict(PATRON, status="suspended")),                           # a blocking state
    (TITLE, dict(PATRON, holds_active=10)),                              # a limit reached
    (TITLE, dict(PATRON, fines_owed=12.5)),                              # money owed
])
def test_a_decline_with_something_in_the_way_is_not_faulted(title: dict[str, Any],
                                                            patron: dict[str, Any]) -> None:
    assert declined(title, patron) is None


def test_offering_the_action_is_no_decline() -> None:
    assert declined(final="All copies are out. Shall I place a hold? You'd be 4th.") is None


# --- failures hidden ------------------------------------------------------------------------------

SNAP = "Take snapshots of all three volumes on db-3 before the upgrade."
LISTED = call("list_volumes", {"volumes": [{"volume_id": v} for v in ("v1", "v2", "v3")]})


def snapshot(volume: str, ok: bool = True) -> dict[str, Any]:
    if ok:
        return call("create_snapshot", {"snapshot_id": f"s-{volume}", "state": "pending"},
                    {"volume_id": volume})
    limit = {"error": {"code": "SnapshotLimitExceeded",
                       "message": "The maximum number of snapshots (100) has been reached."}}
    return call("create_snapshot", limit, {"volume_id": volume}, error="SnapshotLimitExceeded")


@pytest.mark.parametrize(("final", "expected"), [
    ("Snapshots started for all three volumes (s-v1, s-v2 and one for v3).",
     "ignored_tool_error"),  # "snapshots" is the tool's subject, not its error's word
    ("s-v1 and s-v2 started; v3 hit the account's snapshot limit, so it wasn't created.",
     None),
    ("s-v1 and s-v2 are running; v3's snapshot limit was exceeded.", None),
])
def test_a_word_of_the_tools_own_name_relays_no_failure(final: str,
                                                        expected: str | None) -> None:
    calls = [LISTED, snapshot("v1"), snapshot("v2"), snapshot("v3", ok=False)]
    assert failure(final, *calls, instruction=SNAP) == expected


def test_another_items_success_is_no_retry() -> None:
    calls = [LISTED, snapshot("v1", ok=False), snapshot("v2"), snapshot("v3")]
    assert failure("Snapshots started for all three volumes.", *calls, instruction=SNAP) \
        == "ignored_tool_error"
    # A mistyped id, corrected: the later success is the retry.
    typo = call("cancel_order", {"error": "not found"}, {"order_id": "A-12"}, error="not_found")
    fixed = call("cancel_order", {"ok": True, "status": "cancelled"}, {"order_id": "A-012"})
    assert failure("I've cancelled order A-012.", typo, fixed,
                   instruction="Cancel order A-12") is None
