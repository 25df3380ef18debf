"""Prices that come from LiteLLM's bundled model map.

These live apart from the LLM layer's unit tests because importing LiteLLM takes seconds:
the map is read from the copy inside the installed package, never downloaded.
"""

from __future__ import annotations

import pytest

from titan.llm import pricing
from titan.llm.litellm_import import litellm_module
from titan.llm.types import Usage


@pytest.mark.usefixtures("prices")
def test_litellm_prices_a_model_in_its_map() -> None:
    # LiteLLM 1.106.2's bundled map: gpt-4o-mini at $0.15 in / $0.60 out per Mtok.
    cost, source = pricing.hosted_cost("gpt-4o-mini", Usage(1000, 100))
    assert source == "litellm"
    assert cost == pytest.approx(1000 * 0.15e-6 + 100 * 0.60e-6)
    assert pricing.hosted_cost("openai/gpt-4o-mini", Usage(1000, 100)) == (cost, "litellm")
    # Cached input at the map's cache-read rate ($0.075 per Mtok), as a registered price
    # charges it: it was charged at the full input rate.
    cached, _ = pricing.hosted_cost("gpt-4o-mini", Usage(1000, 100, cached_tokens=400))
    assert cached == pytest.approx(600 * 0.15e-6 + 400 * 0.075e-6 + 100 * 0.60e-6)


@pytest.mark.usefixtures("prices")
def test_gemini_2_0_flash_comes_from_titans_table() -> None:
    litellm = litellm_module()  # imported with the local price map, never a download
    assert "gemini/gemini-2.0-flash" not in litellm.model_cost  # the map really lacks it
    cost, source = pricing.hosted_cost("gemini/gemini-2.0-flash", Usage(1_000_000, 1_000_000))
    assert (cost, source) == (pytest.approx(0.10 + 0.40), "registered")


@pytest.mark.usefixtures("prices")
@pytest.mark.parametrize("model", ["openai/no-such-model", "made-up-model-xyz",
                                   "anthropic/claude-sonnet-4-20250514"],
                         ids=["unmapped", "no-provider", "litellm-says-zero"])
def test_an_unknown_price_is_none_never_zero(model: str) -> None:
    assert pricing.hosted_cost(model, Usage(100, 100)) == (None, "unknown")
