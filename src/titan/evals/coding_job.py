"""The job that runs one coding task: seed, run the agent, grade, report to the master.

The master submits this script as the run's only job, with ``TITAN_EVAL_RUN`` (the run id),
``TITAN_EVAL_TASK`` (the task as JSON), ``TITAN_EVAL_AGENT`` (``{"script_sha256", "filename",
"args", "timeout_s"}``) and the tool proxy's ``TITAN_TOOL_PROXY`` in its environment, with its
job token. The agent it runs gets neither that token nor any other credential but its own, to
its run's tool proxy (:mod:`titan.evals.agent_env`). A CLI agent runs commands natively, so
its trajectory is rebuilt afterwards: from the transcript :func:`titan.evals.coding.sh` writes (with outputs) and a recognised coding
CLI's own session transcript (:mod:`titan.evals.transcripts`: turns, outputs, edits), else
from ``strace``'s execve capture (commands only). Grading problems never fail the run: they are posted
as ``eval_error`` (the workspace-eval banner). The job exits with the agent's exit code.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from titan.evals import agent_env, coding, transcripts

DEFAULT_AGENT_TIMEOUT_S = 1800.0
AGENT_TAIL_LINES = 200
MAX_COMMANDS = 2000
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash"})
STRACE_FLAGS = ["-f", "-q", "-ttt", "-s", "65535", "-e", "signal=none",
                "-e", "trace=execve,clone,clone3,fork,vfork"]

# "PID [EPOCH.USEC] rest" — both prefixes optional so hand-written samples parse too.
_LINE = re.compile(r"^(?:(\d+)\s+)?(?:(\d+\.\d+)\s+)?(.*)$")
_RESUMED = re.compile(r"^<\.\.\. \w+ resumed>(.*)$")
_EXECVE = re.compile(r'^execve\("(?:[^"\\]|\\.)*", \[(.*)\], .*\)\s+=\s+0\s*$')
_FORK = re.compile(r"^(?:clone3?|v?fork)\(.*\)\s+=\s+(\d+)\s*$")
_EXITED = re.compile(r"^\+\+\+ exited with (\d+) \+\+\+$")
_KILLED = re.compile(r"^\+\+\+ killed by (SIG\w+)")
_CSTRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


# --------------------------------------------------------------------------- strace


def strace_usable(workdir: Path) -> bool:
    """Whether strace exists and may trace here (ptrace is often forbidden in containers)."""
    if not shutil.which("strace"):
        return False
    probe = workdir / ".strace-probe"
    try:
        done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(probe),
                               "true"], capture_output=True, timeout=20)
        return done.returncode == 0 and "execve(" in probe.read_text(errors="replace")
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        probe.unlink(missing_ok=True)


def _unescape(text: str) -> str:
    """Decode strace's C-style string (octal escapes for non-ASCII bytes) to text."""
    raw = codecs.escape_decode(text.encode("utf-8"))[0]
    return raw.decode("utf-8", "replace")


def _shell_command(argv: list[str]) -> str | None:
    """The script of ``sh -c SCRIPT`` / ``bash -lc SCRIPT``, else None."""
    if len(argv) >= 3 and os.path.basename(argv[0]) in SHELLS:
        flag = argv[1]
        if flag.startswith("-") and not flag.startswith("--") and "c" in flag:
            return argv[2]
    return None


def parse_strace(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Commands from ``strace -f -ttt -e trace=execve,clone,...`` output, in order.

    The first process is the agent itself: its own execs are skipped. A shell's ``-c``
    script is the command (what the agent asked for); whatever that shell runs inside it is
    folded into it, or ``a | b`` would show as three steps. Exit codes come from the
    ``+++ exited with N +++`` lines; outputs are unknown (None).
    """
    pending: dict[str, tuple[str | None, str]] = {}
    parent: dict[str, str] = {}
    exits: dict[str, int] = {}
    execs: list[tuple[str, float | None, list[str]]] = []
    root: str | None = None
    for raw in lines:
        m = _LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, stamp, rest = m.group(1) or "0", m.group(2), m.group(3)
        root = root or pid
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (stamp, rest[: -len("<unfinished ...>")].rstrip())
            continue
        resumed = _RESUMED.match(rest)
        if resumed and pid in pending:
            stamp, head = pending.pop(pid)
            rest = head + resumed.group(1)
        if (e := _EXECVE.match(rest)) is not None:
            argv = [_unescape(s) for s in _CSTRING.findall(e.group(1))]
            execs.append((pid, float(stamp) if stamp else None, argv))
        elif (f := _FORK.match(rest)) is not None:
            parent[f.group(1)] = pid
        elif (x := _EXITED.match(rest)) is not None:
            exits[pid] = int(x.group(1))
        elif (k := _KILLED.match(rest)) is not None:
            sig = getattr(signal.Signals, k.group(1), None)
            exits[pid] = -int(sig) if sig is not None else -1
    commands: list[dict[str, Any]] = []
    shell_pids: set[str] = set()
    for pid, at, argv in execs:
        if pid == root or not argv:
            continue
        chain, p = [pid], pid
        while p in parent and len(chain) < 10_000:
            p = parent[p]
            chain.append(p)
        if shell_pids.intersection(chain):
            continue  # part of a shell command already recorded
        script = _shell_command(argv)
        if script is not None:
            shell_pids.add(pid)
        commands.append({"command": script if script is not None else shlex.join(argv),
                         "exit_code": exits.get(pid), "output": None, "at": at,
                         "source": "syscall"})
    return commands


def merge_commands(transcript: list[dict[str, Any]],
                   captured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Transcript entries (with output) win; captured commands they explain are dropped.
    Transcript steps other than commands (a harness's turns and edits) are kept as they are."""
    unmatched: dict[str, int] = {}
    for entry in transcript:
        if entry.get("kind", "command") == "command":
            unmatched[entry["command"]] = unmatched.get(entry["command"], 0) + 1
    merged = list(transcript)
    for entry in captured:
        if unmatched.get(entry["command"], 0) > 0:
            unmatched[entry["command"]] -= 1
        else:
            merged.append(entry)
    merged.sort(key=lambda c: (c.get("at") is None, c.get("at") or 0.0))
    return merged[:MAX_COMMANDS]


# --------------------------------------------------------------------------- agent


def run_agent(argv: list[str], cwd: Path, env: dict[str, str],
              timeout: float) -> tuple[int, str, bool]:
    """Run the agent, echoing its output to this job's log; ``(exit code, tail, timed out)``."""
    tail: deque[str] = deque(maxlen=AGENT_TAIL_LINES)
    adopted = agent_env.adopt_leftovers()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            tail.append(line)
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Timed out or not, nothing the agent started may outlive it: a process it left could
    # change the workspace while the scorers read it (its group, and what escaped the group).
    left = agent_env.end_leftovers(proc.pid, adopted)
    if left:
        print(f"[eval] the agent left {left} process(es) running: killed before grading",
              flush=True)
    # A daemonised grandchild may keep the pipe open: do not wait on it forever.
    reader.join(timeout=5)
    code = 124 if timed_out else proc.returncode
    if code < 0:
        code = 128 - code  # killed by a signal, as a shell reports it
    return code, "".join(tail), timed_out


# --------------------------------------------------------------------------- the job


def harness_steps(root: Path, since: float, harness: Path) -> tuple[list[dict[str, Any]], str]:
    """The steps of every recognised CLI transcript of this run, and where they came from
    (``"claude-code"``, ``"codex"``, both joined by ``+``, or ``""`` when none was found)."""
    steps: list[dict[str, Any]] = []
    formats: list[str] = []
    for path in transcripts.discover(root, since, explicit=harness):
        found, parsed = transcripts.read(path, root)
        if found is not None:
            steps += parsed
            formats += [found] if found not in formats else []
    return steps, "+".join(formats)


def _run_turn(argv: list[str], task: dict[str, Any], root: Path, work: Path, timeout: float,
              traced: bool, turn: tuple[int, int] | None, token: str | None
              ) -> dict[str, Any]:
    """Run the agent once in ``root`` (``work`` holds this turn's transcripts) and rebuild
    what it did: its exit, output tail and trajectory, and what went wrong reading them."""
    transcript, trace, harness = work / "commands.jsonl", work / "strace.txt", work / "transcripts"
    harness.mkdir(parents=True, exist_ok=True)
    if traced:
        argv = ["strace", *STRACE_FLAGS, "-o", str(trace), *argv]
    # A second early: a harness's transcript file may be created in the same second.
    started = time.time() - 1
    env = agent_env.agent_environ(task, root, transcript, harness, turn, token)
    code, tail, timed_out = run_agent(argv, root, env, timeout)
    print(f"[eval] agent {'timed out' if timed_out else 'exited'} with status {code}"
          + (f" (turn {turn[0]}/{turn[1]})" if turn else ""), flush=True)
    out: dict[str, Any] = {"agent_exit_code": code, "agent_output_tail": tail,
                           "timed_out": timed_out, "steps": [], "source": None, "error": None}
    try:
        # A recognised CLI's transcript has the turns, outputs and edits; syscall capture,
        # only for an agent that left none, has commands alone.
        steps, source = harness_steps(root, started, harness)
        own = coding.load_transcript(transcript)
        captured: list[dict[str, Any]] = []
        if not steps and traced and trace.exists():
            with trace.open(encoding="utf-8", errors="replace") as fh:
                captured = parse_strace(fh)
        out["steps"] = merge_commands(own + steps, captured)
        # What the steps came from, as the page says it: a CLI's transcript, Titan's own
        # (sh()), and syscall capture only where it added commands the others did not have.
        sources = [source] if source else []
        sources += ["transcript"] if own else []
        sources += ["syscall"] if any(s.get("source") == "syscall" for s in out["steps"]) \
            else []
        out["source"] = "+".join(sources) or None
    except Exception as exc:  # noqa: BLE001 - reported as eval_error; the run still counts
        out["error"] = f"reading the agent's commands failed: {exc}"
    return out


def _diff(root: Path, baseline: coding.Baseline, errors: list[str]) -> tuple[list[str], str]:
    try:
        return coding.changed_paths(root, baseline), coding.final_diff(root, baseline)
    except Exception as exc:  # noqa: BLE001
        errors.append(f"diffing the workspace failed: {exc}")
        return [], ""


def _score(root: Path, scorers: list[dict[str, Any]], changed: list[str],
           errors: list[str]) -> tuple[list[dict[str, Any]], str]:
    # llm_judge criteria are scored on the master once the run settles, with the judge.
    scorers = [s for s in scorers if s.get("type") != "llm_judge"]
    try:
        graded = coding.run_scorers(root, scorers, changed)
    except Exception as exc:  # noqa: BLE001
        errors.append(f"running the scorers failed: {exc}")
        return [], "N/A"
    if graded["error"]:
        errors.append(graded["error"])
    return graded["scorers"], graded["overall"]


def grade(task: dict[str, Any], agent: dict[str, Any], base: Path,
          fetch: Callable[[str], bytes], token: str | None = None
          ) -> tuple[dict[str, Any], int]:
    """Seed, run and grade in ``base``; ``(report to post, agent exit code)``.

    ``fetch(sha256) -> bytes`` downloads the agent script (the master's blob store);
    ``token`` is the agent's own (:mod:`titan.evals.agent_env`), its only credential. A task
    with ``turns`` is a session: the agent runs once per turn in the same workspace (told
    the turn in ``TITAN_EVAL_TURN`` / ``TITAN_EVAL_TURNS`` and its instruction in the task),
    each turn gets its own trajectory, diff and scorers, and the report's diff, scorers and
    overall verdict are the session's: the cumulative change against the seeded baseline,
    graded by the task's scorers. A turn whose agent fails or times out ends the session.
    """
    root, errors = base / "workspace", []
    spec = task.get("workspace") or {}
    seeded = False
    try:
        baseline = coding.seed_workspace(spec, root)
        seeded = True
    except Exception as exc:  # noqa: BLE001 - reported as eval_error; the agent still runs
        errors.append(f"seeding the workspace failed: {exc}")
        # The diff is still taken against what seeding left, so it shows only the agent's.
        baseline = coding.snapshot(root)
    script = base / "agent" / os.path.basename(agent.get("filename") or "agent.py")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_bytes(fetch(agent["script_sha256"]))
    argv = [sys.executable, str(script), *[str(a) for a in agent.get("args") or []]]
    traced = strace_usable(base)
    timeout = float(agent.get("timeout_s") or DEFAULT_AGENT_TIMEOUT_S)
    turns = task.get("turns") or []
    print(f"[eval] running {script.name} in {root} (timeout {timeout:g} s"
          + (f" per turn, {len(turns)} turns" if turns else "")
          + f", command capture: {'transcript + strace' if traced else 'transcript only'}"
          # 0: the agent cannot read this job's environment or memory (titan/evals/agent_env.py)
          + f", this job's PR_GET_DUMPABLE: {agent_env.dumpable()})", flush=True)
    report: dict[str, Any] = {"diff": "", "changed_paths": [], "scorers": [], "overall": "N/A",
                              "trajectory": [], "trajectory_source": None,
                              "agent_exit_code": None, "agent_output_tail": "",
                              "eval_error": None}
    done: list[dict[str, Any]] = []
    for n, turn in enumerate(turns or [None], start=1):
        seen = task if turn is None else {**task, "user_instruction": turn["user_instruction"]}
        before = baseline if turn is None else coding.snapshot(root, f"turn{n}")
        ran = _run_turn(argv, seen, root, base if turn is None else base / f"turn-{n}",
                        timeout, traced, None if turn is None else (n, len(turns)), token)
        if ran["error"]:
            errors.append(ran["error"] if turn is None else f"turn {n}: {ran['error']}")
        report.update(agent_exit_code=ran["agent_exit_code"],
                      agent_output_tail=ran["agent_output_tail"])
        changed, diff = _diff(root, before, errors)
        record = {"turn": n, "user_instruction": seen.get("user_instruction"),
                  "agent_exit_code": ran["agent_exit_code"], "timed_out": ran["timed_out"],
                  "trajectory_source": ran["source"], "changed_paths": changed, "diff": diff,
                  "trajectory": coding.reconstruct_trajectory(ran["steps"], changed)}
        if turn is not None and turn.get("scorers") and seeded:
            record["scorers"], record["overall"] = _score(root, turn["scorers"], changed, errors)
        done.append(record)
        if ran["agent_exit_code"] != 0:
            break  # a failed turn ends the session: the next one would build on a failure
    if turns:
        # Fewer turns done than planned: the agent failed the last one (its exit code says).
        report["turns"], report["turns_planned"] = done, len(turns)
        report["trajectory"] = [{**s, "turn": t["turn"]} for t in done for s in t["trajectory"]]
        sources = [part for t in done for part in (t["trajectory_source"] or "").split("+")
                   if part]
        report["trajectory_source"] = "+".join(dict.fromkeys(sources)) or None
    else:
        report["trajectory"] = done[0]["trajectory"]
        report["trajectory_source"] = done[0]["trajectory_source"]
    report["changed_paths"], report["diff"] = _diff(root, baseline, errors)
    if seeded:  # scorers on a half-seeded workspace would blame the agent for setup
        report["scorers"], report["overall"] = _score(root, task.get("scorers") or [],
                                                      report["changed_paths"], errors)
    report["eval_error"] = "; ".join(errors)[:4000] or None
    return report, int(report["agent_exit_code"] or 0)


def main() -> int:
    from titan.client import TitanClient
    from titan.url_paths import quote_ref

    # Not dumpable before the token is read: from here on no process of this user (the agent
    # under test is one) reads this one's environment or memory (titan/evals/agent_env.py).
    why_not = agent_env.undumpable()
    client = TitanClient()
    agent_env.forget_credentials()  # the client holds it; nothing this job starts inherits it
    if why_not:
        print(f"[eval] warning: the agent under test may read this job's token from its "
              f"process ({why_not})", flush=True)
    run_id = os.environ["TITAN_EVAL_RUN"]
    task = json.loads(os.environ["TITAN_EVAL_TASK"])
    agent = json.loads(os.environ["TITAN_EVAL_AGENT"])
    base = Path.cwd() / "eval" / re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    base.mkdir(parents=True, exist_ok=True)

    def fetch(sha: str) -> bytes:
        return client._transport.send("GET", f"/blobs/{sha}").content

    started = time.time()
    try:
        token = client.api("POST", f"/runs/{quote_ref(run_id)}/eval/agent-token")["token"]
        report, code = grade(task, agent, base, fetch, token)
    except Exception as exc:  # noqa: BLE001 - e.g. the agent script could not be fetched
        report = {"diff": "", "changed_paths": [], "scorers": [], "overall": "N/A",
                  "trajectory": [], "agent_exit_code": None, "agent_output_tail": "",
                  "eval_error": f"the coding job failed before grading: {exc}"}
        code = 1
    client.api("POST", f"/runs/{quote_ref(run_id)}/eval/coding", json=report)
    print(f"[eval] {run_id}: overall {report['overall']}, {len(report['changed_paths'])} "
          f"changed path(s), {time.time() - started:.1f} s"
          + (f"; eval error: {report['eval_error']}" if report["eval_error"] else ""),
          flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
