"""Coding CLIs' own session transcripts, read into a coding run's trajectory.

A CLI coding agent edits files and runs commands natively, so its trajectory is rebuilt after
the run. Syscall capture (``coding_job.parse_strace``) sees commands but not their output or
the agent's reasoning; a *recognised harness* writes a transcript that has all of it. Two
widely used ones are read here:

* **Claude Code** — one JSON object per line in
  ``$CLAUDE_CONFIG_DIR/projects/<dir>/<session>.jsonl`` (``~/.claude`` by default): ``user`` and
  ``assistant`` entries whose ``message.content`` holds ``text``, ``thinking``, ``tool_use``
  (``Bash`` with ``input.command``; ``Edit``/``MultiEdit``/``Write``/``NotebookEdit`` with
  ``input.file_path``; any other tool) and ``tool_result`` blocks, each entry with its ``cwd``
  and ISO ``timestamp``.
* **OpenAI Codex CLI** — rollout files ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl``
  (``~/.codex`` by default): ``session_meta`` (with ``cwd``) then ``response_item`` payloads —
  ``message``, ``reasoning``, ``function_call`` / ``local_shell_call`` (``shell`` with an argv)
  and their ``*_output``, and ``custom_tool_call`` ``apply_patch`` (edits). Older rollouts hold
  the bare items, one per line; both shapes are read.

Each is turned into the steps the trace view draws: ``message`` (an agent turn, with how many
thinking blocks it had), ``command`` (with exit code and output), ``edit`` (a path, relative to
the workspace) and ``tool`` (any other tool, with its input and output). Lines that are not
JSON objects, or not of a known kind, are skipped: a transcript is evidence, not a contract,
and its format moves with each CLI release.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

CLAUDE_CODE = "claude-code"
CODEX = "codex"
FORMATS = (CLAUDE_CODE, CODEX)
#: Per step, what the trace view keeps of a command's output or a tool's result.
OUTPUT_CHARS = 10_000
TEXT_CHARS = 20_000
#: What is read of one transcript file.
MAX_BYTES = 64 << 20
LINE_CHARS = 8 << 20
EDIT_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})
_CODEX_ITEMS = frozenset({"message", "reasoning", "function_call", "function_call_output",
                          "local_shell_call", "custom_tool_call", "custom_tool_call_output"})
_EXIT = re.compile(r"^(?:Error:\s*)?Exit code (\d+)")
_PATCH_FILE = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (.+)$", re.MULTILINE)


def _epoch(stamp: Any) -> float | None:
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return float(stamp)
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _clip(text: Any, limit: int = OUTPUT_CHARS) -> str:
    value = text if isinstance(text, str) else json.dumps(text, default=str)
    return value if len(value) <= limit else value[:limit] + f"\n[... {len(value) - limit} more]"


def _relative(path: Any, root: Path | None) -> str:
    text = str(path or "")
    if root is not None and text:
        try:
            return Path(text).resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return text


def _bounded(fh: Any, limit: int) -> Iterable[str]:
    """The file's lines up to ``limit`` characters in all; a line longer than LINE_CHARS is
    cut into pieces (none of them JSON, so skipped) rather than held whole."""
    read = 0
    while read <= limit:
        line = fh.readline(LINE_CHARS)
        if not line:
            return
        read += len(line)
        yield line


def entries(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL transcript, in order (other lines skipped)."""
    out = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def detect(items: list[dict[str, Any]]) -> str | None:
    """Which harness wrote these entries, or None."""
    for item in items[:50]:
        kind = item.get("type")
        if kind in ("user", "assistant") and isinstance(item.get("message"), dict):
            return CLAUDE_CODE
        if kind in ("session_meta", "response_item", "turn_context", "event_msg") \
                or kind in _CODEX_ITEMS:
            return CODEX
    return None


def session_cwd(items: list[dict[str, Any]]) -> str | None:
    """The working directory the session says it ran in, if it says."""
    for item in items[:50]:
        if isinstance(item.get("cwd"), str):
            return str(item["cwd"])
        payload = item.get("payload")
        if item.get("type") == "session_meta" and isinstance(payload, dict) \
                and isinstance(payload.get("cwd"), str):
            return str(payload["cwd"])
    return None


# --------------------------------------------------------------------------- Claude Code


def _result_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content
                         if isinstance(b, dict) and b.get("type") == "text")
    return content if isinstance(content, str) else json.dumps(content, default=str)


def parse_claude_code(items: list[dict[str, Any]], root: Path | None = None) -> list[dict[str, Any]]:
    """Steps from a Claude Code session: turns, commands, edits and other tools, in order."""
    steps: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}  # tool_use id -> its step, for the result to fill
    for item in items:
        message, at = item.get("message"), _epoch(item.get("timestamp"))
        if item.get("type") not in ("user", "assistant") or not isinstance(message, dict):
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if item["type"] == "assistant":
            text = "\n".join(str(b.get("text", "")) for b in blocks
                             if isinstance(b, dict) and b.get("type") == "text").strip()
            thinking = sum(1 for b in blocks if isinstance(b, dict)
                           and b.get("type") in ("thinking", "redacted_thinking"))
            if text or thinking:
                steps.append({"kind": "message", "role": "assistant",
                              "text": _clip(text, TEXT_CHARS), "thinking": thinking, "at": at,
                              "source": CLAUDE_CODE})
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                step = _claude_tool(block, at, root)
                steps.append(step)
                calls[str(block.get("id"))] = step
            elif block.get("type") == "tool_result":
                called = calls.get(str(block.get("tool_use_id")))
                if called is not None:
                    _claude_result(called, block)
    return steps


def _claude_tool(block: dict[str, Any], at: float | None, root: Path | None) -> dict[str, Any]:
    name = str(block.get("name") or "tool")
    raw = block.get("input")
    args: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if name == "Bash":
        return {"kind": "command", "command": str(args.get("command", "")), "exit_code": None,
                "output": None, "at": at, "source": CLAUDE_CODE}
    if name in EDIT_TOOLS:
        path = args.get("file_path") or args.get("notebook_path")
        return {"kind": "edit", "path": _relative(path, root), "tool": name, "at": at,
                "source": CLAUDE_CODE}
    return {"kind": "tool", "tool": name, "input": args, "output": None, "error": False,
            "at": at, "source": CLAUDE_CODE}


def _claude_result(step: dict[str, Any], block: dict[str, Any]) -> None:
    text, failed = _result_text(block.get("content")), bool(block.get("is_error"))
    if step["kind"] == "command":
        # The transcript says only that a command failed; its code, when Claude Code wrote
        # it ("Exit code 2"). An unknown code stays None rather than a guessed 1.
        code = _EXIT.match(text)
        step["exit_code"] = int(code.group(1)) if code else (None if failed else 0)
        step["output"] = _clip(text)
    elif step["kind"] == "tool":
        step["output"], step["error"] = _clip(text), failed
    elif failed:
        step["error"] = _clip(text, 500)


# --------------------------------------------------------------------------- Codex CLI


def _argv_command(argv: Any) -> str:
    if isinstance(argv, str):
        return argv
    if not isinstance(argv, list):
        return ""
    words = [str(a) for a in argv]
    # Codex wraps most commands as ["bash", "-lc", "<script>"]: the script is the command.
    if len(words) == 3 and os.path.basename(words[0]) in ("bash", "sh", "zsh") \
            and words[1] in ("-c", "-lc"):
        return words[2]
    return shlex.join(words)


def _codex_output(raw: Any) -> tuple[str, int | None]:
    """A function call's output: Codex writes ``{"output", "metadata": {"exit_code"}}``
    as a JSON string (plain text in older versions)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return raw, None
    if isinstance(raw, dict):
        found = raw.get("metadata")
        meta: dict[str, Any] = found if isinstance(found, dict) else {}
        code = meta.get("exit_code")
        return _result_text(raw.get("output", "")), code if isinstance(code, int) else None
    return _result_text(raw), None


def _patch_edits(patch: str, at: float | None, root: Path | None) -> list[dict[str, Any]]:
    return [{"kind": "edit", "path": _relative(p.strip(), root) if os.path.isabs(p.strip())
             else p.strip(), "tool": "apply_patch", "at": at, "source": CODEX}
            for p in _PATCH_FILE.findall(patch)]


def parse_codex(items: list[dict[str, Any]], root: Path | None = None) -> list[dict[str, Any]]:
    """Steps from a Codex CLI rollout: turns, commands, patches and other tools, in order."""
    steps: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    thinking = 0  # reasoning items precede the message they led to
    for item in items:
        payload = item.get("payload") if item.get("type") == "response_item" else item
        if not isinstance(payload, dict) or payload.get("type") not in _CODEX_ITEMS:
            continue
        at, kind = _epoch(item.get("timestamp")), payload["type"]
        call_id = str(payload.get("call_id") or payload.get("id") or "")
        if kind == "reasoning":
            thinking += 1
        elif kind == "message" and payload.get("role") == "assistant":
            text = _result_text([{"type": "text", "text": b.get("text", "")}
                                 for b in payload.get("content") or [] if isinstance(b, dict)])
            steps.append({"kind": "message", "role": "assistant",
                          "text": _clip(text.strip(), TEXT_CHARS), "thinking": thinking,
                          "at": at, "source": CODEX})
            thinking = 0
        elif kind in ("function_call", "local_shell_call", "custom_tool_call"):
            steps += _codex_call(payload, at, root, calls, call_id)
        elif kind in ("function_call_output", "custom_tool_call_output") and call_id in calls:
            step = calls[call_id]
            text, code = _codex_output(payload.get("output"))
            if step["kind"] == "command":
                step["output"], step["exit_code"] = _clip(text), code
            else:
                step["output"] = _clip(text)
    return steps


def _codex_call(payload: dict[str, Any], at: float | None, root: Path | None,
                calls: dict[str, dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    name = str(payload.get("name") or "")
    if payload["type"] == "local_shell_call":
        raw = payload.get("action")
        action: dict[str, Any] = raw if isinstance(raw, dict) else {}
        argv: Any = action.get("command")
    elif payload["type"] == "custom_tool_call":
        text = str(payload.get("input") or "")
        if name == "apply_patch":
            return _patch_edits(text, at, root)
        step = {"kind": "tool", "tool": name or "tool", "input": text, "output": None,
                "error": False, "at": at, "source": CODEX}
        calls[call_id] = step
        return [step]
    else:
        try:
            args = json.loads(payload.get("arguments") or "{}")
        except ValueError:
            args = {"arguments": payload.get("arguments")}
        if name not in ("shell", "container.exec", "exec_command") or not isinstance(args, dict):
            step = {"kind": "tool", "tool": name or "tool", "input": args, "output": None,
                    "error": False, "at": at, "source": CODEX}
            calls[call_id] = step
            return [step]
        argv = args.get("command") or args.get("cmd")
    words = argv if isinstance(argv, list) else []
    if words and words[0] == "apply_patch" and len(words) > 1:
        return _patch_edits(str(words[1]), at, root)  # a patch sent through the shell tool
    step = {"kind": "command", "command": _argv_command(argv), "exit_code": None,
            "output": None, "at": at, "source": CODEX}
    calls[call_id] = step
    return [step]


# --------------------------------------------------------------------------- finding them


def read(path: Path, root: Path | None = None) -> tuple[str | None, list[dict[str, Any]]]:
    """``(format, steps)`` of one transcript file; ``(None, [])`` when not recognised."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        # A session can be huge (or hostile): past MAX_BYTES the rest is not read, and the
        # steps end there (the trajectory is capped at 2,000 steps anyway).
        items = entries(_bounded(fh, MAX_BYTES))
    found = detect(items)
    if found == CLAUDE_CODE:
        return found, parse_claude_code(items, root)
    if found == CODEX:
        return found, parse_codex(items, root)
    return None, []


def _inside(cwd: str | None, root: Path) -> bool:
    if not cwd:
        return False
    try:
        Path(cwd).resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def discover(root: Path, since: float, env: dict[str, str] | None = None,
             explicit: Path | None = None) -> list[Path]:
    """Transcripts of sessions that ran in ``root`` since ``since`` (epoch seconds).

    Every ``*.jsonl`` in ``explicit`` (the directory an agent or its wrapper may copy a
    session into, ``TITAN_EVAL_TRANSCRIPTS``), then the harnesses' own session stores —
    Claude Code's and Codex's, under ``CLAUDE_CONFIG_DIR`` / ``CODEX_HOME`` or their homes —
    keeping the files written since the run started whose session ran inside ``root`` (each
    run has a workspace of its own, so another session never matches).
    """
    env = dict(os.environ if env is None else env)
    home = Path(env.get("HOME") or Path.home())
    found = sorted(explicit.glob("*.jsonl")) if explicit is not None and explicit.is_dir() else []
    stores = [(Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude") / "projects", "*/*.jsonl"),
              (Path(env.get("CODEX_HOME") or home / ".codex") / "sessions", "**/*.jsonl")]
    for base, pattern in stores:
        if not base.is_dir():
            continue
        for path in sorted(base.glob(pattern)):
            try:
                fresh = path.stat().st_mtime >= since
            except OSError:
                continue
            if fresh and path not in found:
                with path.open(encoding="utf-8", errors="replace") as fh:
                    head = entries(line for _, line in zip(range(50), fh, strict=False))
                if _inside(session_cwd(head), root):
                    found.append(path)
    return found
