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

import copy
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
# A tool whose name starts with one of these reads: its call may change nothing, and the
# schema says so (ops: an empty array). A small model otherwise "updates" what it just read.
_READ_VERBS = frozenset({"get", "list", "search", "find", "read", "lookup", "look", "check",
                         "fetch", "show", "view", "query", "describe", "count"})
_WRITE_VERBS = frozenset({"add", "create", "new", "make", "open", "update", "set", "edit",
                          "change", "modify", "delete", "remove", "cancel", "close", "issue",
                          "send", "place", "book", "assign", "approve", "reject", "submit",
                          "reset", "transfer", "pay", "apply", "mark", "register", "do", "run"})
# One worked example, from a world unlike any task's: a small model imitates an example far
# better than it follows a rule, and the type enum keeps it from copying "book" into ops.
_EXAMPLE = (
    'EXAMPLE (another world): STATE {"entities":{"book":{"B7":{"title":"Dune","loaned":false}'
    '}}}\nCALL loan_book({"book_id":"B7"}) answer: {"response":{"ok":true,"book_id":"B7"},'
    '"ops":[{"op":"update","type":"book","id":"B7","attrs":{"loaned":true}}]}\n'
    'CALL get_book({"book_id":"B9"}) answer: {"response":{"error":"book B9 not found"},'
    '"ops":[]}')


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
              "properties": {"response": output_schema,
                             "ops": ops_schema(OPS_SCHEMA, str(tool.get("name") or ""), state)},
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
        problems += contradictions(data.get("response"), arguments, state)
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
        "4. ops lists the changes this call makes to the STATE: add (a new entity with its "
        "attrs), update (only the attrs that change), remove, or set_flag (name, value). "
        "A read or a failed call changes nothing: ops is [].",
    ]
    parts = ["\n".join(rules), _EXAMPLE]
    if tool.get("description"):
        parts.append(f"TOOL: {name}: {clip(str(tool['description']), 600)}")
    if behavior and behavior.strip():
        parts.append(f"BEHAVIOUR:\n{clip(behavior.strip(), 1200)}")
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
    raw = state.get("entities")
    entities: dict[str, Any] = raw if isinstance(raw, dict) else {}
    whole = {"entities": entities, "flags": state.get("flags") or {}}
    if state.get("removed"):
        whole["removed"] = state["removed"]
    text = _compact(whole, None)
    if len(text) <= budget:
        return text
    values = {str(v) for v in _scalars(arguments)}
    words = _words(tool_name)

    def rank(etype: str, eid: str) -> int:
        if eid in values:
            return 0
        return 1 if any(_same(w, etype) for w in words) else 2

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


def ops_schema(base: dict[str, Any], tool_name: str, state: dict[str, Any]) -> dict[str, Any]:
    """The ledger's OPS_SCHEMA narrowed to this call: no operation at all for a read-named
    tool, and entity types limited to the world's own plus the nouns of the tool's name
    (``create_ticket`` may add a ``ticket``). Both close doors a small model walks through
    (it writes "type": "string", or updates what it only read); a tool that must do
    otherwise needs a name that says so."""
    if _is_read(tool_name):
        # `items` too: llama.cpp's grammar honours maxItems only on an array with items.
        return {"type": "array", "items": base.get("items", {}), "maxItems": 0}
    schema = copy.deepcopy(base)
    props = schema.get("items", {}).get("properties", {})
    types = _entity_types(state, tool_name)
    if "type" in props and types:
        props["type"] = {"type": "string", "enum": types}
    return schema


def _entity_types(state: dict[str, Any], tool_name: str) -> list[str]:
    known: list[str] = []
    for section in ("entities", "removed"):
        if isinstance(state.get(section), dict):
            known += [t for t in state[section] if t not in known]
    nouns = [w for w in _words(tool_name) if w not in _READ_VERBS | _WRITE_VERBS]
    for candidate in [*nouns, "_".join(nouns)] if len(nouns) > 1 else nouns:
        if candidate and not any(_same(candidate, t) for t in known):
            known.append(candidate)
    return known


def _words(name: str) -> list[str]:
    """``cancelOrder`` / ``cancel-order`` / ``cancel_order`` → ``["cancel", "order"]``."""
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", name) if w]


def _same(a: str, b: str) -> bool:
    """One entity type, singular or plural (``order`` / ``orders``)."""
    return a.lower().rstrip("s") == b.lower().rstrip("s")


_MISSING = re.compile(r"not\s+found|does\s*n[o']t\s+exist|no\s+such|unknown\s+\w+\s+id",
                      re.IGNORECASE)


def contradictions(response: Any, arguments: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Answers the world contradicts, in words a model can act on. A small model often says
    an entity was "not found" while the STATE holds it (an output schema with an ``error``
    field invites it); that is checkable, so it is checked rather than trusted."""
    text = json.dumps(response, default=str)
    if not _MISSING.search(text):
        return []
    live = state.get("entities") or {}
    found = []
    for value in _scalars(arguments):
        for etype, entities in live.items():
            if isinstance(entities, dict) and str(value) in entities:
                found.append(f"{etype} {value} exists in the STATE: answer with its data, "
                             "not that it was not found")
    return found[:3]


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    return [value] if value is not None else []


def _is_read(name: str) -> bool:
    words = _words(name)
    return bool(words) and words[0] in _READ_VERBS


def _compact(value: Any, limit: int | None) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                           ensure_ascii=False, default=str)
    return text if limit is None else clip(text, limit)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
