"""The LLM layer's own logic: routing, message checks, pricing and the recording seam.

Where a call must run without HTTP, a provider registered through ``register_provider``
answers it: that is the layer's provider seam, exercised as a user's provider would be.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from titan import llm
from titan.errors import ConfigError, InvalidOutput, LLMError, ProviderError
from titan.llm import pricing, providers
from titan.llm.hosted import HostedProvider
from titan.llm.local import LocalProvider
from titan.llm.types import Generation, Request, Usage


class ScriptedProvider:
    """A provider answering from a script, and keeping the requests it got."""

    name = "scripted"

    def __init__(self, *answers: str | Exception, price: float | None = 0.5) -> None:
        self.answers: deque[str | Exception] = deque(answers)
        self.requests: list[Request] = []
        self.price = price

    def generate(self, request: Request) -> Generation:
        self.requests.append(request)
        answer = self.answers.popleft() if self.answers else "fine"
        if isinstance(answer, Exception):
            raise answer
        return Generation(answer, Usage(10, 4, cached_tokens=2), f"scripted/{request.model}",
                          "stop")

    def cost(self, model: str, usage: Usage) -> tuple[float | None, str]:
        return (None, "unknown") if self.price is None else (self.price, "registered")


@pytest.fixture
def scripted() -> Iterator[ScriptedProvider]:
    provider = ScriptedProvider()
    llm.register_provider("scripted", provider)
    yield provider
    llm.unregister_provider("scripted")




# --- routing -----------------------------------------------------------------------------

def test_resolve_defaults_to_local(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, model_id = providers.resolve(None)
    assert isinstance(provider, LocalProvider) and model_id == ""
    monkeypatch.setenv("TITAN_LLM_MODEL", "")
    assert providers.resolve(None)[1] == ""
    assert providers.DEFAULT_MODEL == "local"


def test_resolve_follows_titan_llm_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_LLM_MODEL", " gemini/gemini-2.0-flash ")
    provider, model_id = providers.resolve(None)
    assert isinstance(provider, HostedProvider) and model_id == "gemini/gemini-2.0-flash"
    # An explicit model wins over the variable.
    provider, model_id = providers.resolve("local/qwen2.5-coder-1.5b")
    assert isinstance(provider, LocalProvider) and model_id == "qwen2.5-coder-1.5b"


@pytest.mark.parametrize(
    ("model", "kind", "model_id"),
    [("local", LocalProvider, ""), ("local/x.gguf", LocalProvider, "x.gguf"),
     ("local/models/a/b.gguf", LocalProvider, "models/a/b.gguf"),
     ("gpt-4o-mini", HostedProvider, "gpt-4o-mini"),
     ("openai/my-model", HostedProvider, "openai/my-model"),
     ("unregistered/model", HostedProvider, "unregistered/model"),
     ("anthropic/claude-haiku-4-5", HostedProvider, "anthropic/claude-haiku-4-5")],
)
def test_resolve_routes_by_prefix(model: str, kind: type, model_id: str) -> None:
    provider, got = providers.resolve(model)
    assert isinstance(provider, kind)
    assert got == model_id


def test_builtin_providers_are_created_once() -> None:
    assert providers.resolve("local")[0] is providers.resolve("local/a.gguf")[0]
    assert providers.resolve("gpt-4o-mini")[0] is providers.resolve("openai/x")[0]


def test_a_registered_prefix_gets_its_own_model_strings(scripted: ScriptedProvider) -> None:
    provider, model_id = providers.resolve("scripted/alpha/beta")
    assert provider is scripted and model_id == "alpha/beta"
    # The bare word, without a model after the slash, is not the prefix: LiteLLM gets it.
    assert isinstance(providers.resolve("scripted")[0], HostedProvider)
    llm.unregister_provider("scripted")
    assert isinstance(providers.resolve("scripted/alpha")[0], HostedProvider)
    llm.unregister_provider("scripted")  # removing an absent prefix is harmless


@pytest.mark.parametrize("prefix", ["", "a/b", "/"])
def test_register_provider_refuses_a_bad_prefix(prefix: str) -> None:
    with pytest.raises(LLMError, match="non-empty word without '/'"):
        llm.register_provider(prefix, ScriptedProvider())


def test_an_empty_model_name_is_refused() -> None:
    with pytest.raises(LLMError, match="empty model name"):
        llm.complete("hi", model="   ")


# --- messages ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("messages", "message"),
    [([], "messages is empty"),
     ([{"role": "bot", "content": "hi"}], r"messages\[0\] needs a role .* got 'bot'"),
     ([{"content": "hi"}], r"messages\[0\] needs a role .* got None"),
     ([{"role": "user", "content": "a"}, {"role": "user", "content": ["parts"]}],
      r"messages\[1\]\.content must be a string"),
     ([{"role": "user"}], r"messages\[0\]\.content must be a string")],
    ids=["empty", "bad-role", "no-role", "list-content", "no-content"],
)
def test_bad_messages_raise_llm_error_before_any_call(
        scripted: ScriptedProvider, messages: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(LLMError, match=message):
        llm.complete(messages, model="scripted/m")
    assert scripted.requests == []


def test_a_prompt_string_becomes_one_user_message(scripted: ScriptedProvider) -> None:
    reply = llm.complete("hello", model="scripted/m", temperature=0.3, max_tokens=9, seed=7)
    req = scripted.requests[0]
    assert req.messages == [{"role": "user", "content": "hello"}]
    assert (req.model, req.temperature, req.max_tokens, req.params) == ("m", 0.3, 9, {"seed": 7})
    assert (reply.text, reply.model, reply.provider) == ("fine", "scripted/m", "scripted")
    assert (reply.cost_usd, reply.cost_source, reply.attempts) == (0.5, "registered", 1)
    with pytest.raises(ValueError, match="not asked for JSON"):
        reply.json()


def test_a_schema_is_described_in_the_system_message(scripted: ScriptedProvider) -> None:
    scripted.answers.extend(['{"n": 1}', '{"n": 2}'])
    schema = {"type": "object", "required": ["n"]}
    assert llm.complete("count", model="scripted/m", json_schema=schema).json() == {"n": 1}
    first = scripted.requests[0].messages
    assert first[0]["role"] == "system" and json.dumps(schema, separators=(",", ":")) in (
        first[0]["content"])
    assert first[1:] == [{"role": "user", "content": "count"}]
    llm.complete([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "go"}],
                 model="scripted/m", json_schema=schema)
    merged = scripted.requests[1].messages
    assert len(merged) == 2 and merged[0]["content"].startswith("Be terse.\n\nRespond with only")


def test_one_repair_then_invalid_output(scripted: ScriptedProvider,
                                        calls: list[llm.LLMCall]) -> None:
    schema = {"type": "object", "required": ["n"]}
    scripted.answers.extend(["not json", '{"n": 3}'])
    reply = llm.complete("x", model="scripted/m", json_schema=schema)
    assert (reply.data, reply.attempts, reply.usage) == ({"n": 3}, 2, Usage(20, 8, 4, 0))
    repair = scripted.requests[1].messages
    assert repair[-2] == {"role": "assistant", "content": "not json"}
    assert "no JSON value found" in repair[-1]["content"]
    scripted.answers.extend(["[]", '{"m": 1}'])
    with pytest.raises(InvalidOutput) as err:
        llm.complete("x", model="scripted/m", json_schema=schema)
    assert err.value.problems == ["(root): 'n' is a required property"]
    assert err.value.text == '{"m": 1}'
    assert len(scripted.requests) == 4  # two per call, never a third
    assert [c.error is None for c in calls] == [True, False]


def test_acomplete_runs_the_same_call(scripted: ScriptedProvider) -> None:
    reply = asyncio.run(llm.acomplete("async", model="scripted/m", max_tokens=3))
    assert reply.text == "fine"
    assert scripted.requests[0].max_tokens == 3


# --- pricing -----------------------------------------------------------------------------

def test_price_cost_charges_cached_input_at_its_own_rate() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cached_tokens=400_000)
    assert pricing.Price(1.0, 4.0, 0.25).cost(usage) == pytest.approx(0.6 + 0.1 + 2.0)
    assert pricing.Price(1.0, 4.0).cost(usage) == pytest.approx(1.0 + 2.0)


@pytest.mark.usefixtures("prices")
def test_a_registered_price_wins() -> None:
    llm.register_price("gpt-4o-mini", 1.0, 2.0)
    assert pricing.hosted_cost("gpt-4o-mini", Usage(1000, 100)) == (
        pytest.approx(0.0012), "registered")
    with pytest.raises(ConfigError, match="cannot be negative"):
        llm.register_price("x", -1.0, 1.0)


@pytest.mark.usefixtures("prices")
def test_prices_from_titan_llm_prices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"openai/house-model": {"input": 2, "output": 8,
                                                        "cached_input": 1}}))
    monkeypatch.setenv("TITAN_LLM_PRICES", str(table))
    cost, source = pricing.hosted_cost("openai/house-model", Usage(1000, 500, cached_tokens=400))
    assert source == "registered"
    assert cost == pytest.approx((600 * 2 + 400 * 1 + 500 * 8) / 1e6)


@pytest.mark.usefixtures("prices")
@pytest.mark.parametrize("content", ["{not json", '{"m": {"input": 1}}', '{"m": 3}', "[1]", None],
                         ids=["syntax", "no-output", "not-an-entry", "not-a-table", "missing"])
def test_a_bad_prices_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             content: str | None) -> None:
    table = tmp_path / "prices.json"
    if content is not None:
        table.write_text(content)
    monkeypatch.setenv("TITAN_LLM_PRICES", str(table))
    for _ in range(2):  # every call says so, not only the first
        with pytest.raises(ConfigError, match=r"TITAN_LLM_PRICES=.*prices\.json: expected"):
            pricing.hosted_cost("gpt-4o-mini", Usage(10, 10))


# --- recording ---------------------------------------------------------------------------

def test_listeners_see_successes_and_errors(scripted: ScriptedProvider,
                                            calls: list[llm.LLMCall],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_AGENT_RUN_ID", "run-42")
    reply = llm.complete("ok?", model="scripted/m", temperature=0.0, top_p=0.9)
    failure = ProviderError("upstream down", provider="scripted", status=503, retryable=True)
    scripted.answers.append(failure)
    with pytest.raises(ProviderError):
        llm.complete("again?", model="scripted/m")
    ok, failed = calls
    assert ok.completion is reply and ok.error is None
    assert (ok.model, ok.provider, ok.agent_run_id) == ("scripted/m", "scripted", "run-42")
    assert ok.messages == [{"role": "user", "content": "ok?"}]
    assert ok.params == {"temperature": 0.0, "max_tokens": None, "json_schema": None,
                         "top_p": 0.9}
    assert ok.duration_s >= 0 and ok.started_at > 0
    assert failed.error is failure and failed.completion is None
    assert failed.model == "scripted/m"  # the model asked for, as no answer named one


def test_a_raising_listener_does_not_fail_the_call(scripted: ScriptedProvider,
                                                   calls: list[llm.LLMCall],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    def broken(call: llm.LLMCall) -> None:
        raise RuntimeError("listener bug")

    remove = llm.add_listener(broken)
    try:
        assert llm.complete("x", model="scripted/m").text == "fine"
    finally:
        remove()
    assert len(calls) == 1  # the listener after the broken one still got the call
    assert "listener" in caplog.text and "listener bug" in caplog.text


def test_totals_accumulate(scripted: ScriptedProvider) -> None:
    before = llm.totals()
    llm.complete("a", model="scripted/m")
    scripted.price = None
    llm.complete("b", model="scripted/m")
    scripted.answers.append(LLMError("boom"))
    with pytest.raises(LLMError):
        llm.complete("c", model="scripted/m")
    after = llm.totals()
    assert after.calls - before.calls == 3
    assert after.errors - before.errors == 1
    assert after.usage.input_tokens - before.usage.input_tokens == 20
    assert after.usage.cached_tokens - before.usage.cached_tokens == 4
    assert after.cost_usd - before.cost_usd == pytest.approx(0.5)
    assert after.unknown_cost_calls - before.unknown_cost_calls == 1
    assert after.seconds >= before.seconds


def test_a_job_gets_one_log_line_per_call(scripted: ScriptedProvider,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    llm.complete("quiet", model="scripted/m")
    assert "[titan.llm]" not in capsys.readouterr().err  # not in a job: nothing written
    monkeypatch.setenv("TITAN_JOB_ID", "7")
    llm.complete("loud", model="scripted/m")
    scripted.price = None
    scripted.answers.extend(["nope", "still nope"])
    with pytest.raises(InvalidOutput):
        llm.complete("json", model="scripted/m", json_schema={"type": "object"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[titan.llm] scripted/m: 10 in / 4 out tokens in ")
    assert lines[0].endswith("$0.500000 (registered)")
    assert lines[1].startswith("[titan.llm] scripted/m failed after ")
    assert "InvalidOutput: scripted/m did not return JSON" in lines[1]


def test_titan_llm_log_writes_the_line_outside_a_job(scripted: ScriptedProvider,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TITAN_LLM_LOG", "1")
    scripted.price = None
    scripted.answers.extend(["bad", '{"a": 1}'])
    llm.complete("x", model="scripted/m", json_schema={"type": "object"})
    assert capsys.readouterr().err.strip().endswith("cost unknown, 2 attempts")


def test_the_sdk_pages_budget_snippet_leaves_text_either_way(
        scripted: ScriptedProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/sdk.md's "Catch it to wind down cleanly" snippet, run as written: ``answer`` is the
    reply's text when the call goes through and the note when the budget stops it (a
    Completion in one branch and a str in the other broke whatever used it next)."""
    import textwrap

    import titan
    page = (Path(__file__).parents[2] / "docs" / "sdk.md").read_text()
    snippet = textwrap.dedent(page.split("to wind down cleanly:\n\n", 1)[1]
                              .split("```python\n", 1)[1].split("```", 1)[0])
    assert "except titan.errors.BudgetExceeded as exc" in snippet
    monkeypatch.setenv("TITAN_LLM_MODEL", "scripted/m")
    scripted.answers.extend(["fine", titan.errors.BudgetExceeded(
        "over budget", run_id="r", budget_usd=2.0, cost_usd=2.5)])
    answers = []
    for _ in range(2):
        scope = {"titan": titan, "prompt": "Summarise the findings."}
        exec(snippet, scope)
        answers.append(scope["answer"])
    assert answers == ["fine", "(stopped: 2.50 of 2.00 USD spent)"]
