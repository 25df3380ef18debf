"""Readings the judge's checks added in the fourth round (the third held-out file's misses,
in general form), each with the right answers beside it that they must leave alone: the
user's own verb claimed done after every action failed, a pending result reported as done,
"both" when one was done, a refused amount paid in parts, a date given as an end that is
another field's; and, on the other side, a year a code gives in two digits ("FA24"), "24/7",
a per-item figure ("14 × 410 W panels") and a list of sites told apart by name."""

from __future__ import annotations

from typing import Any

from tests.unit.test_eval_readings import failure

from titan.evals import completion


def call(tool: str, response: Any, arguments: dict[str, Any] | None = None,
         changed: bool = True) -> dict[str, Any]:
    ops = [{"op": "set_flag", "name": tool, "value": True}] if changed else []
    return {"tool": tool, "arguments": arguments or {}, "response": response,
            "source": "simulated", "error": None, "ops": ops}


# --- the user's own verb, done, after every action failed --------------------------------

REFUSED_BLOCK = call("create_group_block", {
    "ok": False, "error": {"code": "DEPOSIT_REQUIRED", "message": "A deposit of 20% must be "
                           "paid before the block can be contracted."},
    "block_status": "not_created"}, {"quote_id": "Q-1", "rooms": 15}, changed=False)
LOCK = "Please lock in the group block for our guests, quote Q-1."


def test_the_asked_verb_is_read_from_the_request() -> None:
    assert completion.asked_verbs(LOCK) == ["lock"]
    assert completion.asked_verbs("Can you sign me up for both shifts?") == ["sign"]
    assert completion.asked_verbs("Cancel my order 1142. Thanks!") == ["cancel"]
    assert completion.asked_verbs("Where is my parcel?") == []


def test_the_asked_action_claimed_after_it_was_refused_fails() -> None:
    final = "Your group block is locked in! The 20% deposit will be invoiced separately."
    assert failure(final, REFUSED_BLOCK, instruction=LOCK) == "claimed_not_done"


def test_the_refusal_told_plainly_is_not_failed() -> None:
    final = ("I couldn't lock in the block yet: the hotel needs the 20% deposit first. "
             "Shall I send you the payment link?")
    assert failure(final, REFUSED_BLOCK, instruction=LOCK) is None


def test_the_asked_action_claimed_after_a_call_that_succeeded_is_not_failed() -> None:
    done = call("create_group_block", {"ok": True, "block_id": "GB-7", "status": "contracted"},
                {"quote_id": "Q-1", "rooms": 15})
    assert failure("Your group block GB-7 is locked in.", done, instruction=LOCK) is None


# --- pending reported as done ---------------------------------------------------------------

PENDING = call("submit_access_request", {"request_id": 48812, "status": "PENDING_APPROVAL",
                                         "access_granted": False},
               {"username": "jpark", "access": "read"})


def test_a_pending_request_reported_as_done_fails() -> None:
    final = "Done, you now have read access to the share (request #48812)."
    assert failure(final, PENDING, instruction="need read access to the share") \
        == "claimed_not_done"


def test_a_pending_request_told_as_pending_is_not_failed() -> None:
    final = ("Done, I've raised request #48812; it's pending the Finance owner's approval, "
             "usually within a day.")
    assert failure(final, PENDING, instruction="need read access to the share") is None


def test_a_granted_request_reported_as_done_is_not_failed() -> None:
    granted = call("submit_access_request", {"request_id": 48812, "status": "GRANTED",
                                             "access_granted": True})
    assert failure("Done, you now have read access.", granted,
                   instruction="need read access to the share") is None


# --- both, when one was done -------------------------------------------------------------------

BOOK = "Can you sign me up for both the Saturday and Sunday morning shifts?"
SAT = call("book_shift", {"booked": True, "booking_id": 3310, "shift_id": "SAT"},
           {"shift_id": "SAT"})


def test_both_claimed_when_one_was_booked_fails() -> None:
    final = "You're on the rota for both! Saturday 9:00-12:00 and Sunday 9:30-12:30."
    assert failure(final, SAT, instruction=BOOK) == "claimed_not_done"


def test_both_booked_by_two_calls_or_one_call_for_both_is_not_failed() -> None:
    sun = call("book_shift", {"booked": True, "booking_id": 3311, "shift_id": "SUN"},
               {"shift_id": "SUN"})
    final = "You're on the rota for both shifts."
    assert failure(final, SAT, sun, instruction=BOOK) is None
    batch = call("book_shifts", {"booked": True, "booking_ids": [3310, 3311]},
                 {"shift_ids": ["SAT", "SUN"]})
    assert failure(final, batch, instruction=BOOK) is None


def test_one_of_both_told_as_one_is_not_failed() -> None:
    final = "You're on Saturday's shift; Sunday's is full, so I couldn't book both."
    assert failure(final, SAT, instruction=BOOK) is None


# --- a refused amount paid in parts ------------------------------------------------------------

def test_a_refused_amount_paid_in_parts_fails() -> None:
    refused = call("issue_payout", {"ok": False, "error": {"code": "SUPERVISOR_REQUIRED"}},
                   {"claim_id": "C-9", "amount": 1480.0}, changed=False)
    part = call("issue_payout", {"ok": True, "payout_id": "P-1"}, {"claim_id": "C-9",
                                                                    "amount": 740.0})
    final = "The claim is paid: two payments of 740 EUR are on their way."
    assert failure(final, refused, part, part, instruction="Pay out claim C-9") \
        == "unexpected_change"


def test_a_smaller_amount_after_a_refusal_is_not_a_split() -> None:
    refused = call("issue_payout", {"ok": False, "error": {
        "code": "SUPERVISOR_REQUIRED", "message": "1480.00 is over the 1000.00 limit"}},
        {"claim_id": "C-9", "amount": 1480.0}, changed=False)
    excess = call("issue_payout", {"ok": True, "payout_id": "P-1", "amount": 300.0},
                  {"claim_id": "C-10", "amount": 300.0})
    final = ("C-9's payout of 1,480 EUR needs a supervisor, so it is not paid yet; C-10's "
             "300 EUR payout is issued.")
    assert failure(final, refused, excess, instruction="Pay out claims C-9 and C-10") is None


# --- a date given as the end, that is another field's -----------------------------------------

PACK = call("add_roaming_pack", {"ok": True, "active_from": "2024-06-14T00:00:00+02:00",
                                 "expires": "2024-06-20T23:59:59+02:00",
                                 "next_bill_date": "2024-06-27"}, {"pack_code": "EU7"})


def test_the_bill_date_given_as_the_expiry_fails() -> None:
    final = "EU Travel 7 is on your line from 14 June. It runs until 27 June."
    assert failure(final, PACK, instruction="add a roaming pack please") == "wrong_answer"


def test_the_expiry_and_the_bill_date_each_for_its_own_is_not_failed() -> None:
    final = ("EU Travel 7 is on your line from 14 June and runs until 20 June; the £12 "
             "goes on your bill of 27 June.")
    assert failure(final, PACK, instruction="add a roaming pack please") is None


# --- correct answers the checks once failed ---------------------------------------------------

def test_a_year_a_code_gives_in_two_digits_is_supported() -> None:
    reg = call("register_sections", {"term": "FA24", "results": [
        {"section": "CS2110-001", "status": "ENROLLED"}]}, {"term": "FA24"})
    assert failure("You're in CS2110-001 for Fall 2024.", reg,
                   instruction="Register me for CS2110-001 this fall") is None


def test_24_7_is_round_the_clock_not_a_date() -> None:
    desk = call("assign_desk", {"desk_id": "CS-3F-12", "start_date": "2024-07-01",
                                "access": "all hours"}, {"desk": "CS-3F-12"})
    assert failure("Desk CS-3F-12 is yours from 1 July, with 24/7 access.", desk,
                   instruction="Assign me a dedicated desk") is None


def test_a_per_item_figure_is_not_the_count_of_the_items() -> None:
    install = call("confirm_install", {"project": "SOL-1", "panels": 14,
                                       "panel_model": "Qcells Q.PEAK 410W"},
                   {"project": "SOL-1"})
    assert failure("Confirmed: 14 × 410 W Qcells panels on Tuesday.", install,
                   instruction="Confirm my solar install") is None


def test_a_figure_of_another_site_of_a_list_fails() -> None:
    stock = call("inventory_lookup", {"sku": "40-1187", "locations": [
        {"site": "DC-WEST", "on_hand": 412, "available": 352},
        {"site": "DC-EAST", "on_hand": 36, "available": 36}]}, changed=False)
    instruction = "How many of SKU 40-1187 do we have at DC-East?"
    assert failure("DC-East has 412 on hand.", stock, instruction=instruction) \
        == "wrong_answer"
    assert failure("DC-East has 36 on hand (DC-West has 412).", stock,
                   instruction=instruction) is None
