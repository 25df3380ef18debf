"""A scripted stand-in for hosted LLM APIs: the edge of the world, served on 127.0.0.1.

It speaks the three wire formats LiteLLM uses for the providers Titan names — OpenAI's
``/chat/completions``, Anthropic's ``/v1/messages`` and Gemini's ``...:generateContent`` —
answers with the replies a test queued (text, token usage with cached/reasoning details, or
an HTTP error), and records every request it got. Point a model at it with ``api_base``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``status`` 200 with ``text`` and usage, or an error status."""

    text: str = "Hello from the fake model."
    status: int = 200
    prompt_tokens: int = 11
    completion_tokens: int = 7
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    error: str = "scripted failure"
    #: OpenAI wire only: tool calls the model asks for, as (id, function name, JSON arguments).
    tool_calls: tuple[tuple[str, str, str], ...] = ()
    #: OpenAI wire only: False leaves ``usage`` out of the answer (llama.cpp, Ollama, proxies).
    usage: bool = True
    #: The model the answer says answered (as a snapshot name); empty: the one asked for.
    model: str = ""


@dataclass(frozen=True)
class Received:
    """One request the server got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def wire(self) -> str:
        if self.path.endswith("/chat/completions"):
            return "openai"
        if self.path.endswith("/messages"):
            return "anthropic"
        if ":generateContent" in self.path:
            return "gemini"
        return "unknown"


@dataclass
class FakeLLMServer:
    """The server's state: replies to give (in order, then ``default``) and requests got."""

    default: Reply = field(default_factory=Reply)
    replies: deque[Reply] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    # Answers computed from the request (a scripted world for many concurrent callers);
    # queued replies still go first.
    responder: Callable[[Received], Reply | str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, *replies: Reply | str) -> None:
        with self._lock:
            self.replies.extend(Reply(text=r) if isinstance(r, str) else r for r in replies)

    def next_reply(self, got: Received) -> Reply:
        with self._lock:
            self.received.append(got)
            if self.replies:
                return self.replies.popleft()
        if self.responder is not None:
            reply = self.responder(got)
            return Reply(text=reply) if isinstance(reply, str) else reply
        return self.default


def _openai(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [{"id": i, "type": "function",
                                  "function": {"name": name, "arguments": arguments}}
                                 for i, name, arguments in reply.tool_calls]
    body: dict[str, Any] = {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                     "message": message}],
    }
    if reply.usage:
        body["usage"] = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        }
    return body


def _anthropic(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens,
                  "cache_read_input_tokens": reply.cached_tokens,
                  "cache_creation_input_tokens": 0},
    }


def _gemini(reply: Reply, model: str) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": reply.prompt_tokens,
        "candidatesTokenCount": reply.completion_tokens,
        "totalTokenCount": reply.prompt_tokens + reply.completion_tokens + reply.reasoning_tokens,
    }
    if reply.cached_tokens:
        usage["cachedContentTokenCount"] = reply.cached_tokens
    if reply.reasoning_tokens:
        usage["thoughtsTokenCount"] = reply.reasoning_tokens
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": reply.text}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage, "modelVersion": model,
    }


def _error_body(reply: Reply, wire: str) -> dict[str, Any]:
    if wire == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": reply.error}}
    if wire == "gemini":
        return {"error": {"code": reply.status, "message": reply.error, "status": "ERROR"}}
    return {"error": {"message": reply.error, "type": "fake_error", "code": reply.status}}


def _handler(state: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output clean

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            got = Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                           json.loads(raw or b"{}"))
            reply = state.next_reply(got)
            model = reply.model or str(got.body.get("model")
                                       or self.path.rsplit("/", 1)[-1].split(":")[0])
            if reply.status != 200:
                body = _error_body(reply, got.wire)
            elif got.wire == "anthropic":
                body = _anthropic(reply, model)
            elif got.wire == "gemini":
                body = _gemini(reply, model)
            else:
                body = _openai(reply, model)
            data = json.dumps(body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class serve:  # noqa: N801 (used as a context manager, like open())
    """``with serve() as api:`` — a running :class:`FakeLLMServer` on a free local port."""

    def __init__(self) -> None:
        self.state = FakeLLMServer()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._server.daemon_threads = True
        self.state.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self.state

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
