"""Which provider answers a model string.

``None`` means ``TITAN_LLM_MODEL``, else ``local``. ``local`` and ``local/...`` run in-process
(:mod:`titan.llm.local`); a prefix registered with :func:`register_provider` goes to that
provider; every other string is a LiteLLM model name (``gemini/gemini-2.0-flash``,
``gpt-4o-mini``, ``anthropic/claude-...``, ``openai/<name>`` with ``TITAN_LLM_API_BASE``).
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

from titan.errors import LLMError

from .types import Generation, Request, Usage

DEFAULT_MODEL = "local"


class Provider(Protocol):
    """What a provider implements: answer a request, and price what it answered."""

    name: str

    def generate(self, request: Request) -> Generation: ...

    def cost(self, model: str, usage: Usage) -> tuple[float | None, str]: ...


_custom: dict[str, Provider] = {}
_builtin: dict[str, Provider] = {}
_lock = threading.Lock()


def register_provider(prefix: str, provider: Provider) -> None:
    """Route model strings ``<prefix>/<model>`` to ``provider`` (it gets ``<model>``)."""
    if not prefix or "/" in prefix:
        raise LLMError(f"a provider prefix is a non-empty word without '/', not {prefix!r}")
    with _lock:
        _custom[prefix] = provider


def unregister_provider(prefix: str) -> None:
    with _lock:
        _custom.pop(prefix, None)


def _builtin_provider(kind: str) -> Provider:
    with _lock:
        provider = _builtin.get(kind)
        if provider is None:
            if kind == "local":
                from .local import LocalProvider

                provider = LocalProvider()
            else:
                from .hosted import HostedProvider

                provider = HostedProvider()
            _builtin[kind] = provider
        return provider


def resolve(model: str | None) -> tuple[Provider, str]:
    """``(provider, the provider's model id)`` for a model string."""
    name = (model or os.environ.get("TITAN_LLM_MODEL") or DEFAULT_MODEL).strip()
    if not name:
        raise LLMError("empty model name")
    if name == "local":
        return _builtin_provider("local"), ""
    prefix, _, rest = name.partition("/")
    if prefix == "local":
        return _builtin_provider("local"), rest
    with _lock:
        custom = _custom.get(prefix) if rest else None
    if custom is not None:
        return custom, rest
    return _builtin_provider("hosted"), name


def usable(model: str | None) -> None:
    """Raise :class:`~titan.errors.LLMError` when ``model`` (None: the default) cannot be
    called at all — an unknown provider or model, a hosted one without its key — for work
    that would otherwise fail call after call. A provider that cannot tell says nothing."""
    provider, name = resolve(model)
    check = getattr(provider, "usable", None)
    if check is not None:
        check(name)

