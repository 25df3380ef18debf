"""LiteLLM, imported once, on first use, and offline.

It takes seconds to import and the local path never needs it, so nothing imports it before a
hosted call or a hosted price is asked for. ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set first
so that importing it never fetches a price map from the network. A leaf of :mod:`titan.llm`:
the hosted provider and the price table both load LiteLLM through it.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from titan.errors import ModelUnavailable

_import_lock = threading.Lock()
_litellm: Any = None


def litellm_module() -> Any:
    """The ``litellm`` module; ModelUnavailable when it is not installed."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            # Nor, on the first Anthropic call, its beta-header table from GitHub.
            os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
            try:
                import litellm
            except ImportError:
                raise ModelUnavailable(
                    "hosted models need LiteLLM: pip install 'titan-agents[hosted]' "
                    "(litellm==1.106.2)") from None
            litellm.suppress_debug_info = True
            _quiet_litellm_logs()
            _litellm = litellm
    return _litellm


def _quiet_litellm_logs() -> None:
    """LiteLLM's loggers print each call at INFO (four lines, to stdout, through a handler of
    their own): a master at INFO showed 5,270 such lines after 1,300 evaluation runs (a QA
    pass). Only warnings are heard, unless ``LITELLM_LOG`` or a logging configuration set a
    level already."""
    if os.environ.get("LITELLM_LOG"):
        return
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
