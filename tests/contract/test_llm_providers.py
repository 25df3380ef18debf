"""The provider contract: one suite, run against the local model and a hosted API alike.

"local" is the real packaged model, really generating (short prompts, few tokens). "hosted"
is LiteLLM talking HTTP to a scripted stand-in for the provider's API on 127.0.0.1 (the only
fake here: the edge of the world). Extras that only one kind can show follow the suite.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import IN_CI, free_port
from tests.fake_llm_api import FakeLLMServer, Reply, serve
from titan import llm
from titan.errors import InvalidOutput, LLMError, ModelUnavailable, ProviderError
from titan.llm import weights
from titan.llm.structured import extract_json

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}
HOSTED = "openai/fake-model"


@dataclass
class Impl:
    """One implementation under the contract: how to call it, and how to script the world."""

    name: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    api: FakeLLMServer | None = None

    def prime(self, *replies: Reply | str) -> None:
        """What the hosted API will answer next (the local model answers for itself)."""
        if self.api is not None:
            self.api.queue(*replies)

    def complete(self, messages: str | list[dict[str, Any]], **kw: Any) -> llm.Completion:
        return llm.complete(messages, model=kw.pop("model", self.model), **self.params, **kw)


def require_local_model() -> None:
    """Skip when the local model is not installed here; in CI (CI=true) fail instead."""
    reason = ""
    if importlib.util.find_spec("llama_cpp") is None:
        reason = "llama-cpp-python is not installed (run `titan llm install`)"
    else:
        try:
            weights.ensure(weights.DEFAULT_LOCAL_MODEL)
        except LLMError as exc:
            reason = f"the local model is not installed: {exc}"
    if reason:
        if IN_CI:
            pytest.fail(reason + " — the local model contract is mandatory in CI")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeLLMServer]:
    with serve() as api:
        yield api


@pytest.fixture
def api(fake_api: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    fake_api.replies.clear()
    fake_api.received.clear()
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(var, f"test-{var.lower()}")
    return fake_api


@pytest.fixture(params=[pytest.param("local", marks=pytest.mark.slow), "hosted"])
def impl(request: pytest.FixtureRequest) -> Impl:
    if request.param == "local":
        require_local_model()
        return Impl("local", "local")
    api: FakeLLMServer = request.getfixturevalue("api")
    return Impl("hosted", HOSTED, {"api_base": api.url}, api)




# --- the contract ------------------------------------------------------------------------

def test_plain_completion(impl: Impl, calls: list[llm.LLMCall]) -> None:
    impl.prime("Hello.")
    reply = impl.complete("Say hello in one word.", max_tokens=16, temperature=0)
    assert reply.text.strip()
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.usage.output_tokens <= 16 or impl.name == "hosted"
    assert reply.provider == impl.name
    assert reply.model == {"local": "local/qwen2.5-coder-0.5b", "hosted": HOSTED}[impl.name]
    assert (reply.cost_usd, reply.cost_source) == {
        "local": (0.0, "local"), "hosted": (None, "unknown")}[impl.name]
    assert reply.finish_reason in ("stop", "length")
    assert (reply.attempts, reply.data) == (1, None)
    assert reply.duration_s > 0
    assert len(calls) == 1
    assert calls[0].completion is reply and calls[0].error is None
    assert calls[0].messages == [{"role": "user", "content": "Say hello in one word."}]


@pytest.mark.usefixtures("prices")
def test_cost_follows_a_registered_price(impl: Impl) -> None:
    llm.register_price(impl.model, input_per_mtok=1.0, output_per_mtok=2.0)
    impl.prime("Hi.")
    reply = impl.complete("Say hi.", max_tokens=8, temperature=0)
    if impl.name == "local":
        assert (reply.cost_usd, reply.cost_source) == (0.0, "local")  # your own CPU is free
    else:
        expected = (reply.usage.input_tokens * 1.0 + reply.usage.output_tokens * 2.0) / 1e6
        assert (reply.cost_usd, reply.cost_source) == (pytest.approx(expected), "registered")


def test_json_schema_gives_valid_data(impl: Impl, calls: list[llm.LLMCall]) -> None:
    impl.prime('{"answer": 5}')
    reply = impl.complete("What is 2 + 3? Answer in JSON.", max_tokens=24, temperature=0,
                          json_schema=SCHEMA)
    jsonschema.validate(reply.data, SCHEMA)
    assert reply.json() == reply.data == extract_json(reply.text)
    assert reply.attempts in (1, 2)
    assert len(calls) == 1 and calls[0].completion is reply
    assert calls[0].params["json_schema"] == SCHEMA


def test_failures_are_llm_errors_and_recorded(impl: Impl, calls: list[llm.LLMCall]) -> None:
    impl.prime(Reply(status=404, error="The model `no-such-model` does not exist"))
    model = {"local": "local/no-such-model", "hosted": "openai/no-such-model"}[impl.name]
    with pytest.raises(LLMError) as err:
        impl.complete("hello", model=model, max_tokens=8)
    expected = {"local": ModelUnavailable, "hosted": ProviderError}[impl.name]
    assert isinstance(err.value, expected)
    assert "no-such-model" in str(err.value)
    assert len(calls) == 1
    assert calls[0].error is err.value and calls[0].completion is None
    assert calls[0].model == model


# --- hosted only -------------------------------------------------------------------------

@pytest.fixture
def hosted(api: FakeLLMServer) -> Impl:
    return Impl("hosted", HOSTED, {"api_base": api.url}, api)


def test_hosted_request_carries_the_parameters(hosted: Impl, api: FakeLLMServer) -> None:
    hosted.prime('{"answer": 1}')
    hosted.complete([{"role": "system", "content": "Be exact."},
                     {"role": "user", "content": "One?"}],
                    temperature=0.25, max_tokens=33, seed=11, json_schema=SCHEMA)
    (got,) = api.received
    assert got.wire == "openai" and got.path == "/chat/completions"
    assert got.headers["authorization"] == "Bearer test-openai_api_key"
    body = got.body
    assert (body["model"], body["temperature"], body["max_tokens"], body["seed"]) == (
        "fake-model", 0.25, 33, 11)
    assert body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA,
                                               "strict": False}}
    system, user = body["messages"]
    assert system["role"] == "system" and system["content"].startswith("Be exact.\n\n")
    assert json.dumps(SCHEMA, separators=(",", ":")) in system["content"]
    assert user == {"role": "user", "content": "One?"}


def test_hosted_plain_request_sends_no_response_format(hosted: Impl,
                                                       api: FakeLLMServer) -> None:
    hosted.complete("hi")
    (got,) = api.received
    assert "response_format" not in got.body
    assert got.body["messages"] == [{"role": "user", "content": "hi"}]


def test_titan_llm_api_base_points_openai_models_at_a_server(
        api: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_LLM_API_BASE", api.url)
    api.queue("from the env's server")
    assert llm.complete("hi", model="openai/served-model").text == "from the env's server"
    assert api.received[0].body["model"] == "served-model"


def test_hosted_usage_reads_cached_and_reasoning_tokens(hosted: Impl, prices: None) -> None:
    llm.register_price(HOSTED, 1.0, 4.0, cached_input_per_mtok=0.25)
    hosted.prime(Reply(text="ok", prompt_tokens=1000, completion_tokens=300,
                       cached_tokens=600, reasoning_tokens=120))
    reply = hosted.complete("hi")
    assert reply.usage == llm.Usage(input_tokens=1000, output_tokens=300, cached_tokens=600,
                                    reasoning_tokens=120)
    assert reply.cost_usd == pytest.approx((400 * 1.0 + 600 * 0.25 + 300 * 4.0) / 1e6)


def test_an_invalid_answer_gets_exactly_one_repair(hosted: Impl, api: FakeLLMServer,
                                                   calls: list[llm.LLMCall]) -> None:
    hosted.prime(Reply(text="The answer is five.", prompt_tokens=20, completion_tokens=5),
                 Reply(text='{"answer": 5}', prompt_tokens=40, completion_tokens=6))
    reply = hosted.complete("2 + 3?", json_schema=SCHEMA)
    assert (reply.data, reply.attempts) == ({"answer": 5}, 2)
    assert reply.usage == llm.Usage(input_tokens=60, output_tokens=11)
    assert len(api.received) == 2
    repair = api.received[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": "The answer is five."}
    assert repair[-1]["role"] == "user" and "no JSON value found" in repair[-1]["content"]
    assert api.received[1].body["response_format"] == api.received[0].body["response_format"]
    assert len(calls) == 1 and calls[0].completion is reply


def test_invalid_twice_raises_invalid_output(hosted: Impl, api: FakeLLMServer,
                                             calls: list[llm.LLMCall]) -> None:
    hosted.prime('{"answer": "five"}', '{"answer": 5, "why": "sum"}')
    with pytest.raises(InvalidOutput) as err:
        hosted.complete("2 + 3?", json_schema=SCHEMA)
    assert err.value.text == '{"answer": 5, "why": "sum"}'
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("(root): Additional properties are not allowed")
    assert "after one repair attempt" in str(err.value)
    assert "answer: 'five' is not of type 'integer'" in api.received[1].body["messages"][-1][
        "content"]
    assert len(api.received) == 2  # never a third request
    assert len(calls) == 1 and calls[0].error is err.value


@pytest.mark.parametrize(("model", "variable"), [
    (HOSTED, "OPENAI_API_KEY"), ("anthropic/claude-haiku-4-5", "ANTHROPIC_API_KEY"),
    ("gemini/gemini-2.0-flash", "GEMINI_API_KEY")])
def test_an_auth_failure_names_the_key(api: FakeLLMServer, monkeypatch: pytest.MonkeyPatch,
                                       model: str, variable: str) -> None:
    monkeypatch.setenv("TITAN_LLM_RETRIES", "2")  # an auth failure is never retried
    api.queue(*[Reply(status=401, error="invalid api key")] * 3)
    with pytest.raises(ProviderError) as err:
        llm.complete("hi", model=model, api_base=api.url)
    assert f"authentication failed (set {variable})" in str(err.value)
    assert (err.value.status, err.value.retryable) == (401, False)
    assert err.value.provider == model.split("/")[0]
    assert len(api.received) == 1


def test_a_server_error_is_retryable(hosted: Impl, api: FakeLLMServer,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_LLM_RETRIES", "0")
    hosted.prime(Reply(status=500, error="overloaded"))
    with pytest.raises(ProviderError, match="overloaded") as err:
        hosted.complete("hi")
    assert (err.value.status, err.value.retryable, err.value.provider) == (500, True, "openai")
    assert len(api.received) == 1


def test_an_unreachable_server_is_a_retryable_provider_error(
        api: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_LLM_RETRIES", "0")
    with pytest.raises(ProviderError, match="Connection error") as err:
        llm.complete("hi", model=HOSTED, api_base=f"http://127.0.0.1:{free_port()}")
    assert err.value.retryable is True


@pytest.mark.parametrize(("model", "said"), [
    ("gemini/gemini-2.0-flash", "no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY)"),
    ("anthropic/claude-haiku-4-5", "authentication failed (set ANTHROPIC_API_KEY)")])
def test_a_missing_key_is_named_and_not_retried(monkeypatch: pytest.MonkeyPatch, model: str,
                                                said: str) -> None:
    # LiteLLM says a missing key as a connection error: it was retried, and its message was
    # buried under LiteLLM's traceback and "file a bug" banner.
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TITAN_LLM_RETRIES", "2")
    monkeypatch.chdir(Path(__file__).parent)  # no project .env with a key in it
    with pytest.raises(ProviderError) as err:
        llm.complete("hi", model=model)
    text = str(err.value)
    assert text.startswith(f"{model}: {said}"), text
    assert err.value.retryable is False
    assert "Traceback" not in text and "bug in LiteLLM" not in text


def test_a_transient_failure_is_retried(hosted: Impl, api: FakeLLMServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_LLM_RETRIES", "1")
    hosted.prime(Reply(status=503, error="try later"), "second time lucky")
    assert hosted.complete("hi").text == "second time lucky"
    assert len(api.received) == 2


def test_anthropic_messages_api(api: FakeLLMServer) -> None:
    api.queue(Reply(text="Bonjour", prompt_tokens=12, completion_tokens=3))
    reply = llm.complete("Say hello in French.", model="anthropic/claude-haiku-4-5",
                         api_base=api.url, max_tokens=20)
    (got,) = api.received
    assert (got.wire, got.path) == ("anthropic", "/v1/messages")
    assert got.headers["x-api-key"] == "test-anthropic_api_key"
    assert (got.body["model"], got.body["max_tokens"]) == ("claude-haiku-4-5", 20)
    assert reply.text == "Bonjour"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (12, 3)
    # LiteLLM 1.106.2's map prices claude-haiku-4-5 at $1 in / $5 out per Mtok.
    assert (reply.cost_usd, reply.cost_source) == (pytest.approx((12 * 1 + 3 * 5) / 1e6),
                                                   "litellm")


def test_gemini_generate_content_api(api: FakeLLMServer) -> None:
    api.queue(Reply(text='{"answer": 4}', prompt_tokens=1_000_000, completion_tokens=1_000_000))
    reply = llm.complete("2 + 2?", model="gemini/gemini-2.0-flash", api_base=api.url,
                         json_schema=SCHEMA)
    (got,) = api.received
    assert got.wire == "gemini" and got.path.endswith("/models/gemini-2.0-flash:generateContent")
    assert got.headers["x-goog-api-key"] == "test-gemini_api_key"
    config = got.body["generationConfig"]
    assert config["response_mime_type"] == "application/json"
    assert config["response_json_schema"] == SCHEMA
    assert reply.data == {"answer": 4}
    # Not in LiteLLM's map: Titan's own table prices it ($0.10 in / $0.40 out per Mtok).
    assert (reply.cost_usd, reply.cost_source) == (pytest.approx(0.50), "registered")


# --- local only --------------------------------------------------------------------------

@pytest.fixture
def local() -> Impl:
    require_local_model()
    return Impl("local", "local")


@pytest.mark.slow
def test_local_is_deterministic_at_temperature_zero(local: Impl) -> None:
    prompt = "Write one short sentence about the sea."
    first = local.complete(prompt, temperature=0, max_tokens=24)
    second = local.complete(prompt, temperature=0, max_tokens=24)
    assert first.text == second.text
    assert first.usage == second.usage


@pytest.mark.slow
def test_local_prompt_over_the_context_says_how_to_fix_it(
        local: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    long_prompt = "word " * 700
    # The model is already loaded at the default context; a smaller one must still apply.
    assert local.complete("Say yes.", max_tokens=4).text
    monkeypatch.setenv("TITAN_LLM_CONTEXT", "512")
    with pytest.raises(LLMError) as err:
        local.complete(long_prompt, max_tokens=8)
    message = str(err.value)
    assert "exceed context window of 512" in message
    assert "shorten the prompt or max_tokens, or raise TITAN_LLM_CONTEXT (now 512)" in message
    monkeypatch.delenv("TITAN_LLM_CONTEXT")  # and back: the default size is loaded again
    assert local.complete("Say yes.", max_tokens=4).text


@pytest.mark.slow
def test_local_grammar_holds_the_output_to_the_schema_whatever_the_prompt(local: Impl) -> None:
    """The grammar is consulted only for the sampled token (constrained.RejectionSampler):
    when the model wants prose, every token it proposes is refused and it still writes JSON
    of the schema, enum included."""
    schema = {"type": "object",
              "properties": {"mood": {"type": "string", "enum": ["CALM", "STORMY"]},
                             "waves": {"type": "integer"}},
              "required": ["mood", "waves"]}
    provider, _ = llm.providers.resolve("local")
    request = llm.Request("", [{"role": "user", "content": "Write a poem about the sea."}],
                          0.0, 40, schema, {})
    gen = provider.generate(request)  # no schema hint in the prompt: only the grammar
    data = json.loads(gen.text)
    jsonschema.validate(data, schema)
    sampler = provider._loaded[next(iter(provider._loaded))][1]._sampler
    assert sampler.rejections > 0, "the prompt should have pulled the model off the grammar"
