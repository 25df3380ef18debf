"""The example support agent's world as a good hosted model plays it: the simulator's answers
(tests/fake_llm_api.py's ``responder``) and the judge's verdicts, shared by the integration
and browser tests of evaluations so their ledger assertions are exact."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection

from tests.fake_llm_api import Received, Reply

ORDERS = {"A-1001": ("processing", 42.5), "A-1002": ("processing", 19.0),
          "A-1003": ("shipped", 80.0), "A-1004": ("processing", 12.0)}


def scripted_world(failing: Collection[str] = (), failure_mode: str = "incomplete"
                   ) -> Callable[[Received], Reply]:
    """A responder: ``get_order`` reads ORDERS, ``cancel_order`` cancels and flags the refund;
    the judge passes every run except those whose prompt names an order in ``failing``."""

    def respond(got: Received) -> Reply:
        text = json.dumps(got.body)
        messages = got.body.get("messages") or []
        last = str(messages[-1].get("content") if messages else "")
        if "Criterion (" in last:  # an llm_judge criterion: its own prompt and scale
            if "Answer PASS or FAIL." in last:
                return Reply(text=json.dumps({"verdict": "PASS",
                                              "reasoning": "The reply names the order."}))
            return Reply(text=json.dumps({"score": 2 if "strict" in last else 4,
                                          "reasoning": "The reply is courteous and direct."}))
        if "task_completion" in text:  # the judge
            failed = any(order in text for order in failing)
            return Reply(text=json.dumps({
                "task_completion": 2 if failed else 5, "instruction_adherence": 5,
                "efficiency": 5, "verdict": "FAIL" if failed else "PASS",
                "failure_mode": failure_mode if failed else None,
                "reasoning": "Step 1 returned the order and the final response reports it."}))
        call = re.search(r"CALL: (\w+)\((.*)\)", last)
        assert call, last
        tool, args = call.group(1), json.loads(call.group(2) or "{}")
        order = args.get("order_id", "")
        status, total = ORDERS.get(order, ("missing", 0.0))
        if tool == "get_order":
            return Reply(text=json.dumps({"response": {"id": order, "status": status,
                                                       "total": total}, "ops": []}))
        return Reply(text=json.dumps({
            "response": {"id": order, "status": "cancelled"},
            "ops": [{"op": "update", "type": "order", "id": order,
                     "attrs": {"status": "cancelled"}},
                    {"op": "set_flag", "name": "refund_issued", "value": True}]}))

    return respond
