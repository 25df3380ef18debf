"""The local provider: a GGUF model run in-process by llama.cpp (llama-cpp-python).

Model strings: ``local`` (the packaged default, or ``TITAN_LOCAL_MODEL`` when set),
``local/<packaged name>`` (see :data:`titan.llm.weights.CATALOG`), ``local/<path>.gguf``.
A loaded model stays in memory for the life of the process (loading maps ~0.5 GB: ~0.5 s).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any

from titan.errors import LLMError, ModelUnavailable

from . import weights
from .cpushare import CpuShare
from .types import Generation, Request, Usage

DEFAULT_TEMPERATURE = 0.2
DEFAULT_MAX_TOKENS = 512
DEFAULT_CONTEXT = 8192


def _context_size() -> int:
    raw = os.environ.get("TITAN_LLM_CONTEXT", "")
    if raw.strip().isdigit() and int(raw) >= 512:
        return int(raw)
    return DEFAULT_CONTEXT


def model_path(model_id: str) -> tuple[Path, str]:
    """The GGUF file for a local model id, and the name reported for it."""
    if model_id in ("", "default"):
        override = os.environ.get("TITAN_LOCAL_MODEL")
        if override:
            path = weights.check_gguf(Path(override).expanduser())
            return path, f"local/{path.name}"
        model_id = weights.DEFAULT_LOCAL_MODEL
    if model_id.endswith(".gguf"):
        path = weights.check_gguf(Path(model_id).expanduser())
        return path, f"local/{path.name}"
    return weights.ensure(model_id), f"local/{model_id}"


class LocalProvider:
    name = "local"

    def __init__(self) -> None:
        # file -> (context size, Llama): the context is fixed when llama.cpp loads a model.
        self._loaded: dict[Path, tuple[int, Any]] = {}
        # One Llama object is not safe to use from two threads; calls in one process queue.
        self._lock = threading.Lock()
        atexit.register(self.close)

    def close(self) -> None:
        """Free the loaded models. Run at exit too: a Llama left to the interpreter's final
        teardown frees itself after llama_cpp's globals are gone and prints a traceback."""
        if not self._lock.acquire(timeout=5):
            return  # a generation is still running at exit; leave it be
        try:
            while self._loaded:
                self._loaded.popitem()[1][1].close()
        finally:
            self._lock.release()

    def _load(self, path: Path) -> Any:
        n_ctx = _context_size()
        cached = self._loaded.get(path)
        if cached is not None:
            if cached[0] == n_ctx:
                return cached[1]
            # TITAN_LLM_CONTEXT changed since it was loaded: load it again at the new size.
            self._loaded.pop(path)[1].close()
        try:
            import llama_cpp
        except ImportError:
            raise ModelUnavailable(
                "the local model needs llama-cpp-python, which is not installed here; run "
                "`titan llm install` (`make demo` runs it in a checkout), or pick a hosted model with "
                "TITAN_LLM_MODEL (e.g. gemini/gemini-2.0-flash)") from None
        from .constrained import llama_class
        from .cpushare import cores

        if b"AMX" in llama_cpp.llama_print_system_info():
            # The native build's AMX path crashes on the first token on these CPUs.
            raise ModelUnavailable(
                "this llama-cpp-python was built with AMX, which crashes on the first token; "
                "rebuild it portable with `titan llm install --rebuild`")
        if os.environ.get("TITAN_JOB_ID"):  # in a job's log: where its first call's time went
            sys.stderr.write(f"[titan.llm] loading the local model {path.name} "
                             f"(context {n_ctx})\n")
        llm = llama_class()(model_path=str(path), n_ctx=n_ctx, n_threads=cores(),
                    n_threads_batch=cores(), verbose=False)
        self._loaded[path] = (n_ctx, llm)
        return llm

    def generate(self, request: Request) -> Generation:
        if any(request.params.get(k) for k in ("tools", "tool_choice", "functions")) or any(
                m.get("tool_calls") for m in request.messages):
            # llama-cpp-python calls tools only with chat formats the packaged models do
            # not use: the tools would be dropped, or the transcript misread, in silence.
            raise LLMError("the local model does not call tools: tools= and messages with "
                           "tool_calls need a hosted model (gemini/gemini-2.0-flash, "
                           "openai/<name>, ...)")
        path, reported = model_path(request.model)
        with self._lock:
            llm = self._load(path)
            return self._generate(llm, request, reported)

    def cost(self, model: str, usage: Usage) -> tuple[float | None, str]:
        return 0.0, "local"  # your own CPU: nothing is billed

    def _generate(self, llm: Any, request: Request, reported: str) -> Generation:
        import llama_cpp

        kwargs: dict[str, Any] = dict(request.params)
        kwargs["messages"] = request.messages
        kwargs["temperature"] = (DEFAULT_TEMPERATURE if request.temperature is None
                                 else request.temperature)
        kwargs["max_tokens"] = request.max_tokens or DEFAULT_MAX_TOKENS
        if request.json_schema is not None:
            # llama-cpp-python compiles the schema into a grammar: only matching JSON decodes
            # (checked token by token by constrained.RejectionSampler, which keeps it fast).
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        ctx = llm._ctx.ctx
        with CpuShare(weights.cache_dir() / "cpushare") as share:
            current = [share.threads()]
            llama_cpp.llama_set_n_threads(ctx, current[0], current[0])

            def rebalance(_ids: Any, scores: Any) -> Any:
                # Called once per generated token: follow the number of active generators.
                n = share.threads()
                if n != current[0]:
                    current[0] = n
                    llama_cpp.llama_set_n_threads(ctx, n, n)
                return scores

            kwargs["logits_processor"] = llama_cpp.LogitsProcessorList([rebalance])
            try:
                out = llm.create_chat_completion(**kwargs)
            except ValueError as exc:
                if "context window" in str(exc):
                    raise LLMError(
                        f"{exc}: shorten the prompt or max_tokens, or raise "
                        f"TITAN_LLM_CONTEXT (now {_context_size()})") from None
                raise LLMError(f"local model: {exc}") from None
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Generation(
            text=choice["message"].get("content") or "",
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            model=reported,
            finish_reason=choice.get("finish_reason"),
        )
