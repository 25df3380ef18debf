"""Hosted models through LiteLLM: Gemini, OpenAI, Anthropic, any OpenAI-compatible server.

LiteLLM is imported on the first hosted call only (:mod:`titan.llm.litellm_import`). Keys come from the usual variables
(``GEMINI_API_KEY``, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``); ``TITAN_LLM_API_BASE``
points ``openai/<model>`` at a vLLM, Ollama or llama.cpp server, which needs no key.
"""

from __future__ import annotations

import os
import time
from typing import Any

from titan import envfile, retry
from titan.errors import ProviderError

from . import pricing
from .litellm_import import litellm_module
from .types import Generation, Request, Usage

#: The key sent to an OpenAI-compatible server when none is set (vLLM's documented "EMPTY").
NO_KEY = "EMPTY"


def _retries() -> int:
    raw = os.environ.get("TITAN_LLM_RETRIES", "2")
    return int(raw) if raw.strip().isdigit() else 2


#: Where LiteLLM's text stops being about the request: its traceback, its bug-report banner.
_NOISE = ("\nTraceback (most recent call last)", "This looks like a bug in LiteLLM",
          "\n\nGive Feedback")


def _message(exc: Exception) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    for marker in _NOISE:
        text = text.split(marker, 1)[0]
    return text.strip()[:2000]


def _missing_key(litellm: Any, model: str) -> str | None:
    """The variable to set when the model's provider needs a key none of whose variables
    is set (LiteLLM says so as a connection error, which would be retried, not as an
    authentication failure); None when a key is there or the provider needs none."""
    try:
        found = litellm.validate_environment(model=model)
    except Exception:
        return None
    missing = [str(k) for k in found.get("missing_keys") or () if str(k).endswith("_API_KEY")]
    if found.get("keys_in_environment") or not missing:
        return None
    missing.sort(key=lambda k: (not k.startswith(model.split("/", 1)[0].upper()), k))
    return missing[0] + (f" (or {', '.join(missing[1:])})" if missing[1:] else "")


def _error(litellm: Any, exc: Exception, model: str, *, key_given: bool = False) -> ProviderError:
    status = getattr(exc, "status_code", None)
    provider = getattr(exc, "llm_provider", "") or model.split("/", 1)[0]
    message = _message(exc)
    missing = None if key_given or isinstance(exc, litellm.AuthenticationError) \
        else _missing_key(litellm, model)
    if missing is not None:
        return ProviderError(f"{model}: no API key: set {missing} (in the environment or the "
                             f"project's .env): {message}", provider=provider, status=status)
    if isinstance(exc, litellm.AuthenticationError):
        hint = {"gemini": "GEMINI_API_KEY", "openai": "OPENAI_API_KEY",
                "anthropic": "ANTHROPIC_API_KEY"}.get(provider)
        more = f" (set {hint})" if hint else ""
        return ProviderError(f"{model}: authentication failed{more}: {message}",
                             provider=provider, status=status)
    if isinstance(exc, litellm.ContextWindowExceededError):
        return ProviderError(f"{model}: the prompt does not fit the context window: {message}",
                             provider=provider, status=status)
    retryable = isinstance(exc, (litellm.RateLimitError, litellm.APIConnectionError,
                                 litellm.ServiceUnavailableError, litellm.InternalServerError,
                                 litellm.Timeout))
    return ProviderError(f"{model}: {type(exc).__name__}: {message}", provider=provider,
                         status=status, retryable=retryable)


def _response_format(litellm: Any, model: str, schema: dict[str, Any]) -> dict[str, Any]:
    try:
        native = bool(litellm.supports_response_schema(model=model))
    except Exception:
        native = False
    if native or model.startswith(("gemini/", "openai/", "gpt-", "anthropic/", "claude-")):
        return {"type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": False}}
    return {"type": "json_object"}


class HostedProvider:
    name = "hosted"

    def usable(self, model: str) -> None:
        """Raise :class:`ProviderError` when no call to ``model`` can succeed, before any is
        made: LiteLLM knows no provider for it, or its provider needs a key and none is set.
        (Each call then failed the same way: a calibration of 300 cases ran 300 failures.)"""
        envfile.load()
        litellm = litellm_module()
        base = os.environ.get("TITAN_LLM_API_BASE")
        provider = model.split("/", 1)[0] if "/" in model else ""
        try:
            litellm.get_llm_provider(model=model, api_base=base)
        except Exception:
            raise ProviderError(
                f"{model}: no provider serves this model: LiteLLM knows none by that name (name "
                "it provider/model: gemini/gemini-2.0-flash, openai/gpt-4o-mini, "
                "anthropic/claude-3-5-haiku-latest, openai/<name> with TITAN_LLM_API_BASE; or "
                "local)", provider=provider) from None
        if base and model.startswith("openai/"):
            return  # a server of your own, which needs no key (generate sends "EMPTY")
        missing = _missing_key(litellm, model)
        if missing is not None:
            raise ProviderError(f"{model}: no API key: set {missing} (in the environment or "
                                "the project's .env)", provider=provider)

    def generate(self, request: Request) -> Generation:
        envfile.load()  # the project's .env holds the provider keys (once per process)
        litellm = litellm_module()
        # Titan retries, not LiteLLM: its num_retries needs tenacity, which LiteLLM 1.106.2
        # does not depend on, and without it every failure became "tenacity import failed"
        # (status, auth hint and retryability lost). max_retries=0 stops the OpenAI SDK's own.
        kwargs: dict[str, Any] = {"max_retries": 0, **request.params}
        kwargs.update(model=request.model, messages=request.messages)
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        base = os.environ.get("TITAN_LLM_API_BASE")
        if base and "api_base" not in kwargs:
            kwargs["api_base"] = base
        if kwargs.get("api_base") and request.model.startswith("openai/") \
                and not kwargs.get("api_key") and not os.environ.get("OPENAI_API_KEY"):
            # An OpenAI-compatible server of your own (vLLM, Ollama, llama.cpp) needs no key,
            # but the OpenAI client refuses to send a request without one: give it vLLM's
            # placeholder. A server that does want one answers 401, said as "set
            # OPENAI_API_KEY".
            kwargs["api_key"] = NO_KEY
        if request.json_schema is not None:
            kwargs["response_format"] = _response_format(litellm, request.model,
                                                          request.json_schema)
        retries = _retries()
        for attempt in range(retries + 1):
            try:
                resp = litellm.completion(**kwargs)
                break
            except Exception as exc:
                # The placeholder counts as a key: a server of your own needs none, so its
                # 5xx or 429 is its own failure (retried), never "no API key: set ..."
                # (only a 401 says it wanted one).
                error = _error(litellm, exc, request.model, key_given=bool(kwargs.get("api_key")))
                if not error.retryable or attempt == retries:
                    raise error from exc
            time.sleep(retry.pause(attempt, start=0.5, cap=8.0))  # jittered: no lockstep
        choice = resp.choices[0]
        usage = getattr(resp, "usage", None)
        return Generation(
            text=choice.message.content or "",
            usage=_usage(usage),
            model=request.model,
            finish_reason=getattr(choice, "finish_reason", None),
            tool_calls=_tool_calls(getattr(choice.message, "tool_calls", None)),
            provider_model=str(getattr(resp, "model", "") or "") or None,
        )

    def cost(self, model: str, usage: Usage) -> tuple[float | None, str]:
        return pricing.hosted_cost(model, usage)


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    """The tools the model asked to call, in OpenAI's wire shape (LiteLLM gives every
    provider's that way, as objects)."""
    out = []
    for call in calls or ():
        fn = getattr(call, "function", None)
        out.append({"id": getattr(call, "id", None),
                    "type": getattr(call, "type", None) or "function",
                    "function": {"name": getattr(fn, "name", None),
                                 "arguments": getattr(fn, "arguments", None) or ""}})
    return out


def _usage(usage: Any) -> Usage | None:
    """The answer's token usage; None when the provider did not report it. LiteLLM fills a
    reply without ``usage`` (llama.cpp and Ollama builds, some proxies) with zeros, and no
    answered request has no input tokens, so zeros are taken for "not reported" too: priced,
    they would be a made-up $0."""
    if usage is None:
        return None
    if not getattr(usage, "prompt_tokens", 0) and not getattr(usage, "completion_tokens", 0):
        return None
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_tokens=int(getattr(prompt_details, "cached_tokens", 0) or 0),
        reasoning_tokens=int(getattr(completion_details, "reasoning_tokens", 0) or 0),
    )
