"""Coding tasks: seed a workspace, diff the agent's net change, grade it, rebuild its trajectory.

Pure functions over a directory: nothing here talks to the master (``coding_job.py`` does), so
the grading model is testable on its own. The baseline is snapshotted *after* the task's setup
commands ran, so setup artifacts (installed packages, generated files) never show in the diff:
the Final diff panel shows only what the agent changed.

:func:`sh` is the agent-side half: agents run shell commands through it, and each one is
appended to the file named by ``TITAN_EVAL_COMMANDS`` (Titan's own harness transcript, with
outputs), which the job prefers over syscall capture (commands only); coding CLIs' own
transcripts are read by :mod:`titan.evals.transcripts`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from titan.errors import ValidationFailed

SETUP_TIMEOUT_S = 300.0
SCORER_TIMEOUT_S = 600.0
DETAIL_LINES = 40
#: Larger files are compared by hash only: a multi-megabyte text diff helps nobody.
MAX_DIFF_BYTES = 1 << 20
OUTPUT_TAIL_CHARS = 10_000
#: Caches and environments that no one wants to review; never part of a diff.
IGNORED_DIRS = frozenset({".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                          "node_modules", ".venv"})
IGNORED_SUFFIXES = (".pyc",)
#: Tokens stay out of the task author's setup and scorer commands: they need none.
_SECRET_ENV = ("TITAN_TOKEN", "TITAN_TOOL_TOKEN")
NOT_CAPTURED = "Output not captured"


@dataclass(frozen=True)
class Baseline:
    """The workspace as seeded: ``files`` maps relpath → sha256; copies live in ``store``."""

    root: Path
    store: Path
    files: dict[str, str]


# --------------------------------------------------------------------------- shell


def _shell_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}


def run_shell(command: str, cwd: Path | str | None, timeout: float,
              env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run ``command`` in a shell; ``(exit code or None on timeout, stdout+stderr)``.

    Its own session, so a timeout kills the whole process group: ``subprocess.run``'s timeout
    kills only the shell and then waits forever on a pipe its grandchildren still hold open.
    """
    proc = subprocess.Popen(command, shell=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        code = None
    return code, out.decode("utf-8", "replace")


def _tail_lines(text: str, n: int = DETAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-n:])


def sh(command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a shell command in the eval workspace and record it in the run's transcript.

    For agents under evaluation: returns the CompletedProcess (stdout = stdout+stderr);
    a timeout gives exit code 124 rather than an exception, as ``timeout(1)`` does.
    """
    at = time.time()
    code, output = run_shell(command, os.environ.get("TITAN_EVAL_WORKSPACE") or None, timeout)
    if code is None:
        code, output = 124, output + f"\n[timed out after {timeout:g} s]"
    transcript = os.environ.get("TITAN_EVAL_COMMANDS")
    if transcript:
        entry = {"command": command, "exit_code": code, "output": output[-OUTPUT_TAIL_CHARS:],
                 "at": at, "source": "transcript"}
        # One write of one line in append mode: concurrent sh() calls do not interleave.
        with open(transcript, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
    return subprocess.CompletedProcess(command, code, stdout=output, stderr="")


def load_transcript(path: Path) -> list[dict[str, Any]]:
    """The commands :func:`sh` recorded (lines that are not JSON objects are skipped)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("command"), str):
            entries.append(entry)
    return entries


# --------------------------------------------------------------------------- seeding


def _safe_relpath(rel: Any) -> str:
    if not isinstance(rel, str) or not rel.strip():
        raise ValidationFailed(f"workspace file path {rel!r} must be a non-empty string")
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(rel).drive or ".." in posix.parts:
        raise ValidationFailed(f"workspace file path {rel!r} must stay inside the workspace "
                               "(no absolute paths, no '..')", details={"path": rel})
    clean = str(posix)
    if clean in ("", "."):
        raise ValidationFailed(f"workspace file path {rel!r} names no file")
    return clean


def write_files(spec: dict[str, Any], root: Path) -> None:
    """Write the workspace's files under ``root`` (every path checked before any is written)."""
    files = spec.get("files") or {}
    checked = {_safe_relpath(rel): text for rel, text in files.items()}
    for rel, text in checked.items():
        if not isinstance(text, str):
            raise ValidationFailed(f"workspace file {rel!r} must be text")
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(text.encode("utf-8"))


def run_setup(spec: dict[str, Any], root: Path, timeout: float = SETUP_TIMEOUT_S) -> None:
    """Run the setup commands in order, in ``root``; the first failure stops seeding."""
    for command in spec.get("setup") or []:
        code, output = run_shell(command, root, timeout, _shell_env())
        if code != 0:
            why = f"timed out after {timeout:g} s" if code is None else f"exited {code}"
            raise ValidationFailed(f"workspace setup command {command!r} {why}",
                                   details={"command": command, "exit_code": code,
                                            "output": _tail_lines(output)})


def _tree(root: Path) -> dict[str, Path]:
    """relpath → path of every file (and symlink, not followed) that a diff may show."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
        # os.walk does not descend into symlinked directories; they are entries themselves.
        names = filenames + [d for d in dirnames if (here / d).is_symlink()]
        for name in names:
            if not name.endswith(IGNORED_SUFFIXES):
                path = here / name
                found[path.relative_to(root).as_posix()] = path
    return found


def _content(path: Path) -> bytes:
    if path.is_symlink():
        return b"symlink -> " + os.fsencode(os.readlink(path))
    return path.read_bytes()


def snapshot(root: Path, label: str = "") -> Baseline:
    """Record the tree as the baseline; copies go to a hidden sibling of ``root`` (one per
    ``label``: a session keeps the seeded baseline and the one before each turn)."""
    store = root.parent / f".{root.name}.titan-baseline{'-' + label if label else ''}"
    shutil.rmtree(store, ignore_errors=True)
    files: dict[str, str] = {}
    for rel, path in _tree(root).items():
        data = _content(path)
        files[rel] = hashlib.sha256(data).hexdigest()
        if len(data) <= MAX_DIFF_BYTES:
            (store / rel).parent.mkdir(parents=True, exist_ok=True)
            (store / rel).write_bytes(data)
    return Baseline(root=root, store=store, files=files)


def seed_workspace(spec: dict[str, Any], root: Path) -> Baseline:
    """Write the files, run setup, and snapshot the baseline after setup."""
    root.mkdir(parents=True, exist_ok=True)
    write_files(spec, root)
    run_setup(spec, root)
    return snapshot(root)


# --------------------------------------------------------------------------- diff


def _current(root: Path) -> dict[str, tuple[str, Path]]:
    return {rel: (hashlib.sha256(_content(p)).hexdigest(), p) for rel, p in _tree(root).items()}


def changed_paths(root: Path, baseline: Baseline) -> list[str]:
    """Paths added, removed or modified since the baseline, sorted."""
    now = {rel: sha for rel, (sha, _) in _current(root).items()}
    return sorted(p for p in set(now) | set(baseline.files) if now.get(p) != baseline.files.get(p))


def _lines(data: bytes | None) -> list[str] | None:
    """The lines of a diffable file; None when binary, too large or not kept."""
    if data is None or len(data) > MAX_DIFF_BYTES or b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _file_diff(rel: str, old: bytes | None, new: bytes | None, added: bool,
               removed: bool) -> str:
    head = f"diff --git a/{rel} b/{rel}\n"
    if added:
        head += "new file mode 100644\n"
    if removed:
        head += "deleted file mode 100644\n"
    old_lines = [] if added else _lines(old)
    new_lines = [] if removed else _lines(new)
    if old_lines is None or new_lines is None:
        return head + f"Binary file {rel} differs\n"
    out = [head]
    for line in difflib.unified_diff(old_lines, new_lines,
                                     "/dev/null" if added else "a/" + rel,
                                     "/dev/null" if removed else "b/" + rel):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def final_diff(root: Path, baseline: Baseline) -> str:
    """One unified diff (git-style headers) of every change since the baseline."""
    now = _current(root)
    parts = []
    for rel in changed_paths(root, baseline):
        added, removed = rel not in baseline.files, rel not in now
        # No copy of a known file means it was too large to keep: reported as binary.
        copy = baseline.store / rel
        old = copy.read_bytes() if not added and copy.exists() else None
        new = None if removed else _content(now[rel][1])
        parts.append(_file_diff(rel, old, new, added, removed))
    return "".join(parts)


# --------------------------------------------------------------------------- scorers


def _matches(path: str, pattern: str) -> bool:
    """fnmatch where "src/**", "src/" and "**/x.py" mean what people expect."""
    pattern = pattern.strip().removeprefix("./")
    if pattern.endswith("/"):
        pattern += "**"
    if fnmatchcase(path, pattern):
        return True
    return pattern.startswith("**/") and _matches(path, pattern[3:])


def _command_scorer(root: Path, scorer: dict[str, Any]) -> dict[str, Any]:
    timeout = float(scorer.get("timeout_s") or SCORER_TIMEOUT_S)
    code, output = run_shell(scorer["command"], root, timeout, _shell_env())
    if code is None:
        return {"verdict": "FAIL", "summary": f"timed out after {timeout:g} s",
                "detail": _tail_lines(output)}
    last = _tail_lines(output, 1).strip()
    summary = f"exit {code}" + (f": {last[:200]}" if code and last else "")
    return {"verdict": "PASS" if code == 0 else "FAIL", "summary": summary,
            "detail": _tail_lines(output)}


def _paths_scorer(scorer: dict[str, Any], changed: list[str]) -> dict[str, Any]:
    globs = [str(g) for g in scorer.get("paths") or []]
    if not changed:
        return {"verdict": "N/A", "summary": "no files changed", "detail": ""}
    hit = [p for p in changed if any(_matches(p, g) for g in globs)]
    if scorer["type"] == "allowed_paths":
        bad = [p for p in changed if p not in hit]
        what = "outside the allowed paths"
    else:
        bad, what = hit, "in forbidden paths"
    if bad:
        return {"verdict": "FAIL", "summary": f"{len(bad)} changed path(s) {what}",
                "detail": "\n".join(bad)}
    return {"verdict": "PASS", "summary": f"{len(changed)} changed path(s), none {what}",
            "detail": ""}


def run_scorers(root: Path, scorers: list[dict[str, Any]], changed: list[str]) -> dict[str, Any]:
    """Grade the workspace: one row per scorer, plus an overall verdict.

    A scorer that cannot run at all gets verdict N/A and sets ``error`` (the eval-phase
    banner); then overall cannot be PASS, since a verdict is missing.
    """
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for scorer in scorers:
        kind = scorer.get("type")
        name = scorer.get("name") or (scorer.get("command") if kind == "command"
                                      else str(kind).replace("_", "-"))
        try:
            if kind == "command":
                row = _command_scorer(root, scorer)
            elif kind in ("allowed_paths", "forbid_paths"):
                row = _paths_scorer(scorer, changed)
            else:
                raise ValueError(f"unknown scorer type {kind!r}")
        except Exception as exc:  # noqa: BLE001 - one broken scorer must not lose the others
            errors.append(f"scorer {name!r} could not run: {exc}")
            row = {"verdict": "N/A", "summary": f"could not run: {exc}"[:300], "detail": ""}
        rows.append({"name": str(name)[:120], "type": kind, **row})
    verdicts = {r["verdict"] for r in rows}
    overall = ("FAIL" if "FAIL" in verdicts else "N/A" if errors
               else "PASS" if "PASS" in verdicts else "N/A")
    return {"scorers": rows, "overall": overall, "error": "; ".join(errors) or None}


# --------------------------------------------------------------------------- trajectory


def reconstruct_trajectory(steps: list[dict[str, Any]],
                           diff_paths: list[str]) -> list[dict[str, Any]]:
    """Trajectory steps after the run, by time, then one edit per changed path no step names.

    ``steps`` are commands (from :func:`sh`'s transcript or syscall capture) and, when a
    recognised harness left its own transcript (:mod:`titan.evals.transcripts`), its agent
    turns, edits and other tool calls too. Edits known only from the diff carry no time (the
    diff says what changed, not when), so they come last. A command whose output is unknown
    (syscall capture) has ``output`` None; pages show NOT_CAPTURED.
    """
    out: list[dict[str, Any]] = []
    for s in sorted(steps, key=lambda c: (c.get("at") is None, c.get("at") or 0.0)):
        if s.get("kind", "command") == "command":
            out.append({"kind": "command", "command": s["command"],
                        "exit_code": s.get("exit_code"), "output": s.get("output"),
                        "at": s.get("at"), "source": s.get("source", "transcript")})
        else:
            out.append(dict(s))
    edited = {s.get("path") for s in out if s["kind"] == "edit"}
    out.extend({"kind": "edit", "path": p} for p in diff_paths if p not in edited)
    return out
