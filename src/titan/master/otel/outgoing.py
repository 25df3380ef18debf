"""Titan → OTLP spans: the mapping out, in the GenAI conventions (and OpenInference's too).

A run is a trace whose root is an ``invoke_agent`` span; each actor path below the run's own
agent is a span (``ITER1`` a stage, ``invoke_workflow``; ``ITER1/researcher-2`` its job or a
sub-agent, ``invoke_agent``), each action a span under the action it ran inside, else under
its actor: ``call_llm`` a ``chat`` span (CLIENT) with ``gen_ai.request.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``; a tool an ``execute_tool`` span; anything
else a span named for the action. OpenInference's attributes (``openinference.span.kind``,
``llm.model_name``, ``llm.token_count.*``, ``input.value``) go beside them, because Phoenix and
Arize read those. Token counts are only on LLM spans: backends sum them up the tree. A run
that came in over OTLP goes out as it came: its spans, its roots still roots.
Ids come from :mod:`.ids`; docs/opentelemetry.md has the table and what is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from titan.master.otel import ids
from titan.master.otel.actors import recorded_agent
from titan.master.otel.wire import CLIENT, INTERNAL, STATUS_ERROR, STATUS_OK, key_values
from titan.storage.base import Row
from titan.trace.naming import run_aliases, stage_label

#: Titan's provider prefixes as GenAI's ``gen_ai.provider.name`` spells them.
_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini",
              "vertex_ai": "gcp.vertex_ai", "bedrock": "aws.bedrock", "mistral": "mistral_ai",
              "groq": "groq", "deepseek": "deepseek", "cohere": "cohere", "xai": "x_ai"}
_PARAMS = ("temperature", "max_tokens", "top_p", "top_k", "seed", "frequency_penalty",
           "presence_penalty")
_FAILED_JOB = frozenset({"FAILED", "TIMED_OUT", "REJECTED", "EXPIRED"})


def action_span(run_id: str, agent: str, a: Row, content: bool) -> Span:
    """One recorded action (a row as the run service stores it) as a span."""
    start = _ns(a["started_at"])
    channel, name, model = a["channel"], a["name"], a.get("model")
    attrs: Row = {"titan.run.id": run_id, "titan.action.id": a["id"],
                  "titan.actor": a["actor"], "titan.channel": channel,
                  "titan.ordinal": a.get("ordinal"), "titan.outcome": a["outcome"],
                  "titan.cost_usd": a.get("cost_usd"), "titan.cost_source": a.get("cost_source"),
                  "titan.replay_status": a.get("replay_status")}
    inputs, outputs = _json(a.get("inputs")), _json(a.get("outputs"))
    kind = INTERNAL
    if channel == "llm":
        kind = CLIENT
        requested = inputs.get("model") if isinstance(inputs, dict) else None
        span_name = f"chat {model or requested or ''}".strip()
        attrs.update(_llm(a, requested, inputs, outputs, content))
    elif channel == "tool":
        span_name = f"execute_tool {name}"
        attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                      "tool.name": name, "openinference.span.kind": "TOOL"})
        if content:
            attrs.update({"gen_ai.tool.call.arguments": a.get("inputs"),
                          "gen_ai.tool.call.result": a.get("outputs")})
    elif (sub_agent := recorded_agent(a.get("tags"))) is not None:
        span_name = name  # an agent span that came in over OTLP goes out as one again
        attrs.update({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": sub_agent,
                      "agent.name": sub_agent, "openinference.span.kind": "AGENT"})
    else:
        span_name = name
        attrs["openinference.span.kind"] = "CHAIN"
    if content:
        attrs.update(_values(a.get("inputs"), a.get("outputs")))
    if a.get("parent_id"):
        parent = ids.action_span_id(run_id, a["parent_id"])
    elif ids.is_imported_run(run_id):
        parent = b""  # a trace that came in over OTLP goes out in its shape: its roots stay
    else:
        parent = _actor_parent(run_id, agent, a["actor"])
    span = Span(trace_id=ids.trace_id(run_id), span_id=ids.action_span_id(run_id, a["id"]),
                parent_span_id=parent, name=span_name, kind=kind,  # type: ignore[arg-type]
                start_time_unix_nano=start,
                end_time_unix_nano=start + max(0, int(a.get("duration_ns") or 0)),
                attributes=key_values(attrs))
    if a["outcome"] in ("error", "blocked"):
        # An imported span's status message goes out as it came (its type is error.type).
        _fail(span, a.get("error_type") or a["outcome"], a.get("error_message") or "",
              as_recorded=ids.is_imported_run(run_id))
    return span


def _llm(a: Row, requested: Any, inputs: Any, outputs: Any, content: bool) -> Row:
    model = a.get("model") or requested
    provider = str(model).partition("/")[0] if model and "/" in str(model) else None
    attrs: Row = {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": requested or model,
        "gen_ai.response.model": a.get("model"),
        "gen_ai.provider.name": _PROVIDERS.get(provider or "", provider),
        "gen_ai.usage.input_tokens": a.get("input_tokens"),
        "gen_ai.usage.output_tokens": a.get("output_tokens"),
        "gen_ai.usage.cache_read.input_tokens": a.get("cached_tokens"),
        "gen_ai.usage.reasoning.output_tokens": a.get("reasoning_tokens"),
        "openinference.span.kind": "LLM", "llm.model_name": model, "llm.provider": provider,
        "llm.token_count.prompt": a.get("input_tokens"),
        "llm.token_count.completion": a.get("output_tokens"),
        "llm.token_count.prompt_details.cache_read": a.get("cached_tokens"),
        "llm.token_count.completion_details.reasoning": a.get("reasoning_tokens"),
        "llm.cost.total": a.get("cost_usd"),
    }
    if a.get("input_tokens") is not None or a.get("output_tokens") is not None:
        attrs["llm.token_count.total"] = (a.get("input_tokens") or 0) + (
            a.get("output_tokens") or 0)
    params = inputs.get("params") if isinstance(inputs, dict) else None
    if isinstance(params, dict):
        for key in _PARAMS:
            if isinstance(params.get(key), int | float):
                attrs[f"gen_ai.request.{key}"] = params[key]
        attrs["llm.invocation_parameters"] = json.dumps(params, sort_keys=True)
    finish = outputs.get("finish_reason") if isinstance(outputs, dict) else None
    if finish:
        attrs["gen_ai.response.finish_reasons"] = [str(finish)]
    if not content:
        return attrs
    messages = inputs.get("messages") if isinstance(inputs, dict) else None
    if isinstance(messages, list):
        attrs["gen_ai.input.messages"] = json.dumps(_parts(messages), ensure_ascii=False)
        for i, m in enumerate(messages):
            if isinstance(m, dict):
                attrs[f"llm.input_messages.{i}.message.role"] = m.get("role")
                attrs[f"llm.input_messages.{i}.message.content"] = _text(m.get("content"))
    if isinstance(outputs, dict) and outputs.get("text") is not None:
        answer = {"role": "assistant", "content": str(outputs["text"]), "finish_reason": finish,
                  "tool_calls": outputs.get("tool_calls") if isinstance(
                      outputs.get("tool_calls"), list) else None}
        attrs["gen_ai.output.messages"] = json.dumps(_parts([answer]), ensure_ascii=False)
        attrs["llm.output_messages.0.message.role"] = "assistant"
        attrs["llm.output_messages.0.message.content"] = str(outputs["text"])
        for j, call in enumerate(c for c in answer["tool_calls"] or () if isinstance(c, dict)):
            fn: Row = call["function"] if isinstance(call.get("function"), dict) else {}
            at = f"llm.output_messages.0.message.tool_calls.{j}.tool_call."
            attrs.update({at + "id": call.get("id"), at + "function.name": fn.get("name"),
                          at + "function.arguments": fn.get("arguments")})
    return attrs


def run_spans(run: Row, dags: list[Row], jobs: list[Row],
              actions: Iterable[tuple[str, float, int]]) -> list[Span]:
    """The run's root span and a span per actor path (stages, jobs, sub-agents), built when
    the run ends: ``actions`` gives (actor, started_at, duration_ns) of each of its actions,
    for the actor spans' extents."""
    run_id = run["id"]
    if ids.is_imported_run(run_id):
        # A trace that came in over OTLP has its root and its sub-agents' spans among its
        # actions already: a Titan root above them (and actor spans beside) changed its shape.
        return []
    agent = agent_of(run)
    started = run.get("started_at") or run["created_at"]
    ended = run.get("ended_at") or run.get("last_action_at") or started
    attrs: Row = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                  "gen_ai.agent.version": run.get("agent_version"),
                  "openinference.span.kind": "AGENT", "agent.name": agent,
                  "titan.run.id": run_id, "titan.run.status": run["status"],
                  "titan.run.cost_usd": run.get("cost_usd"),
                  "titan.run.action_count": run.get("action_count"),
                  "titan.run.budget_usd": run.get("budget_usd")}
    root = Span(trace_id=ids.trace_id(run_id), span_id=ids.run_span_id(run_id),
                name=f"invoke_agent {agent}", kind=INTERNAL,  # type: ignore[arg-type]
                start_time_unix_nano=_ns(started), end_time_unix_nano=_ns(ended),
                attributes=key_values(attrs))
    if run["status"] == "failed":
        _fail(root, "RunFailed", run.get("error") or "the run failed")
    else:
        root.status.code = STATUS_OK  # type: ignore[assignment]
    # Every actor path and each of its prefixes, with the time its actions cover.
    extent: dict[str, list[float]] = {}
    for actor, at, duration in actions:
        end = at + duration / 1e9
        parts = actor.split("/")
        for i in range(1, len(parts) + 1):
            span = extent.setdefault("/".join(parts[:i]), [at, end])
            span[0], span[1] = min(span[0], at), max(span[1], end)
    known: dict[str, tuple[str, Row, float | None, float | None, bool]] = {}
    aliases = run_aliases(run)
    names = {d["id"]: stage_label(d["name"], run_id, aliases) for d in dags}
    for d in dags:
        known[names[d["id"]]] = ("stage", {
            "gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": names[d["id"]],
            "openinference.span.kind": "CHAIN", "titan.stage.dag": f"{d['name']}#{d['run']}",
            "titan.stage.status": d["status"]},
            d.get("started_at") or d["submitted_at"], d.get("finished_at"),
            d["status"] in ("FAILED", "PARTIAL", "CANCELLED"))
    for j in jobs:
        path = f"{names[j['dag_id']]}/{j['job_id']}"
        known[path] = ("job", {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": j["job_id"],
            "openinference.span.kind": "AGENT", "agent.name": j["job_id"],
            "titan.job.id": j["id"], "titan.job.state": j["state"],
            "titan.job.attempt": j.get("attempt"), "titan.job.worker": j.get("worker_id"),
            "titan.job.exit_code": j.get("exit_code")},
            j.get("started_at") or j.get("ready_at") or j["submitted_at"], j.get("finished_at"),
            j["state"] in _FAILED_JOB)
        extent.setdefault(names[j["dag_id"]], [])
        extent.setdefault(path, [])
    spans = [root]
    for path, times in sorted(extent.items()):
        if path == agent or not path:
            continue  # the run's own actor is the run's span
        what, attrs, begin, finish, failed = known.get(path) or ("actor", {}, None, None, False)
        if what == "actor":
            segment = path.rsplit("/", 1)[-1]
            attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": segment,
                     "openinference.span.kind": "AGENT", "agent.name": segment}
        first = min([t for t in (begin, times[0] if times else None) if t is not None],
                    default=started)
        last = max([t for t in (finish, times[1] if times else None) if t is not None],
                   default=ended)
        label = {"stage": "invoke_workflow", "job": "invoke_agent", "actor": "invoke_agent"}
        span = Span(trace_id=ids.trace_id(run_id), span_id=ids.actor_span_id(run_id, path),
                    parent_span_id=_actor_parent(run_id, agent, path.rpartition("/")[0]),
                    name=f"{label[what]} {path.rsplit('/', 1)[-1]}",
                    kind=INTERNAL,  # type: ignore[arg-type]
                    start_time_unix_nano=_ns(first), end_time_unix_nano=_ns(max(first, last)),
                    attributes=key_values({**attrs, "titan.run.id": run_id,
                                           "titan.actor": path}))
        if failed:
            _fail(span, "Failed", f"{what} {path} failed")
        spans.append(span)
    return spans


def agent_of(run: Row) -> str:
    """The run's own actor: its agent (what ``trace.run`` names its top actor)."""
    return str(run.get("agent_id") or run["id"])


def _actor_parent(run_id: str, agent: str, actor: str) -> bytes:
    if not actor or actor == agent:
        return ids.run_span_id(run_id)
    return ids.actor_span_id(run_id, actor)


def _fail(span: Span, kind: str, message: str, *, as_recorded: bool = False) -> None:
    status = message if as_recorded else f"{kind}: {message}"
    span.status.CopyFrom(Status(code=STATUS_ERROR,  # type: ignore[arg-type]
                                message=status[:1000]))
    span.attributes.extend(key_values({"error.type": kind}))
    event = span.events.add(name="exception", time_unix_nano=span.end_time_unix_nano)
    event.attributes.extend(key_values({"exception.type": kind, "exception.message": message}))


def _values(inputs: str | None, outputs: str | None) -> Row:
    attrs: Row = {}
    if inputs is not None:
        attrs.update({"input.value": inputs, "input.mime_type": "application/json"})
    if outputs is not None:
        attrs.update({"output.value": outputs, "output.mime_type": "application/json"})
    return attrs


def _parts(messages: list[Any]) -> list[Row]:
    """OpenAI-shaped messages as GenAI's ``{"role", "parts": [...]}``."""
    out = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        parts: list[Row] = [{"type": "text", "content": _text(m.get("content"))}]
        for call in m.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            fn = call.get("function") or {}
            parts.append({"type": "tool_call", "id": call.get("id"), "name": fn.get("name"),
                          "arguments": fn.get("arguments")})
        msg: Row = {"role": m.get("role"), "parts": parts}
        if m.get("finish_reason"):
            msg["finish_reason"] = m["finish_reason"]
        out.append(msg)
    return out


def _text(content: Any) -> str:
    """A message's content as text (a list of parts: their text joined)."""
    if isinstance(content, list):
        return "".join(str(p.get("text") or p.get("content") or "") for p in content
                       if isinstance(p, dict))
    return "" if content is None else str(content)


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None  # a preview of a payload kept in the blob store: not whole JSON


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))
