"""Hosted calls at the edges of the OpenAI wire: what a reply leaves out, what a request may
carry. LiteLLM talks HTTP to the scripted stand-in for the provider (tests/fake_llm_api.py),
the only fake here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_llm_api import FakeLLMServer, Reply, serve
from titan import llm
from titan.errors import LLMError

HOSTED = "openai/fake-model"


@pytest.fixture(scope="module")
def module_api() -> Iterator[FakeLLMServer]:
    with serve() as api:
        yield api


@pytest.fixture
def api(module_api: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    module_api.replies.clear()
    module_api.received.clear()
    monkeypatch.setenv("OPENAI_API_KEY", "test-openai-key")
    return module_api


@pytest.mark.usefixtures("prices")
@pytest.mark.parametrize("priced", [False, True])
def test_a_reply_without_usage_costs_unknown_never_zero(
        api: FakeLLMServer, calls: list[llm.LLMCall], priced: bool) -> None:
    # llama.cpp and Ollama builds and some proxies leave `usage` out: a registered price, or
    # LiteLLM's map (gpt-4o-mini), priced 0 tokens at a made-up $0.
    model = HOSTED if priced else "openai/gpt-4o-mini"
    if priced:
        llm.register_price(model, 0.5, 1.5)
    before = llm.totals()
    api.queue(Reply(text="a long answer " * 50, usage=False))
    reply = llm.complete("write a lot", model=model, api_base=api.url)
    assert (reply.cost_usd, reply.cost_source) == (None, "unknown")
    assert reply.usage == llm.Usage()
    after = llm.totals()
    assert after.unknown_cost_calls == before.unknown_cost_calls + 1
    assert after.cost_usd == before.cost_usd
    assert calls[-1].completion is reply


@pytest.mark.usefixtures("prices")
def test_a_repair_whose_reply_has_no_usage_makes_the_call_unknown(api: FakeLLMServer) -> None:
    llm.register_price(HOSTED, 1.0, 1.0)
    api.queue(Reply(text="not json", prompt_tokens=100, completion_tokens=10),
              Reply(text='{"n": 1}', usage=False))
    reply = llm.complete("n?", model=HOSTED, api_base=api.url,
                         json_schema={"type": "object", "required": ["n"]})
    assert (reply.data, reply.attempts) == ({"n": 1}, 2)
    assert (reply.cost_usd, reply.cost_source) == (None, "unknown")
    assert reply.usage == llm.Usage(100, 10)  # what was reported; the rest is not known


@pytest.mark.parametrize("model", [HOSTED, "local"])
def test_stream_is_refused_before_any_request(api: FakeLLMServer, calls: list[llm.LLMCall],
                                              model: str) -> None:
    # LiteLLM answered with a stream wrapper and the call died on an AttributeError.
    with pytest.raises(LLMError) as err:
        llm.complete("hi", model=model, stream=True, api_base=api.url)
    assert str(err.value).startswith("stream=True is not supported: complete() returns the "
                                     "whole reply")
    assert "llm.acomplete" in str(err.value)
    assert api.received == [] and calls == []
    assert llm.complete("hi", model=HOSTED, stream=False, api_base=api.url).text


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_tool_calls_come_back_and_their_follow_up_is_accepted(
        api: FakeLLMServer, calls: list[llm.LLMCall]) -> None:
    api.queue(Reply(text="", tool_calls=(("call_1", "get_weather", '{"city": "Paris"}'),)),
              "Sunny in Paris.")
    asked = llm.complete("Weather in Paris?", model=HOSTED, tools=TOOLS, api_base=api.url)
    assert api.received[0].body["tools"] == TOOLS
    assert (asked.text, asked.finish_reason) == ("", "tool_calls")
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert asked.tool_calls == [call]
    assert asked.message() == {"role": "assistant", "content": None, "tool_calls": [call]}
    # The standard follow-up: the assistant's tool calls (content None), then their results.
    transcript = [{"role": "user", "content": "Weather in Paris?"}, asked.message(),
                  {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    answer = llm.complete(transcript, model=HOSTED, tools=TOOLS, api_base=api.url)
    assert answer.text == "Sunny in Paris." and answer.tool_calls == []
    sent = api.received[1].body["messages"]
    assert sent[1]["tool_calls"] == [call] and sent[1].get("content") is None
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert [c.completion for c in calls] == [asked, answer]


@pytest.mark.parametrize(("message", "said"), [
    ({"role": "assistant", "content": None}, "messages[0].content must be a string"),
    ({"role": "assistant", "content": None, "tool_calls": {"id": "x"}},
     "messages[0].tool_calls must be a list of tool calls"),
    ({"role": "user", "content": "hi", "tool_calls": [{"id": "x"}]},
     "messages[0].tool_calls must be a list of tool calls"),
])
def test_malformed_tool_messages_are_refused(api: FakeLLMServer, message: dict[str, object],
                                             said: str) -> None:
    with pytest.raises(LLMError, match=said.replace("[", r"\[").replace("]", r"\]")):
        llm.complete([message], model=HOSTED, api_base=api.url)
    assert api.received == []


def test_the_local_model_refuses_tools_before_loading_anything(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TITAN_LOCAL_MODEL", str(tmp_path / "absent.gguf"))  # never opened
    with pytest.raises(LLMError, match="the local model does not call tools: tools= and "
                                       "messages with tool_calls need a hosted model"):
        llm.complete("Weather in Paris?", model="local", tools=TOOLS)
    with pytest.raises(LLMError, match="the local model does not call tools"):
        llm.complete([{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}],
            model="local")


def test_credentials_reach_the_provider_but_not_the_recording(
        api: FakeLLMServer, calls: list[llm.LLMCall]) -> None:
    key = "3f9c2a7be41d4e0c9b8a7f6e5d4c3b2a"  # an Azure OpenAI key: no well-known prefix
    schema = {"type": "object", "properties": {"password": {"type": "string"}}}
    api.queue('{"password": "x"}')
    llm.complete("hi", model=HOSTED, api_base=api.url, api_key=key, max_tokens=9,
                 json_schema=schema, prompt_cache_key="c1",
                 extra_headers={"Authorization": "Bearer vllm-secret-123", "X-Trace": "t1",
                                "X-Custom": "Bearer other-secret"})
    sent = api.received[0].headers
    assert sent["authorization"] == "Bearer vllm-secret-123" and sent["x-trace"] == "t1"
    assert calls[0].params == {
        "max_tokens": 9, "temperature": None, "json_schema": schema, "api_base": api.url,
        "api_key": "[redacted]", "prompt_cache_key": "c1",
        "extra_headers": {"Authorization": "[redacted]", "X-Trace": "t1",
                          "X-Custom": "[redacted]"}}


@pytest.mark.parametrize(("params", "recorded"), [
    ({"api_base": "https://user:pw@llm.example/v1?api-version=2024&key=abc"},
     {"api_base": "https://[redacted]@llm.example/v1?api-version=2024&key=[redacted]"}),
    ({"api_base": "http://127.0.0.1:8000/v1"}, {"api_base": "http://127.0.0.1:8000/v1"}),
    ({"aws_secret_access_key": "s", "aws_access_key_id": "i", "aws_session_token": "t",
      "azure_ad_token": "a", "vertex_credentials": "{}", "max_completion_tokens": 5},
     {"aws_secret_access_key": "[redacted]", "aws_access_key_id": "[redacted]",
      "aws_session_token": "[redacted]", "azure_ad_token": "[redacted]",
      "vertex_credentials": "[redacted]", "max_completion_tokens": 5}),
    ({"headers": {"api-key": "k", "x-goog-api-key": "g", "Cookie": "c", "Accept": "*/*"}},
     {"headers": {"api-key": "[redacted]", "x-goog-api-key": "[redacted]",
                  "Cookie": "[redacted]", "Accept": "*/*"}}),
])
def test_what_counts_as_a_credential(params: dict[str, object],
                                     recorded: dict[str, object]) -> None:
    from titan.llm.credentials import recordable

    assert recordable(params) == recorded


@pytest.mark.parametrize("where", ["env", "param"])
def test_an_openai_compatible_server_needs_no_key(
        api: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        where: str) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.chdir(tmp_path)  # no project .env with a key in it
    params = {"api_base": api.url} if where == "param" else {}
    if where == "env":
        monkeypatch.setenv("TITAN_LLM_API_BASE", api.url)
    api.queue("served without a key")
    assert llm.complete("hi", model="openai/llama3", **params).text == "served without a key"
    assert api.received[0].headers["authorization"] == "Bearer EMPTY"


def test_a_server_that_wants_a_key_says_which_variable_to_set(
        api: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TITAN_LLM_API_BASE", api.url)
    api.queue(Reply(status=401, error="invalid api key"))
    with pytest.raises(LLMError, match=r"openai/llama3: authentication failed \(set "
                                       r"OPENAI_API_KEY\)"):
        llm.complete("hi", model="openai/llama3")
    assert len(api.received) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_keyless_server_that_fails_for_a_moment_is_retried_not_said_to_want_a_key(
        api: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        status: int) -> None:
    # An OpenAI-compatible server of your own that is overloaded for a moment: the key it
    # never needed is not what is wrong, and the call is retried as any transient failure.
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TITAN_LLM_API_BASE", api.url)
    monkeypatch.setenv("TITAN_LLM_RETRIES", "1")
    api.queue(Reply(status=status, error="overloaded"), "served after a retry")
    assert llm.complete("hi", model="openai/llama3").text == "served after a retry"
    assert len(api.received) == 2
    api.queue(Reply(status=status, error="overloaded"), Reply(status=status, error="overloaded"))
    with pytest.raises(LLMError) as failed:
        llm.complete("hi", model="openai/llama3")
    assert "API key" not in str(failed.value) and "overloaded" in str(failed.value)
    assert failed.value.status == status and failed.value.retryable


@pytest.mark.usefixtures("prices")
def test_model_is_the_name_asked_and_provider_model_what_the_provider_says(
        api: FakeLLMServer, calls: list[llm.LLMCall]) -> None:
    llm.register_price(HOSTED, 1.0, 2.0)  # priced by the name it is asked by
    api.queue(Reply(text="hi", model="fake-model-2024-07-18", prompt_tokens=10,
                    completion_tokens=5))
    reply = llm.complete("hi", model=HOSTED, api_base=api.url)
    assert (reply.model, reply.provider_model) == (HOSTED, "fake-model-2024-07-18")
    assert (reply.cost_usd, reply.cost_source) == (pytest.approx(20e-6), "registered")
    assert calls[0].model == HOSTED
