"""The tool simulator: an LLM plays a declared tool against the run's seeded world.

Each simulated call is one :func:`titan.llm.complete` request whose JSON answer holds both
what the agent gets back (``response``) and what the call did to the world (``ops``, ledger
operations, applied by the caller through :class:`titan.evals.ledger.Ledger`). Asking for
the operations instead of a rewritten state keeps the world honest: the ledger refuses an
operation that contradicts it, and the trace shows exactly what each step changed.

The default model is a 0.5B local one, so the prompt is short and concrete, the state is cut
to the slice the call is about, and the JSON schema (a grammar, locally) does most of the
work. Nothing here raises: a call that cannot be simulated becomes a :class:`SimResult`
with ``error`` set, which the proxy records as source ``error``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from titan import llm
from titan.errors import LLMError

STATE_BUDGET_CHARS = 3000  # the slice of the world shown to the model
HISTORY_CALLS = 5  # the latest earlier calls shown, for consistency between answers
SNIPPET_CHARS = 200
MAX_TOKENS = 700
# Tool names that read: a hint to the model that such a call changes nothing (not enforced:
# a tool like get_or_create_session does write).
_READ_VERBS = ("get", "list", "search", "find", "read", "lookup", "look", "check", "fetch",
               "show", "view", "query", "describe", "count")


@dataclass
class SimResult:
    """One simulated call: the agent's answer and the world's change, or why neither."""

    response: Any
    ops: list[dict[str, Any]]
    error: str | None
    cost_usd: float | None  # None: the price of at least one attempt is unknown
    usage: dict[str, int]
    model: str
    duration_s: float


@dataclass
class _Spend:
    """What the attempts cost, summed (an unknown price makes the total unknown)."""

    usage: llm.Usage = field(default_factory=llm.Usage)
    cost_usd: float | None = 0.0
    model: str = ""

    def add(self, c: llm.Completion) -> None:
        self.usage = self.usage + c.usage
        self.cost_usd = None if self.cost_usd is None or c.cost_usd is None \
            else self.cost_usd + c.cost_usd
        self.model = c.model


def simulate(tool: dict[str, Any], arguments: dict[str, Any], state: dict[str, Any],
             behavior_instructions: str | None, history: list[dict[str, Any]], *,
             model: str | None = None) -> SimResult:
    """Answer ``tool(arguments)`` as the real tool would in world ``state`` (a ledger
    snapshot), following ``behavior_instructions``, consistently with ``history`` (the
    run's earlier calls). At most two requests; never raises."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    from titan.evals.ledger import OPS_SCHEMA, validate_op  # lazy: a sibling module

    t0 = time.perf_counter()
    spend = _Spend(model=model or os.environ.get("TITAN_LLM_MODEL") or llm.DEFAULT_MODEL)

    def failed(why: str) -> SimResult:
        return SimResult(None, [], f"the simulator could not produce a valid response: {why}",
                         spend.cost_usd, spend.usage.to_dict(), spend.model,
                         time.perf_counter() - t0)

    output_schema = tool.get("output_schema") or {"type": "object"}
    try:
        Draft202012Validator.check_schema(output_schema)
    except SchemaError as exc:  # the agent config's mistake: no model call can fix it
        return failed(f"tool {tool.get('name')}'s output_schema is not a valid JSON Schema: "
                      f"{exc.message}")
    schema = {"type": "object",
              "properties": {"response": output_schema, "ops": OPS_SCHEMA},
              "required": ["response", "ops"]}  # extras are ignored, not worth a repair
    response_validator = Draft202012Validator(output_schema)
    messages = _prompt(tool, arguments, state, behavior_instructions, history)
    for attempt in (1, 2):
        try:
            c = llm.complete(messages, model=model, json_schema=schema, temperature=0,
                             max_tokens=MAX_TOKENS)
        except LLMError as exc:
            # InvalidOutput included: the layer has already asked once for a repair with the
            # problems stated, which is this module's one retry spent.
            return failed(str(exc))
        spend.add(c)
        data = c.data if isinstance(c.data, dict) else {}
        problems = _problems(data, response_validator, validate_op)
        if not problems:
            return SimResult(data["response"], list(data["ops"]), None, spend.cost_usd,
                             spend.usage.to_dict(), spend.model, time.perf_counter() - t0)
        if attempt == 2:
            return failed("; ".join(problems[:3]))
        messages = [*messages, {"role": "assistant", "content": c.text},
                    {"role": "user", "content": "That answer is wrong: " + "; ".join(problems[:5])
                     + ". Reply again with the corrected JSON only."}]
    raise AssertionError("unreachable")  # pragma: no cover


def _problems(data: dict[str, Any], response_validator: Any, validate_op: Any) -> list[str]:
    """What is wrong with an answer, in words a model can act on ([] when it is usable).

    The LLM layer validated the whole schema already; checking again here costs nothing and
    adds what a schema cannot say (each op's fields for its kind)."""
    found = [f"response/{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
             for e in response_validator.iter_errors(data.get("response"))][:3]
    ops = data.get("ops")
    if "response" not in data:
        found.insert(0, "the answer has no response")
    if not isinstance(ops, list):
        found.append("ops must be a list of operations ([] when nothing changes)")
        return found
    for i, op in enumerate(ops):
        reason = validate_op(op)
        if reason:
            found.append(f"ops[{i}]: {reason}")
    return found


def _prompt(tool: dict[str, Any], arguments: dict[str, Any], state: dict[str, Any],
            behavior: str | None, history: list[dict[str, Any]]) -> list[llm.Message]:
    name = str(tool.get("name") or "tool")
    rules = [
        f"You are the tool `{name}` in a test world. Answer exactly as the real tool would.",
        "Rules:",
        "1. Use only facts from the STATE. Never invent ids or values it does not have. If the "
        "call names something missing from the STATE, the response says it was not found.",
        "2. Follow the BEHAVIOUR rules when there are any.",
        "3. Stay consistent with the EARLIER CALLS.",
        "4. ops lists the changes this call makes to the STATE. A read changes nothing: "
        "ops is []. Op forms: {\"op\":\"add\",\"type\":T,\"id\":I,\"attrs\":{...}}, "
        "{\"op\":\"update\",\"type\":T,\"id\":I,\"attrs\":{only changed attrs}}, "
        "{\"op\":\"remove\",\"type\":T,\"id\":I}, {\"op\":\"set_flag\",\"name\":N,\"value\":V}.",
    ]
    if _is_read(name):
        rules.append(f"`{name}` looks like a read, so ops is most likely [].")
    parts = ["\n".join(rules)]
    if tool.get("description"):
        parts.append(f"TOOL: {name}: {_clip(str(tool['description']), 600)}")
    if behavior and behavior.strip():
        parts.append(f"BEHAVIOUR:\n{_clip(behavior.strip(), 1200)}")
    parts.append("STATE:\n" + relevant_state(state, name, arguments))
    earlier = [h for h in history if isinstance(h, dict)][-HISTORY_CALLS:]
    if earlier:
        lines = [f"- {h.get('tool')}({_compact(h.get('arguments'), SNIPPET_CHARS)}) -> "
                 f"{_compact(h.get('response'), SNIPPET_CHARS)}" for h in earlier]
        parts.append("EARLIER CALLS:\n" + "\n".join(lines))
    call = f"CALL: {name}({_compact(arguments, 1500)})\nAnswer with JSON: " \
           '{"response": <what the tool returns>, "ops": [<changes>]}'
    return [{"role": "system", "content": "\n\n".join(parts)},
            {"role": "user", "content": call}]


def relevant_state(state: dict[str, Any], tool_name: str, arguments: dict[str, Any],
                   budget: int = STATE_BUDGET_CHARS) -> str:
    """The world as compact JSON, cut to about ``budget`` characters when it is bigger.

    Entities come in order of relevance: those whose id appears among the call's argument
    values, then those whose type matches a word of the tool's name (``cancel_order`` →
    ``order``/``orders``), then the rest; flags always (they are few and global)."""
    entities = state.get("entities") if isinstance(state.get("entities"), dict) else {}
    whole = {"entities": entities, "flags": state.get("flags") or {}}
    if state.get("removed"):
        whole["removed"] = state["removed"]
    text = _compact(whole, None)
    if len(text) <= budget:
        return text
    values = {str(v) for v in _scalars(arguments)}
    words = {w for w in re.split(r"[^a-z0-9]+", tool_name.lower()) if w}

    def rank(etype: str, eid: str) -> int:
        if eid in values:
            return 0
        stem = etype.lower().rstrip("s")
        return 1 if stem and any(w.rstrip("s") == stem for w in words) else 2

    ranked = sorted(((rank(t, i), t, i) for t, by_id in entities.items()
                     if isinstance(by_id, dict) for i in by_id), key=lambda r: r[0])
    shown: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {"entities": shown, "flags": whole["flags"]}
    used, left = len(_compact(out, None)), 0
    for _, etype, eid in ranked:
        size = len(_compact({eid: entities[etype][eid]}, None)) + len(etype) + 4
        if used + size > budget:
            left += 1
            continue
        shown.setdefault(etype, {})[eid] = entities[etype][eid]
        used += size
    note = f"\n({left} more entities not shown: not related to this call)" if left else ""
    return _compact(out, None) + note


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    return [value] if value is not None else []


def _is_read(name: str) -> bool:
    first = re.split(r"[^a-z0-9]+|(?<=[a-z])(?=[A-Z])", name)[0].lower() if name else ""
    return first in _READ_VERBS


def _compact(value: Any, limit: int | None) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                           ensure_ascii=False, default=str)
    return text if limit is None else _clip(text, limit)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
