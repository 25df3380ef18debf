"""The project's .env: parsed like the common tools do, never overriding the environment,
never logging a value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from titan import envfile

ENV_TEXT = "\n".join([
    "# hosted model keys",
    "GEMINI_API_KEY=sk-gemini-secret",
    'export OPENAI_API_KEY="sk-openai secret"   ',  # trailing blanks are not the value's
    "ANTHROPIC_API_KEY='sk-ant-secret' ",
    "TITAN_LLM_MODEL=gemini/gemini-2.0-flash # the default model",
    'MULTI="line one\\nline two"',
    "not a variable line with sk-leaked-secret",
    'BROKEN="never closed',
    "EMPTY=",
]) + "\n"


def test_parse_reads_the_common_format() -> None:
    values, bad = envfile.parse(ENV_TEXT)
    assert values == {
        "GEMINI_API_KEY": "sk-gemini-secret", "OPENAI_API_KEY": "sk-openai secret",
        "ANTHROPIC_API_KEY": "sk-ant-secret", "TITAN_LLM_MODEL": "gemini/gemini-2.0-flash",
        "MULTI": "line one\nline two", "EMPTY": ""}
    assert bad == [7, 8]


def test_load_adds_what_the_environment_lacks_and_logs_no_value(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / ".env").write_text(ENV_TEXT)
    env = {"OPENAI_API_KEY": "from-the-shell"}
    with caplog.at_level(logging.DEBUG, logger="titan"):
        added = envfile.load(tmp_path, env)
    assert added == ["GEMINI_API_KEY", "ANTHROPIC_API_KEY", "TITAN_LLM_MODEL", "MULTI", "EMPTY"]
    assert env["OPENAI_API_KEY"] == "from-the-shell"  # the environment wins
    assert env["GEMINI_API_KEY"] == "sk-gemini-secret"
    assert "lines 7, 8" in caplog.text and "GEMINI_API_KEY" in caplog.text
    assert "secret" not in caplog.text  # no value, not even the broken lines'


def test_no_file_no_change(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert envfile.load(tmp_path, env) == [] and env == {}
