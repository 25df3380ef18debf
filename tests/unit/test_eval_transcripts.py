"""Coding CLIs' transcripts (Claude Code, Codex CLI) read into a coding run's trajectory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from titan.evals import transcripts
from titan.evals.coding_job import grade

WS = "/work/ws"

# A Claude Code session as its JSONL holds it: the prompt, a turn with thinking and a Bash
# call, the result (a failure with its exit code), an edit, another tool, a final turn.
CLAUDE = [
    {"type": "summary", "summary": "Fix add", "leafUuid": "x"},
    {"type": "user", "cwd": WS, "sessionId": "s1", "timestamp": "2026-11-25T10:00:00.000Z",
     "message": {"role": "user", "content": "Fix the add function"}},
    {"type": "assistant", "cwd": WS, "timestamp": "2026-11-25T10:00:01.000Z",
     "message": {"role": "assistant", "model": "claude-sonnet-4", "content": [
         {"type": "thinking", "thinking": "Run the tests first."},
         {"type": "text", "text": "Let me run the tests."},
         {"type": "tool_use", "id": "toolu_1", "name": "Bash",
          "input": {"command": "pytest -q", "description": "Run tests"}}]}},
    {"type": "user", "cwd": WS, "timestamp": "2026-11-25T10:00:03.000Z",
     "message": {"role": "user", "content": [
         {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
          "content": "Exit code 1\nFAILED test_app.py::test_add"}]}},
    {"type": "assistant", "cwd": WS, "timestamp": "2026-11-25T10:00:04.000Z",
     "message": {"role": "assistant", "content": [
         {"type": "tool_use", "id": "toolu_2", "name": "Edit",
          "input": {"file_path": f"{WS}/src/app.py", "old_string": "a - b",
                    "new_string": "a + b"}},
         {"type": "tool_use", "id": "toolu_3", "name": "Grep",
          "input": {"pattern": "def add"}}]}},
    {"type": "user", "cwd": WS, "timestamp": "2026-11-25T10:00:05.000Z",
     "message": {"role": "user", "content": [
         {"type": "tool_result", "tool_use_id": "toolu_2", "content": "ok"},
         {"type": "tool_result", "tool_use_id": "toolu_3",
          "content": [{"type": "text", "text": "src/app.py:1:def add(a, b):"}]}]}},
    {"type": "assistant", "cwd": WS, "timestamp": "2026-11-25T10:00:06.000Z",
     "message": {"role": "assistant", "content": [{"type": "text", "text": "Fixed."}]}},
]

# A Codex CLI rollout: session_meta, reasoning, a shell call and its output, an apply_patch,
# a final message.
CODEX = [
    {"timestamp": "2026-11-25T10:00:00Z", "type": "session_meta",
     "payload": {"id": "r1", "cwd": WS, "originator": "codex_cli_rs"}},
    {"timestamp": "2026-11-25T10:00:00.5Z", "type": "response_item",
     "payload": {"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "Fix add"}]}},
    {"timestamp": "2026-11-25T10:00:01Z", "type": "response_item",
     "payload": {"type": "reasoning", "summary": [{"type": "summary_text", "text": "test"}]}},
    {"timestamp": "2026-11-25T10:00:01.5Z", "type": "response_item",
     "payload": {"type": "function_call", "name": "shell", "call_id": "c1",
                 "arguments": json.dumps({"command": ["bash", "-lc", "pytest -q"],
                                          "workdir": WS})}},
    {"timestamp": "2026-11-25T10:00:02Z", "type": "response_item",
     "payload": {"type": "function_call_output", "call_id": "c1",
                 "output": json.dumps({"output": "1 failed",
                                       "metadata": {"exit_code": 1,
                                                    "duration_seconds": 0.4}})}},
    {"timestamp": "2026-11-25T10:00:03Z", "type": "response_item",
     "payload": {"type": "custom_tool_call", "name": "apply_patch", "call_id": "c2",
                 "input": "*** Begin Patch\n*** Update File: src/app.py\n@@\n-a - b\n+a + b\n"
                          "*** Add File: tests/test_more.py\n+x\n*** End Patch\n"}},
    {"timestamp": "2026-11-25T10:00:04Z", "type": "event_msg",
     "payload": {"type": "token_count"}},
    {"timestamp": "2026-11-25T10:00:05Z", "type": "response_item",
     "payload": {"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Done: add fixed."}]}},
]


def test_claude_code_sessions_become_turns_commands_edits_and_tools() -> None:
    assert transcripts.detect(CLAUDE) == transcripts.CLAUDE_CODE
    assert transcripts.session_cwd(CLAUDE) == WS
    steps = transcripts.parse_claude_code(CLAUDE, Path(WS))
    assert [s["kind"] for s in steps] == ["message", "command", "edit", "tool", "message"]
    turn, command, edit, tool, last = steps
    assert turn["text"] == "Let me run the tests." and turn["thinking"] == 1
    assert turn["at"] == pytest.approx(1795600801.0)
    assert command["command"] == "pytest -q" and command["exit_code"] == 1
    assert "FAILED test_app.py::test_add" in command["output"]
    assert edit == {"kind": "edit", "path": "src/app.py", "tool": "Edit",
                    "at": pytest.approx(1795600804.0), "source": "claude-code"}
    assert tool["tool"] == "Grep" and tool["input"] == {"pattern": "def add"}
    assert tool["output"] == "src/app.py:1:def add(a, b):" and tool["error"] is False
    assert last["text"] == "Fixed." and last["thinking"] == 0


def test_codex_rollouts_become_turns_commands_and_patch_edits() -> None:
    assert transcripts.detect(CODEX) == transcripts.CODEX
    steps = transcripts.parse_codex(CODEX, Path(WS))
    assert [s["kind"] for s in steps] == ["command", "edit", "edit", "message"]
    assert steps[0]["command"] == "pytest -q" and steps[0]["exit_code"] == 1
    assert steps[0]["output"] == "1 failed"
    assert [s["path"] for s in steps[1:3]] == ["src/app.py", "tests/test_more.py"]
    assert steps[3]["text"] == "Done: add fixed." and steps[3]["thinking"] == 1
    # Older rollouts hold the bare items, and a shell call may carry the patch itself.
    old = [{"id": "r0", "timestamp": "2025-05-01T00:00:00Z", "instructions": ""},
           {"type": "function_call", "name": "shell", "call_id": "c9", "arguments": json.dumps(
               {"command": ["apply_patch", "*** Begin Patch\n*** Delete File: old.py\n"]})},
           {"type": "local_shell_call", "call_id": "c10",
            "action": {"type": "exec", "command": ["ls", "-la", "my dir"]}},
           {"type": "function_call_output", "call_id": "c10", "output": "plain text"}]
    steps = transcripts.parse_codex(old)
    assert steps[0] == {"kind": "edit", "path": "old.py", "tool": "apply_patch", "at": None,
                        "source": "codex"}
    assert steps[1]["command"] == "ls -la 'my dir'" and steps[1]["output"] == "plain text"
    assert steps[1]["exit_code"] is None


def test_unknown_lines_and_formats_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('not json\n[1, 2]\n{"type": "something else"}\n')
    assert transcripts.read(path) == (None, [])
    broken = [{"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": "a", "name": "Bash", "input": "not an object"},
        {"type": "tool_result", "tool_use_id": "unknown", "content": "x"}, "junk"]}}]
    assert transcripts.parse_claude_code(broken) == [
        {"kind": "command", "command": "", "exit_code": None, "output": None, "at": None,
         "source": "claude-code"}]


def _jsonl(path: Path, items: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(i) + "\n" for i in items))


def test_discovery_keeps_fresh_sessions_that_ran_in_the_workspace(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    claude, codex = tmp_path / "claude", tmp_path / "codex"
    mine = [dict(i, cwd=str(root)) if "cwd" in i else i for i in CLAUDE]
    _jsonl(claude / "projects" / "-ws" / "mine.jsonl", mine)
    _jsonl(claude / "projects" / "-other" / "theirs.jsonl", CLAUDE)  # another directory
    _jsonl(codex / "sessions" / "2026" / "11" / "25" / "rollout-1.jsonl",
           [{"type": "session_meta", "payload": {"cwd": str(root / "sub")}}])
    explicit = tmp_path / "drop"
    _jsonl(explicit / "copied.jsonl", CODEX)
    env = {"HOME": str(tmp_path), "CLAUDE_CONFIG_DIR": str(claude), "CODEX_HOME": str(codex)}
    found = transcripts.discover(root, 0, env, explicit)
    assert [p.name for p in found] == ["copied.jsonl", "mine.jsonl", "rollout-1.jsonl"]
    # Written before the run started: not this run's.
    assert [p.name for p in transcripts.discover(root, 4e9, env, explicit)] == ["copied.jsonl"]


AGENT = """\
import json, os, sys, time
from pathlib import Path
Path("src/app.py").write_text("def add(a, b):\\n    return a + b\\n")
ws = os.environ["TITAN_EVAL_WORKSPACE"]
now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
items = [
    {"type": "assistant", "cwd": ws, "timestamp": now, "message": {"role": "assistant",
     "content": [{"type": "text", "text": "Fixing add."},
                 {"type": "tool_use", "id": "t1", "name": "Bash",
                  "input": {"command": "cat src/app.py"}},
                 {"type": "tool_use", "id": "t2", "name": "Write",
                  "input": {"file_path": ws + "/src/app.py", "content": "..."}}]}},
    {"type": "user", "cwd": ws, "timestamp": now, "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "def add(a, b): ..."}]}},
]
store = Path(os.environ["CLAUDE_CONFIG_DIR"]) / "projects" / "ws"
store.mkdir(parents=True, exist_ok=True)
(store / "session.jsonl").write_text("".join(json.dumps(i) + "\\n" for i in items))
"""


def test_a_coding_run_reads_the_cli_transcript_it_left(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent behaves as Claude Code does: its session lands in CLAUDE_CONFIG_DIR. The
    # run's trajectory is read from it (turn, command with output, edit), not from strace.
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    task = {"id": "t1", "user_instruction": "fix add",
            "workspace": {"files": {"src/app.py": "def add(a, b):\n    return a - b\n"}}}
    agent = {"script_sha256": "abc", "filename": "agent.py", "args": [], "timeout_s": 60}
    report, code = grade(task, agent, tmp_path / "run", lambda sha: AGENT.encode())
    assert code == 0 and report["eval_error"] is None, report
    assert report["trajectory_source"] == "claude-code"
    kinds = [(s["kind"], s.get("text") or s.get("command") or s.get("path"))
             for s in report["trajectory"]]
    assert kinds == [("message", "Fixing add."), ("command", "cat src/app.py"),
                     ("edit", "src/app.py")]
    assert report["trajectory"][1]["output"] == "def add(a, b): ..."


def test_a_huge_transcript_is_read_up_to_its_bound(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A hostile or runaway session: a line past LINE_CHARS is skipped in pieces, and reading
    # stops at MAX_BYTES; what came before is kept.
    monkeypatch.setattr(transcripts, "LINE_CHARS", 1000)
    monkeypatch.setattr(transcripts, "MAX_BYTES", 5000)
    path = tmp_path / "big.jsonl"
    first, *rest = CODEX
    path.write_text(json.dumps(first) + "\n" + "x" * 3000 + "\n"
                    + "".join(json.dumps(i) + "\n" for i in rest * 50))
    found, steps = transcripts.read(path, Path(WS))
    assert found == transcripts.CODEX and 0 < len(steps) < 4 * 50
    assert steps[0]["command"] == "pytest -q"
