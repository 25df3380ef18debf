"""OTLP spans → Titan actions: the mapping in, for the GenAI conventions and OpenInference.

Each span becomes one action of its trace's run, in the shape ``POST /runs/{id}/actions``
takes (the run service checks it like any client's): LLM spans (OpenInference ``LLM``, or
``gen_ai.operation.name`` chat / text_completion / generate_content) become ``call_llm`` on
the ``llm`` channel with their messages, parameters, model, usage and cost; embeddings become
``embeddings``; tool spans (``TOOL``, ``execute_tool``, OpenLLMetry's ``tool``) a ``tool``
action named for the tool;
everything else (agents, chains, retrievers...) a ``custom`` action named for the span. Which
sub-agent made a span is not in the span itself: :mod:`.receiver` works it out from the tree
(``AGENT`` / ``invoke_agent`` ancestors, :mod:`.actors`) and hands it in as ``actor``.
docs/opentelemetry.md has the table, and what does not survive the trip.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from titan.errors import TitanError
from titan.llm.pricing import hosted_cost
from titan.llm.types import Usage
from titan.master.otel.actors import actor_path, agent_name
from titan.master.otel.attributes import LOOP_NAME, clean, first, first_int, first_str, number
from titan.master.otel.ids import action_id_of_span
from titan.master.otel.messages import (
    as_list,
    from_parts,
    parsed,
    read_messages,
    text_of,
)
from titan.master.otel.wire import STATUS_ERROR, Span
from titan.master.runs.ingest import ERROR_CHARS, MAX_DURATION_NS, MAX_USD
from titan.storage.base import Row
from titan.trace.canonical import dumps

LLM, EMBEDDING, TOOL, AGENT, STEP = "llm", "embedding", "tool", "agent", "step"
Pricer = Callable[[str, Usage], tuple[float | None, str]]
_KIND_NAMES = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER",
               5: "CONSUMER"}
_LLM_OPS = ("chat", "text_completion", "generate_content")
_PARAMS = ("temperature", "max_tokens", "top_p", "top_k", "seed", "stop_sequences",
           "frequency_penalty", "presence_penalty", "choice.count")
#: Attributes an action already holds in its own fields: not repeated in its tags.
_CONSUMED = re.compile(
    r"^(llm\.(input_messages|output_messages|token_count|model_name|request\.model_name|"
    r"response\.model_name|invocation_parameters|provider|system|cost)|gen_ai\.(prompt|"
    r"completion|input\.messages|output\.messages|system_instructions|usage|request|"
    r"response\.model|response\.finish_reasons|tool\.call|tool\.name|operation\.name|"
    r"provider\.name|system|agent\.name)|input\.|output\.|tool\.name|openinference\.span\.kind"
    r"|embedding\.model_name|exception\.|traceloop\.entity\.(input|output)$)")
#: A span's inputs and outputs: OpenInference's, else OpenLLMetry's (its decorators' JSON
#: ``{"args", "kwargs"}`` and result).
_INPUT = ("input.value", "traceloop.entity.input")
_OUTPUT = ("output.value", "traceloop.entity.output")
#: Attributes that carry credentials by their name (the last part of it): an instrumented HTTP
#: client's ``http.request.header.authorization`` holds the provider key itself, and
#: redaction knows only the key formats it has patterns for. Never copied into tags; their
#: names are (``attributes_dropped``), so a reader knows something was sent.
_SECRET = re.compile(r"authorization|cookie|api[-_]?key|passw(or)?d|secret|credential"
                     r"|private[-_]?key|token$", re.IGNORECASE)
_TAG_BUDGET = 12_000  # characters of leftover attributes kept in tags (tags hold 16 KiB)
EPOCH_2000 = 946_684_800.0  # the run service refuses times before 2000


def kind_of(span: Span) -> str:
    """What a span is, by OpenInference's span kind, else the GenAI operation name, else
    OpenLLMetry's ``traceloop.span.kind``, else whether it names a model."""
    a = span.attributes
    oi = str(a.get("openinference.span.kind") or "").upper()
    op = str(a.get("gen_ai.operation.name") or "").lower()
    loop = str(a.get("traceloop.span.kind") or "").lower()
    if oi == "LLM" or op in _LLM_OPS:
        return LLM
    if oi == "EMBEDDING" or op == "embeddings":
        return EMBEDDING
    if oi == "TOOL" or op == "execute_tool" or loop == "tool":
        return TOOL
    if oi == "AGENT" or op in ("invoke_agent", "create_agent") or loop == "agent":
        return AGENT
    if not oi and ("gen_ai.request.model" in a or "llm.request.type" in a):
        return LLM  # OpenLLMetry's LLM spans carry no operation name in older releases
    return STEP


def action_of(span: Span, actor: str, ordinal: int | None, price: Pricer = hosted_cost,
              now: float | None = None) -> Row:
    """The action a span becomes (the ingestion API's fields)."""
    kind = kind_of(span)
    a = span.attributes
    started, duration = span_times(span, now or time.time())
    action: Row = {"id": action_id_of_span(span.span_id), "parent_id": span.parent_id,
                   "actor": actor_path(actor), "ordinal": ordinal, "started_at": started,
                   "duration_ns": duration, "tags": _tags(span)}
    error = span_error(span)
    if error is not None:
        action.update(error=error, outcome="error")
    if kind in (LLM, EMBEDDING):
        model = first_str(a, "gen_ai.response.model", "llm.response.model_name",
                           "llm.model_name", "embedding.model_name", "gen_ai.request.model",
                           "llm.request.model_name") or _invoked_model(a)
        usage = _usage(a)
        action.update(channel="llm", name="call_llm" if kind == LLM else "embeddings",
                      inputs=_llm_inputs(a), outputs=None if error else _llm_outputs(a),
                      model=clean(model, 200) if model else None, usage=usage or None)
        action.update(_cost(a, model, usage, price, embedding=kind == EMBEDDING))
    elif kind == TOOL:
        name = first_str(a, "gen_ai.tool.name", "tool.name", LOOP_NAME) or \
            span.name.removeprefix("execute_tool ")
        action.update(channel="tool", name=clean(name.strip(), 200) or "tool",
                      inputs=_as_inputs(first(a, "gen_ai.tool.call.arguments", *_INPUT)),
                      outputs=parsed(first(a, "gen_ai.tool.call.result", *_OUTPUT)))
    else:
        inputs = first(a, *_INPUT)
        messages = parsed(a.get("gen_ai.input.messages"))
        action.update(channel="custom", name=clean(span.name.strip(), 200) or kind,
                      inputs={"messages": from_parts(messages)} if isinstance(messages, list)
                      and inputs is None else _as_inputs(inputs),
                      outputs=parsed(first(a, *_OUTPUT)))
    return action


def bare_action(span: Span, actor: str, problem: BaseException) -> Row:
    """What a span becomes when :func:`action_of` cannot read it: a ``custom`` action with
    its name, place in the tree and times, and why the rest was left out (in its tags), so
    its children still hang from it."""
    started, duration = span_times(span, time.time())
    otel = {"span": clean(span.name, 200), "unreadable": clean(repr(problem), 500)}
    return {"id": action_id_of_span(span.span_id), "parent_id": span.parent_id,
            "actor": actor_path(actor) or "otel", "channel": "custom",
            "name": clean(span.name.strip(), 200) or "span", "started_at": started,
            "duration_ns": duration, "tags": {"otel": otel}}


def span_times(span: Span, now: float) -> tuple[float, int]:
    """Start (epoch seconds) and duration; a span with no usable start is placed at its end,
    else now, since the run service refuses times outside 2000..tomorrow and durations past
    ~3 years: a start that far before its end (a clock set late) is no usable start."""
    latest = now + 86_000
    start, end = span.start_ns / 1e9, span.end_ns / 1e9
    start_ok, end_ok = EPOCH_2000 <= start <= latest, EPOCH_2000 <= end <= latest
    duration = max(0, span.end_ns - span.start_ns) if start_ok and end_ok else 0
    if start_ok and duration <= MAX_DURATION_NS:
        return start, duration
    return (end if end_ok else now), 0


def span_error(span: Span) -> Row | None:
    """The span's error as an action states it, or None when its status is not an error."""
    if span.status_code != STATUS_ERROR:
        return None
    kind, message = "Error", span.status_message
    for name, _, attrs in span.events:
        if name == "exception":
            kind = str(attrs.get("exception.type") or kind)
            message = message or str(attrs.get("exception.message") or "")
    kind = str(span.attributes.get("error.type") or kind)
    return {"type": clean(kind, 200) or "Error",
            "message": clean(message or "error", ERROR_CHARS)}


def _usage(a: dict[str, Any]) -> Row:
    found = {
        "input_tokens": first_int(a, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                                   "llm.token_count.prompt"),
        "output_tokens": first_int(a, "gen_ai.usage.output_tokens",
                                    "gen_ai.usage.completion_tokens",
                                    "llm.token_count.completion"),
        "cached_tokens": first_int(a, "gen_ai.usage.cache_read.input_tokens",
                                    "gen_ai.usage.cache_read_input_tokens",
                                    "llm.token_count.prompt_details.cache_read"),
        "reasoning_tokens": first_int(a, "gen_ai.usage.reasoning.output_tokens",
                                       "llm.token_count.completion_details.reasoning"),
    }
    return {k: v for k, v in found.items() if v is not None}


def _cost(a: dict[str, Any], model: str | None, usage: Row, price: Pricer, *,
          embedding: bool = False) -> Row:
    """The span's own cost when it states one, else Titan's price for the model (the
    registered price, LiteLLM's map, Titan's table), tried as named and with its provider,
    from its counts: both (a call's input and output; an embedding's input alone), else
    unknown — a missing or unreadable count priced as 0 would be a cost too low."""
    stated = number(a.get("llm.cost.total"))
    if stated is not None and 0 <= stated <= MAX_USD:
        return {"cost_usd": stated, "cost_source": "span"}
    # A cost past belief (negative, 1e300) is no cost stated: the call is priced from its
    # model, and a call nothing prices is unknown (an unpriced call, never $0).
    needed = ("input_tokens",) if embedding else ("input_tokens", "output_tokens")
    if not model or any(k not in usage for k in needed):
        return {"cost_source": "unknown"}
    tokens = Usage(**{k: int(v) for k, v in usage.items()})
    provider = first_str(a, "gen_ai.provider.name", "gen_ai.system", "llm.provider",
                          "llm.system")
    names = [model]
    if provider and "/" not in model:
        names.append(f"{provider.removeprefix('gcp.').lower()}/{model}")
    for name in names:
        try:
            cost, source = price(name, tokens)
        except TitanError:  # no LiteLLM here, or a bad TITAN_LLM_PRICES: the price is unknown
            continue
        if cost is not None and 0 <= cost <= MAX_USD:
            return {"cost_usd": cost, "cost_source": source}
    return {"cost_source": "unknown"}


def _llm_inputs(a: dict[str, Any]) -> Row:
    messages = read_messages(a, "llm.input_messages.", "gen_ai.prompt.", "gen_ai.input.messages")
    system = parsed(a.get("gen_ai.system_instructions"))
    if isinstance(system, list):
        messages = [{"role": "system", "content": text_of(system)}, *(messages or [])]
    inputs: Row = {"model": first_str(a, "gen_ai.request.model", "llm.request.model_name",
                                       "llm.model_name", "embedding.model_name")
                   or _invoked_model(a)}
    if messages:
        inputs["messages"] = messages
    else:
        raw = first(a, *_INPUT)
        if raw is not None:
            inputs["input"] = parsed(raw)
    params = parsed(a.get("llm.invocation_parameters"))
    params = dict(params) if isinstance(params, dict) else {}
    for key in _PARAMS:
        if f"gen_ai.request.{key}" in a:
            params.setdefault(key, a[f"gen_ai.request.{key}"])
    params.pop("model", None)
    inputs["params"] = params
    return inputs


def _invoked_model(a: dict[str, Any]) -> str | None:
    """The model of ``llm.invocation_parameters`` (JSON): where OpenInference names it for a
    call that failed, whose span has no ``llm.model_name``."""
    params = parsed(a.get("llm.invocation_parameters"))
    model = params.get("model") if isinstance(params, dict) else None
    return first_str({"model": model}, "model")


def _llm_outputs(a: dict[str, Any]) -> Row:
    messages = read_messages(a, "llm.output_messages.", "gen_ai.completion.",
                         "gen_ai.output.messages") or []
    out: Row = {"text": "".join(str(m.get("content") or "") for m in messages)}
    reasons = a.get("gen_ai.response.finish_reasons") or a.get("llm.finish_reason")
    finish = next((m["finish_reason"] for m in messages if m.get("finish_reason")), None)
    if finish is None and reasons:
        finish = reasons[0] if isinstance(reasons, list) else reasons
    out["finish_reason"] = finish
    calls = [c for m in messages for c in as_list(m.get("tool_calls"))]
    if calls:
        out["tool_calls"] = calls
    raw = first(a, *_OUTPUT)
    if not messages and raw is not None:
        out = {"output": parsed(raw)}
    return out


def _tags(span: Span) -> Row:
    """Where the span came from, and its other attributes as far as 12 KB of them go (but
    those named for credentials). They are recorded content, not labels: the run service
    redacts PII in them as in inputs (runs/compliance.py)."""
    a = span.attributes
    otel: Row = {"span": span.name[:200], "kind": _KIND_NAMES.get(span.kind, str(span.kind))}
    if kind_of(span) == AGENT:  # what its children's actor adds (recorded_agent)
        otel["agent"] = agent_name(span)
    for key, value in (("service", span.resource.get("service.name")), ("scope", span.scope),
                       ("openinference.span.kind", a.get("openinference.span.kind")),
                       ("gen_ai.operation.name", a.get("gen_ai.operation.name"))):
        if value:
            otel[key] = str(value)[:200]
    rest: Row = {}
    used = 0
    dropped = []
    for key, value in sorted(a.items()):
        if _CONSUMED.match(key):
            continue
        if _SECRET.search(key.rsplit(".", 1)[-1]):
            dropped.append(key[:100])
            continue
        if isinstance(value, str) and len(value) > 500:
            value = value[:500] + "…"
        cost = len(key) + len(dumps(value)) + 6  # quotes, colon, comma
        if used + cost > _TAG_BUDGET:
            otel["attributes_truncated"] = True
            break
        rest[key] = value
        used += cost
    if rest:
        otel["attributes"] = rest
    if dropped:
        otel["attributes_dropped"] = dropped[:10]  # within the 16 KiB tags hold
    return {"otel": otel}


def _as_inputs(value: Any) -> Any:
    value = parsed(value)
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"input": value}
