"""The evaluation ledger (world state), the error-class table, HTTP classification and
failure-rule matching."""

from __future__ import annotations

import httpx
import jsonschema
import pytest

from titan.evals.failures import (
    ERROR_CLASSES,
    PALETTES,
    RETRYABLE,
    classify_http,
    match_failure_rule,
)
from titan.evals.ledger import OPS_SCHEMA, Ledger, validate_op
from titan.evals.tasks import FailureRule

INITIAL = {"orders": {"42": {"total": 30, "status": "paid"}}}


# --- ledger -------------------------------------------------------------------------------

def test_ops_apply_in_order_and_are_recorded_normalized() -> None:
    ledger = Ledger(INITIAL)
    applied, violations = ledger.apply([
        {"op": "add", "type": "refunds", "id": "r1", "attrs": {"order": "42"}},
        {"op": "update", "type": "orders", "id": "42", "attrs": {"status": "refunded"},
         "name": "", "value": None},  # fields of other kinds are ignored, not kept
        {"op": "update", "type": "refunds", "id": "r1", "attrs": {"amount": 30}},
        {"op": "set_flag", "name": "customer_notified", "value": True},
    ])
    assert violations == []
    assert applied[1] == {"op": "update", "type": "orders", "id": "42",
                          "attrs": {"status": "refunded"}}
    assert ledger.snapshot() == {
        "entities": {"orders": {"42": {"total": 30, "status": "refunded"}},
                     "refunds": {"r1": {"order": "42", "amount": 30}}},
        "flags": {"customer_notified": True},
        "removed": {}}


def test_violations_are_reported_and_not_applied_while_the_rest_applies() -> None:
    ledger = Ledger(INITIAL)
    ops = [
        {"op": "add", "type": "orders", "id": "42", "attrs": {}},  # exists
        {"op": "update", "type": "orders", "id": "7", "attrs": {"x": 1}},  # missing
        {"op": "remove", "type": "users", "id": "u"},  # missing type
        {"op": "explode", "type": "orders", "id": "42"},  # unknown op
        "not an op",
        {"op": "update", "type": "orders", "id": "42"},  # no attrs
        {"op": "set_flag", "value": 1},  # no name
        {"op": "add", "type": "", "id": "x"},
        {"op": "set_flag", "name": "ok", "value": [1, 2]},  # the one valid op
    ]
    applied, violations = ledger.apply(ops)
    assert applied == [{"op": "set_flag", "name": "ok", "value": [1, 2]}]
    assert [v["op"] for v in violations] == ops[:-1]
    assert [v["reason"] for v in violations] == [
        "orders '42' already exists",
        "orders '7' does not exist",
        "users 'u' does not exist",
        "op must be one of add, update, remove, set_flag, got 'explode'",
        "an operation must be an object, got str",
        "update needs attrs: an object of the attributes that change",
        "set_flag needs a non-empty string name",
        "add needs a non-empty string type",
    ]
    assert ledger.snapshot()["entities"] == INITIAL


def test_ops_that_are_not_a_list_are_one_violation() -> None:
    applied, violations = Ledger().apply({"op": "add"})
    assert applied == [] and violations == [{"op": {"op": "add"},
                                             "reason": "ops must be a list of operations"}]


def test_remove_keeps_a_tombstone_and_add_revives() -> None:
    ledger = Ledger(INITIAL)
    applied, _ = ledger.apply([{"op": "remove", "type": "orders", "id": "42", "attrs": {"x": 1}}])
    assert applied == [{"op": "remove", "type": "orders", "id": "42"}]
    snap = ledger.snapshot()
    assert snap["entities"] == {"orders": {}}
    assert snap["removed"] == {"orders": {"42": {"total": 30, "status": "paid"}}}

    # A removed entity cannot be updated or removed again; the reason says why.
    _, violations = ledger.apply([{"op": "update", "type": "orders", "id": "42",
                                   "attrs": {"a": 1}},
                                  {"op": "remove", "type": "orders", "id": "42"}])
    assert [v["reason"] for v in violations] == ["orders '42' was removed"] * 2

    applied, violations = ledger.apply([{"op": "add", "type": "orders", "id": "42"}])
    assert violations == [] and applied == [{"op": "add", "type": "orders", "id": "42",
                                             "attrs": {}}]
    assert ledger.snapshot() == {"entities": {"orders": {"42": {}}}, "flags": {},
                                 "removed": {}}
    assert ledger.get("orders", "42") == {} and ledger.get("orders", "9") is None


def test_snapshots_and_initial_state_are_isolated() -> None:
    initial = {"orders": {"42": {"tags": ["a"]}}}
    ledger = Ledger(initial)
    ledger.apply([{"op": "update", "type": "orders", "id": "42", "attrs": {"tags": ["b"]}}])
    assert initial == {"orders": {"42": {"tags": ["a"]}}}  # the task's state is untouched

    snap = ledger.snapshot()
    snap["entities"]["orders"]["42"]["tags"].append("mutated")
    snap["flags"]["x"] = 1
    assert ledger.snapshot()["entities"]["orders"]["42"]["tags"] == ["b"]
    assert ledger.snapshot()["flags"] == {}

    attrs = {"n": [1]}
    ledger.apply([{"op": "add", "type": "t", "id": "1", "attrs": attrs}])
    attrs["n"].append(2)  # the caller's op dict is not aliased into the state
    assert ledger.get("t", "1") == {"n": [1]}


def test_from_snapshot_resumes_without_sharing() -> None:
    first = Ledger(INITIAL)
    first.apply([{"op": "remove", "type": "orders", "id": "42"},
                 {"op": "set_flag", "name": "done", "value": "yes"}])
    snap = first.snapshot()
    second = Ledger.from_snapshot(snap)
    assert second.snapshot() == snap
    second.apply([{"op": "add", "type": "orders", "id": "42", "attrs": {"v": 2}}])
    assert first.snapshot() == snap and snap["removed"] == {"orders": {"42": INITIAL["orders"]
                                                                       ["42"]}}
    assert second.snapshot()["removed"] == {}


def test_validate_op_and_schema_agree_on_good_ops() -> None:
    good = [{"op": "add", "type": "t", "id": "1", "attrs": {"a": 1}},
            {"op": "add", "type": "t", "id": "1"},
            {"op": "update", "type": "t", "id": "1", "attrs": {}},
            {"op": "remove", "type": "t", "id": "1"},
            {"op": "set_flag", "name": "f", "value": None}]
    jsonschema.validate(good, OPS_SCHEMA)
    assert [validate_op(op) for op in good] == [None] * len(good)
    assert validate_op({"op": "add", "type": "t", "id": 1}) == "add needs a non-empty string id"
    assert validate_op({"op": "add", "type": "t", "id": "1", "attrs": [1]}) == \
        "attrs must be an object, got list"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"op": "add", "extra": 1}], OPS_SCHEMA)


# --- the error-class table ----------------------------------------------------------------

def test_error_classes_follow_the_product_table() -> None:
    chips = {name: (c.chip, c.palette) for name, c in ERROR_CLASSES.items()}
    assert chips == {
        "auth_failed": ("auth failed", "danger"),
        "agent_timeout": ("timeout", "warning"),
        "agent_5xx": ("5xx", "danger"),
        "agent_4xx": ("4xx", "amber"),
        "agent_bad_response": ("bad response", "warning"),
        "agent_unreachable": ("unreachable", "danger"),
        "proxy_misconfigured": ("proxy misconfigured", "amber"),
        "contract_error": ("contract error", "danger"),
        "transport_error": ("transport error", "warning"),
        "internal_error": ("internal error", "danger"),
    }
    assert set(PALETTES) == {"danger", "warning", "amber"}
    for name, c in ERROR_CLASSES.items():
        assert c.name == name and c.hint and "\n" not in c.hint
    assert set(RETRYABLE) == {"transport_error"}


# --- classify_http ------------------------------------------------------------------------

REQUEST = httpx.Request("POST", "http://agent.invalid/run")


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, {"final_response": "done"}, None),
    (401, {"error": "bad token"}, "auth_failed"),
    (403, "forbidden", "auth_failed"),
    (408, None, "agent_timeout"),
    (504, "<html>gateway timeout</html>", "agent_timeout"),
    (500, "Traceback ...", "agent_5xx"),
    (503, None, "agent_5xx"),
    (404, {"detail": "Not Found"}, "agent_4xx"),
    (422, {"detail": []}, "agent_4xx"),
    (200, "plain text", "agent_bad_response"),
    (200, ["final_response"], "agent_bad_response"),
    (200, {"answer": "x"}, "agent_bad_response"),
    (200, {"final_response": None}, "agent_bad_response"),
    (302, None, "agent_bad_response"),
])
def test_classify_status(status: int, body: object, expected: str | None) -> None:
    error_class, detail = classify_http(status, None, body)
    assert error_class == expected
    assert detail and "\n" not in detail


def test_classify_details_are_one_line_and_say_what_happened() -> None:
    # An error status says no more than its number: the body of an error page is not
    # repeated to the run's readers (issue 15 item 5).
    assert classify_http(401, None, {"error": "bad\ntoken"}) == (
        "auth_failed", "HTTP 401 from the agent endpoint")
    assert classify_http(500, None, "secret internal page") == (
        "agent_5xx", "HTTP 500 from the agent endpoint")
    assert classify_http(200, None, "x" * 1000)[1].endswith("…")
    assert classify_http(200, None, {"final_response": 3}) == (
        "agent_bad_response", "final_response must be a string, got int in the agent's answer: "
                              '{"final_response": 3}')
    assert classify_http(200, None, {})[1].startswith("no final_response")


@pytest.mark.parametrize(("exc", "expected"), [
    (httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST),
     "agent_unreachable"),
    (httpx.ConnectError("[Errno -2] Name or service not known", request=REQUEST),
     "agent_unreachable"),
    (httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'",
                               request=REQUEST), "agent_unreachable"),
    (httpx.InvalidURL("Invalid port"), "agent_unreachable"),
    (httpx.ConnectTimeout("timed out", request=REQUEST), "agent_timeout"),
    (httpx.ReadTimeout("timed out", request=REQUEST), "agent_timeout"),
    (httpx.PoolTimeout("", request=REQUEST), "agent_timeout"),
    (httpx.ReadError("Connection reset by peer", request=REQUEST), "transport_error"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response.",
                               request=REQUEST), "transport_error"),
    (httpx.DecodingError("bad gzip", request=REQUEST), "agent_bad_response"),
    (ValueError("boom"), "internal_error"),
])
def test_classify_exceptions(exc: BaseException, expected: str) -> None:
    error_class, detail = classify_http(None, exc, None)
    assert error_class == expected
    assert type(exc).__name__ in detail and "\n" not in detail


def test_classify_a_real_refused_connection() -> None:
    # Port 9 (discard) on localhost is closed in test environments: a genuine ConnectError.
    try:
        httpx.post("http://127.0.0.1:9/run", json={}, timeout=2)
    except httpx.HTTPError as exc:
        assert classify_http(None, exc, None)[0] in ("agent_unreachable", "agent_timeout")
    else:
        pytest.skip("something listens on port 9")


def test_classify_without_status_or_exception_is_internal() -> None:
    assert classify_http(None, None, None)[0] == "internal_error"


# --- failure-rule matching ----------------------------------------------------------------

def test_first_matching_rule_wins_and_times_is_counted_by_the_caller() -> None:
    rules = [
        FailureRule(tool="refund", payload="first call fails", on_call=1),
        FailureRule(tool="refund", payload="big refunds fail twice", match={"amount": 500},
                    times=2),
        FailureRule(tool="lookup", payload="always", error=False),
    ]
    fired: dict[int, int] = {}

    def call(tool: str, args: dict[str, object], n: int) -> int | None:
        index = match_failure_rule(rules, tool, args, n, fired)
        if index is not None:
            fired[index] = fired.get(index, 0) + 1
        return index

    assert call("refund", {"amount": 500}, 1) == 0  # on_call=1 comes first
    assert call("refund", {"amount": 500}, 2) == 1
    assert call("refund", {"amount": 10}, 3) is None  # match fails
    assert call("refund", {"amount": 500}, 4) == 1
    assert call("refund", {"amount": 500}, 5) is None  # times=2 used up
    assert [call("lookup", {}, n) for n in (1, 2, 3)] == [2, 2, 2]
    assert call("other", {}, 1) is None
    assert fired == {0: 1, 1: 2, 2: 3}
    assert match_failure_rule([], "refund", {}, 1, {}) is None
