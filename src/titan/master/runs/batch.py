"""``POST /runs/batch``: several runs' recording in one request, in order.

The SDK records many short runs (a ``trace.run`` block, a few tool calls) and sent each as
four requests one after another (open, code, actions, end): delivery topped out at ~70 runs a
second, far below recording, and a script's exit lost what was still queued. Here one request
carries a list of operations, each exactly what its per-run route takes (``POST /runs``,
``PUT /runs/{id}/code``, ``POST /runs/{id}/actions``, ``PATCH /runs/{id}``) and applied by the
same service method, so the same rules, limits and permissions hold; they are applied in
order, each in its own write (the group-commit writer joins them), and the first refused stops
the rest, so a client keeps the order the master sees: it resends from the refused one (by
its own route, where refusals are already handled) and nothing after it was applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from titan.errors import APIError, ValidationFailed
from titan.master.auth.tokens import Principal
from titan.master.runs.budgets import budget_state
from titan.master.runs.ingest import MAX_BATCH
from titan.master.runs.service import RunService
from titan.storage.base import Row

MAX_OPS = 1000
KINDS = ("create", "code", "actions", "update")
SetCode = Callable[[str, Any, Principal], Awaitable[Any]]
CheckCreate = Callable[[Any], None]


def _check(body: Any) -> list[Row]:
    ops = body.get("ops") if isinstance(body, dict) else None
    if not isinstance(ops, list) or set(body) != {"ops"} or not 1 <= len(ops) <= MAX_OPS:
        raise ValidationFailed(f'the body must be {{"ops": [op, ...]}}, 1 to {MAX_OPS} ops',
                               details={"field": "ops"})
    actions = 0
    for i, op in enumerate(ops):
        kinds = [k for k in KINDS if k in op] if isinstance(op, dict) else []
        if len(kinds) != 1 or not isinstance(op.get("run"), str) or not op["run"] \
                or set(op) != {"run", kinds[0]}:
            raise ValidationFailed(
                f"ops[{i}] must be {{\"run\": id, <one of {', '.join(KINDS)}>: ...}}",
                details={"field": f"ops[{i}]"})
        if kinds[0] == "actions":
            actions += len(op["actions"]) if isinstance(op["actions"], list) else 0
    if actions > MAX_BATCH:
        raise ValidationFailed(f"a batch holds at most {MAX_BATCH} actions in all, got "
                               f"{actions}", details={"field": "ops"})
    return ops


async def apply(runs: RunService, set_code: SetCode, check_create: CheckCreate, body: Any,
                who: Principal) -> Row:
    """Apply ``body``'s ops in order; ``{"applied": n, "results": [...], "error"?: {...}}``,
    the error (``index``, ``status``, ``code``, ``message``, ``details``) that of the first
    op refused, none after it applied. A failure that is the master's own (a 5xx) fails the
    whole request: what it applied before is applied again harmlessly on a resend (runs
    open by id, actions are taken once by id, an end already made is the same end)."""
    ops = _check(body)
    results: list[Row] = []
    for i, op in enumerate(ops):
        run_id = op["run"]
        try:
            if "create" in op:
                fields = op["create"]
                if not isinstance(fields, dict):
                    raise ValidationFailed("the body must be a JSON object")
                fields = dict(fields, id=run_id)
                check_create(fields)
                run, created = await runs.create_run(fields, who, once=True)
                results.append({"created": created, "run": budget_state(run)})
            elif "code" in op:
                await set_code(run_id, op["code"], who)
                results.append({})
            elif "actions" in op:
                results.append(await runs.ingest(run_id, {"actions": op["actions"]}, who))
            else:
                run = await runs.update_run(run_id, op["update"], who)
                results.append({"run": budget_state(run)})
        except APIError as exc:
            return {"applied": i, "results": results, "error": {
                "index": i, "status": exc.status, "code": exc.code, "message": str(exc),
                "details": exc.details}}
    return {"applied": len(ops), "results": results}
