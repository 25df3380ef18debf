"""Titan's LLM layer: one small interface, a local model by default, hosted ones by name.

::

    from titan import llm

    reply = llm.complete([{"role": "user", "content": "Name three vector databases."}])
    print(reply.text, reply.usage.output_tokens, reply.cost_usd, reply.cost_source)

    plan = llm.complete(prompt, json_schema={"type": "object", ...}).data

The model comes from ``model=``, else ``TITAN_LLM_MODEL``, else ``local``: Qwen2.5-Coder-0.5B
running in-process, offline, free (install it with ``titan llm install``). Hosted models go
through LiteLLM (``gemini/gemini-2.0-flash``, ``gpt-4o-mini``, ``anthropic/...``).

With ``json_schema`` the output is constrained where the provider can (a llama.cpp grammar,
a hosted JSON mode) and validated always; an invalid answer gets one repair request, then
:class:`~titan.errors.InvalidOutput`. Every call, whatever its outcome, passes through
:func:`titan.llm.recording.record`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from titan.errors import InvalidOutput, LLMError

from . import structured
from .credentials import recordable
from .pricing import register_price
from .providers import (
    DEFAULT_MODEL,
    Provider,
    register_provider,
    resolve,
    unregister_provider,
    usable,
)
from .recording import LLMCall, Replayer, add_listener, asking, check, record, replayer, totals
from .types import Completion, Generation, Message, Request, Usage

__all__ = [
    "DEFAULT_MODEL", "Completion", "Generation", "LLMCall", "Message", "Request", "Usage",
    "acomplete", "add_listener", "complete", "register_price", "register_provider", "totals",
    "unregister_provider", "usable",
]


def _messages(messages: str | Sequence[Message]) -> list[Message]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = [dict(m) for m in messages]
    for i, m in enumerate(out):
        if m.get("role") not in ("system", "user", "assistant", "tool"):
            raise LLMError(f"messages[{i}] needs a role of system/user/assistant/tool, got "
                           f"{m.get('role')!r}")
        calls = m.get("tool_calls")
        if calls is not None and (m["role"] != "assistant" or not isinstance(calls, list)
                                  or not all(isinstance(c, dict) for c in calls)):
            raise LLMError(f"messages[{i}].tool_calls must be a list of tool calls "
                           "({\"id\", \"type\": \"function\", \"function\": {\"name\", "
                           "\"arguments\"}}) on an assistant message")
        if not isinstance(m.get("content"), str) and not (calls and m.get("content") is None):
            raise LLMError(f"messages[{i}].content must be a string (or None on an assistant "
                           "message with tool_calls)")
    if not out:
        raise LLMError("messages is empty")
    return out


def _check_params(params: dict[str, Any]) -> None:
    """Refuse, before any request, what would make the provider answer something other than
    one whole reply."""
    if params.get("stream"):
        raise LLMError("stream=True is not supported: complete() returns the whole reply, "
                       "recorded and priced as one call; leave stream out (await "
                       "llm.acomplete(...) keeps an event loop free while it waits)")


def _with_schema_hint(messages: list[Message], schema: dict[str, Any]) -> list[Message]:
    """Tell the model the shape too: a grammar forces the syntax, not the meaning."""
    hint = ("Respond with only a JSON value that matches this JSON Schema:\n"
            + json.dumps(schema, separators=(",", ":")))
    if messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + hint},
                *messages[1:]]
    return [{"role": "system", "content": hint}, *messages]


def _json_problems(gen: Generation, validator: Any,
                   max_tokens: int | None) -> tuple[Any, list[str]]:
    data, found = structured.problems(gen.text, validator)
    if found and gen.finish_reason == "length":
        # The usual cause with a grammar: the JSON was fine but did not fit. Say so, to the
        # model in the repair request and to the caller in the error.
        limit = f"max_tokens={max_tokens}" if max_tokens else "the token limit"
        found.insert(0, f"the reply was cut off at {limit} before the JSON ended; "
                        "answer more briefly (or raise max_tokens)")
    return data, found


def complete(
    messages: str | Sequence[Message],
    *,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    json_schema: dict[str, Any] | None = None,
    **params: Any,
) -> Completion:
    """Ask a model; return a :class:`Completion` (text, usage, model, cost_usd, cost_source).

    ``messages`` is a prompt string or chat messages (``{"role", "content"}``). Extra
    ``params`` go to the provider as they are (``seed``, ``top_p``, ``stop``, ``api_base``...).
    Raises :class:`~titan.errors.LLMError` subclasses on failure."""
    return _complete(messages, model, temperature, max_tokens, json_schema, params, None)


def _complete(messages: str | Sequence[Message], model: str | None, temperature: float | None,
              max_tokens: int | None, json_schema: dict[str, Any] | None,
              params: dict[str, Any], ordinal: int | None) -> Completion:
    """:func:`complete`; ``ordinal``: the call's number if :func:`acomplete` took it."""
    msgs = _messages(messages)
    _check_params(params)
    validator = structured.check_schema(json_schema) if json_schema is not None else None
    requested = (model or os.environ.get("TITAN_LLM_MODEL") or DEFAULT_MODEL).strip()
    # What the call records and a replay matches: the params without their credentials.
    recorded_params = recordable({"temperature": temperature, "max_tokens": max_tokens,
                                  "json_schema": json_schema, **params})
    started_at = time.time()
    t0 = time.perf_counter()
    replaying = replayer()
    if replaying is not None and ordinal is None:
        ordinal = replaying.number()  # as the call starts: see Replayer.number
    decision = replaying.decide(requested, msgs, recorded_params, ordinal) if replaying \
        else None
    if replaying is not None and decision is not None:
        # A replay: answered from the recording, or let through live.
        if decision.serves or decision.status in ("stopped", "refused"):
            return _replayed(replaying, decision, requested, msgs, recorded_params,
                             started_at, t0)
        replay_model = replaying.model()
        if replay_model:  # a fork's --model: the live part of the run asks another model
            model = requested = replay_model
    provider, model_id = resolve(model)
    reported = model or model_id or provider.name
    going = replaying.live(decision) if replaying is not None and decision is not None \
        else contextlib.nullcontext()
    spent: list[Generation] = []  # every answer a provider gave (and billed) for this call
    token = asking.set(True)
    try:
        with going:  # a live call of a replay: its connections are the call's
            check(reported, msgs, recorded_params)
            asked = _with_schema_hint(msgs, json_schema) if json_schema is not None else msgs
            request = Request(model_id, asked, temperature, max_tokens, json_schema, dict(params))
            gen = provider.generate(request)
            spent.append(gen)
            reported = gen.model
            attempts, data = 1, None
            if validator is not None and json_schema is not None:
                data, found = _json_problems(gen, validator, max_tokens)
                if found:
                    attempts = 2
                    retry = Request(model_id, structured.repair_messages(asked, gen.text, found,
                                                                         json_schema),
                                    temperature, max_tokens, json_schema, dict(params))
                    gen = provider.generate(retry)
                    spent.append(gen)
                    data, found = _json_problems(gen, validator, max_tokens)
                    if found:
                        raise InvalidOutput(
                            f"{gen.model} did not return JSON matching the schema after one "
                            f"repair attempt: {'; '.join(found[:3])}", text=gen.text, problems=found)
            usage, cost, source = _priced(provider, model_id, spent)
            completion = Completion(
                text=gen.text, usage=usage, model=gen.model, cost_usd=cost, cost_source=source,
                provider=provider.name, finish_reason=gen.finish_reason,
                duration_s=time.perf_counter() - t0, attempts=attempts, data=data,
                tool_calls=gen.tool_calls, provider_model=gen.provider_model)
    except BaseException as exc:
        # A call that failed after a provider answered (an invalid answer and its repair, or
        # a repair request that failed) was billed for those answers: they are recorded,
        # priced and counted against the run's budget like any completion's.
        billed = _priced(provider, model_id, spent) if spent else None
        record(LLMCall(reported, provider.name, msgs, recorded_params, started_at,
                       time.perf_counter() - t0, error=exc, requested=requested,
                       replay=decision, ordinal=ordinal,
                       usage=billed[0] if billed else None,
                       cost_usd=billed[1] if billed else None,
                       cost_source=billed[2] if billed else None))
        raise
    finally:
        asking.reset(token)
    record(LLMCall(completion.model, provider.name, msgs, recorded_params, started_at,
                   completion.duration_s, completion=completion, requested=requested,
                   replay=decision, ordinal=ordinal))
    return completion


def _priced(provider: Provider, model_id: str,
            spent: list[Generation]) -> tuple[Usage, float | None, str]:
    """The usage of the answers a call got, and what they cost (hosted models are priced by
    the name they were asked by, which is what a registered price names). An answer whose
    usage the provider did not report makes the cost unknown: never priced as 0 tokens."""
    usage = sum((g.usage for g in spent if g.usage is not None), Usage())
    if any(g.usage is None for g in spent):
        return usage, None, "unknown"
    cost, source = provider.cost(spent[-1].model if provider.name == "hosted" else model_id,
                                 usage)
    return usage, cost, source


def _replayed(replaying: Replayer, decision: Any, requested: str, msgs: list[Message],
              params: dict[str, Any], started_at: float, t0: float) -> Completion:
    """A replay's answer without asking any model: the recorded (or overriding) output, or
    the refusal of a call the recording does not have."""
    try:
        completion = replaying.answer(decision)
    except BaseException as exc:
        record(LLMCall(requested, "replay", msgs, params, started_at, time.perf_counter() - t0,
                       error=exc, requested=requested, replay=decision))
        raise
    record(LLMCall(completion.model, "replay", msgs, params, started_at,
                   time.perf_counter() - t0, completion=completion, requested=requested,
                   replay=decision))
    return completion


async def acomplete(
    messages: str | Sequence[Message],
    *,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    json_schema: dict[str, Any] | None = None,
    **params: Any,
) -> Completion:
    """:func:`complete` in a worker thread, for async code. The call is numbered here, on
    the event loop, so calls gathered side by side keep the order they were made in, in a
    recording and in its replay alike (threads start in no fixed order)."""
    import asyncio  # here: the CLI imports this package and must start fast

    replaying = replayer()
    ordinal = replaying.number() if replaying is not None else None
    return await asyncio.to_thread(_complete, messages, model, temperature, max_tokens,
                                   json_schema, params, ordinal)
