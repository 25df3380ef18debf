"""The project's .env: parsed like the common tools do, never overriding the environment,
never logging a value."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
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
    assert "lines 7, 8 are not KEY=value and were skipped" in caplog.text
    assert "GEMINI_API_KEY" in caplog.text
    assert "secret" not in caplog.text  # no value, not even the broken lines'


@pytest.mark.parametrize(("text", "said"), [
    ("junk\n", "line 1 is not KEY=value and was skipped"),  # was "lines 1 are ..."
    ("A=1\n" + "junk\n" * 12, "lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 2 more are not "
                                "KEY=value and were skipped"),
])
def test_the_lines_skipped_are_counted_in_words(tmp_path: Path, text: str, said: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / ".env").write_text(text)
    with caplog.at_level(logging.WARNING, logger="titan"):
        envfile.load(tmp_path, {})
    assert caplog.messages == [f"{tmp_path / '.env'}: {said}"]


def test_no_file_no_change(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert envfile.load(tmp_path, env) == [] and env == {}


def test_a_file_others_may_write_is_not_read(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A .env another local user could have written would point the SDK's model calls, key
    included, at their server (a QA pass): it is named in a warning and not read."""
    env_file = tmp_path / ".env"
    env_file.write_text("TITAN_LLM_API_BASE=http://127.0.0.1:9/v1\n")
    env_file.chmod(0o666)
    env: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="titan"):
        assert envfile.load(tmp_path, env) == [] and env == {}
    assert "other users may write it" in caplog.text and str(env_file) in caplog.text
    env_file.chmod(0o600)
    assert envfile.load(tmp_path, env) == ["TITAN_LLM_API_BASE"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a file to another user needs root")
def test_a_file_of_another_user_is_not_read(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TITAN_LLM_API_BASE=http://127.0.0.1:9/v1\n")
    env_file.chmod(0o644)
    os.chown(env_file, 65534, 65534)  # nobody's
    env: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="titan"):
        assert envfile.load(tmp_path, env) == [] and env == {}
    assert "belongs to another user" in caplog.text


def test_a_fifo_planted_as_dotenv_neither_hangs_nor_is_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".env")
    env: dict[str, str] = {}
    assert envfile.load(tmp_path, env) == [] and env == {}


def test_inside_a_job_only_its_project_folder_s_dotenv_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared, project = tmp_path / "shared", tmp_path / "projects" / "p1"
    for folder in (shared, project):
        folder.mkdir(parents=True)
        (folder / ".env").write_text("GEMINI_API_KEY=k\n")
        (folder / ".env").chmod(0o600)
    monkeypatch.setenv("TITAN_WORKSPACE", str(shared))
    monkeypatch.setenv("TITAN_PROJECT_DIR", str(project))
    env: dict[str, str] = {}
    assert envfile.load(shared, env) == []
    assert envfile.load(project, env) == ["GEMINI_API_KEY"]
    monkeypatch.delenv("TITAN_PROJECT_DIR")  # a plain script's job
    assert envfile.load(project, {}) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_checkout_never_stages_the_dotenv_that_holds_the_keys(tmp_path: Path) -> None:
    # Seed 001 has its users put GEMINI_API_KEY in a .env at the project root; the checkout's
    # .gitignore did not name it, so the `git add -A` after trying the example staged the key.
    repo = tmp_path / "checkout"
    (repo / "examples" / "agent").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[2] / ".gitignore", repo / ".gitignore")
    (repo / ".env").write_text("GEMINI_API_KEY=sk-gemini-secret\n")
    (repo / "examples" / "agent" / ".env").write_text("OPENAI_API_KEY=sk-openai-secret\n")
    (repo / "examples" / "agent" / "agent.py").write_text("print('hi')\n")
    git = ["git", "-c", "init.defaultBranch=main", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    staged = subprocess.run([*git, "diff", "--cached", "--name-only"], check=True,
                            capture_output=True, text=True).stdout.split()
    assert staged == [".gitignore", "examples/agent/agent.py"]
