"""LiteLLM's per-call INFO lines are not heard in a process at INFO (a master's), unless
LITELLM_LOG asks for them."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import logging
logging.basicConfig(level=logging.INFO)
from titan.llm.litellm_import import litellm_module
litellm_module()
logging.getLogger("LiteLLM").info("a call's chatter")
logging.getLogger("LiteLLM").warning("a warning")
"""


@pytest.mark.parametrize(("litellm_log", "chatter"), [(None, False), ("INFO", True)])
def test_litellm_chatter_is_quiet_unless_asked(litellm_log: str | None, chatter: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("litellm")
    if litellm_log is None:
        monkeypatch.delenv("LITELLM_LOG", raising=False)
    else:
        monkeypatch.setenv("LITELLM_LOG", litellm_log)
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120, check=True)
    said = done.stdout + done.stderr
    assert "a warning" in said
    assert ("a call's chatter" in said) is chatter, said
