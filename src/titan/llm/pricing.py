"""What a call cost, and how we know.

Order of authority: a price you registered (:func:`register_price`, or ``TITAN_LLM_PRICES``
pointing at a JSON file ``{"model": {"input": $/Mtok, "output": $/Mtok}}``), then LiteLLM's
bundled price map, then Titan's own table for models the map lacks. A hosted model found in
none of them costs ``None`` with source ``unknown``: a report that says $0 for a paid call
is worse than one that says "don't know". Local inference runs on your own CPU and is $0
with source ``local``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from titan.errors import ConfigError

from .litellm_import import litellm_module
from .types import Usage


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_rate = (self.cached_input_per_mtok if self.cached_input_per_mtok is not None
                       else self.input_per_mtok)
        return ((usage.input_tokens - cached) * self.input_per_mtok
                + cached * cached_rate
                + usage.output_tokens * self.output_per_mtok) / 1e6


# Models LiteLLM 1.106.2's map does not carry. Source: Google's Gemini API pricing page
# (ai.google.dev/gemini-api/docs/pricing, paid tier, text input), 2025.
BUILTIN: dict[str, Price] = {
    "gemini/gemini-2.0-flash": Price(0.10, 0.40, 0.025),
    "gemini/gemini-2.0-flash-001": Price(0.10, 0.40, 0.025),
    "gemini/gemini-2.0-flash-lite": Price(0.075, 0.30),
}

_registered: dict[str, Price] = {}
_lock = threading.Lock()
_env_loaded: str | None = None


def register_price(model: str, input_per_mtok: float, output_per_mtok: float,
                   cached_input_per_mtok: float | None = None) -> None:
    """Set the price of ``model`` (as you pass it to ``complete``), in $ per million tokens."""
    if input_per_mtok < 0 or output_per_mtok < 0:
        raise ConfigError(f"prices cannot be negative (got {input_per_mtok}, {output_per_mtok})")
    with _lock:
        _registered[model] = Price(float(input_per_mtok), float(output_per_mtok),
                                   cached_input_per_mtok)


def _load_env_prices() -> None:
    global _env_loaded
    path = os.environ.get("TITAN_LLM_PRICES", "")
    if path == (_env_loaded or ""):
        return
    if not path:
        _env_loaded = path
        return
    try:
        table = json.loads(Path(path).read_text())
        for model, entry in table.items():
            register_price(model, float(entry["input"]), float(entry["output"]),
                           entry.get("cached_input"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"TITAN_LLM_PRICES={path}: expected a JSON file of "
            f'{{"model": {{"input": 0.1, "output": 0.4}}}} ($ per million tokens): {exc}'
        ) from None
    _env_loaded = path  # only once it loaded: a bad file fails every call, not just the first


def _litellm_cost(model: str, usage: Usage) -> float | None:
    litellm = litellm_module()
    try:
        # Cached input tokens are part of the input (OpenAI's convention, and Usage's), at
        # the model's cache-read rate where LiteLLM knows one: left out, they were charged at
        # the full input rate, as a registered price (Price.cost) does not.
        prompt, completion = litellm.cost_per_token(
            model=model, prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            cache_read_input_tokens=min(usage.cached_tokens, usage.input_tokens))
    except Exception:  # LiteLLM raises its own zoo of errors for unmapped models
        return None
    total = float(prompt) + float(completion)
    if total == 0.0 and usage.total_tokens > 0:
        return None  # mapped without prices: a paid API is not free, so "unknown"
    return total


def hosted_cost(model: str, usage: Usage) -> tuple[float | None, str]:
    """``(cost_usd, source)`` for a hosted call."""
    _load_env_prices()
    with _lock:
        price = _registered.get(model)
    if price is not None:
        return price.cost(usage), "registered"
    cost = _litellm_cost(model, usage)
    if cost is not None:
        return cost, "litellm"
    if model in BUILTIN:
        return BUILTIN[model].cost(usage), "registered"
    return None, "unknown"
