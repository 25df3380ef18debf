"""The research agent's orchestrator: the agentic loop around ``submit_dag``.

    python research_agent.py "How does LoRA work for LLM fine-tuning?" --max-iter 2

Submits a PLAN stage (the LLM breaks the query into subtopics), then per iteration an ITER
stage with one researcher job per subtopic, running in parallel, and an EVAL stage whose LLM
decision — SYNTHESIZE or DEEPEN with the gaps to research next — drives the loop; then a
SYNTH stage writes the report, which is downloaded to the path printed at the end. Every
stage is its own DAG, grouped under one agent run id; stages hand data over through
TitanStore and artifacts. Needs a running Titan (``titan up``, or ``make demo``).

Written to replay: every setting comes in on the command line (recorded with the run, given
again to its replay), never from the environment, and the run id is drawn with
``titan.trace.uuid()``. ``titan determinism RUN`` finds nothing to fix in it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import titan
from titan.errors import ConnectionFailed, TitanError, WaitTimeout
from titan_sdk import TitanClient, TitanJob

HERE = Path(__file__).resolve().parent
DEFAULT_QUERY = "What are the tradeoffs of vector databases for production RAG systems?"
#: The agent every run of this orchestrator belongs to, whatever its run id (``--run-id``).
AGENT_ID = "RESEARCH"


class StageFailed(Exception):
    """A stage ended without completing; the message says which job and why."""


def say(message: str) -> None:
    print(f"[AGENT] {message}", flush=True)


def job(job_id: str, script: str, args: list[str], timeout: float) -> TitanJob:
    return TitanJob(job_id=job_id, filename=str(HERE / script), args=args, retries=1,
                    timeout=timeout)


def _failure_report(client: TitanClient, dag: dict[str, Any]) -> str:
    lines = [f"stage {dag['name']} ended {dag['status']}"]
    for j in dag.get("jobs") or client.get_dag(dag["ref"]).get("jobs") or []:
        if j.get("state") in ("COMPLETED", "SKIPPED"):
            continue
        why = j.get("error") or (f"exit code {j['exit_code']}" if j.get("exit_code") else "")
        lines.append(f"  job {j['job_id']}: {j['state']}" + (f" ({why})" if why else ""))
        try:
            tail = client.fetch_logs(j["ref"]).strip().splitlines()[-8:]
        except TitanError:
            tail = []
        lines += [f"    | {line}" for line in tail]
        lines.append(f"    full log: titan logs '{j['ref']}'")
    return "\n".join(lines)


def run_stage(client: TitanClient, name: str, jobs: list[TitanJob], run_id: str,
              signals: list[tuple[str, str]], timeout: float, *,
              partial_ok: bool = False) -> None:
    """Submit one stage and return once every job has signalled through TitanStore.

    Each signal is awaited with ``store_wait`` in its own thread, so "done" lines appear in
    the order the jobs actually finish; the stage's DAG is awaited alongside, so a job that
    fails (and will never signal) ends the wait at once instead of at the timeout.

    ``partial_ok``: a stage whose jobs are alternatives (the researchers of an iteration)
    goes on without those that failed or were cancelled one by one (after their retry), as
    long as one finished — "only that stage fails: the orchestrator can retry or reroute"
    (seed 000). A stage cancelled whole, or with nothing finished, stops the agent."""
    dag = client.submit_dag(name, jobs, agent_run_id=run_id, agent_id=AGENT_ID)
    printed = threading.Lock()
    seen: set[str] = set()

    def watch(key: str, label: str) -> None:
        try:
            client.store_wait(key, timeout=timeout)
        except TitanError:
            return
        with printed:
            seen.add(key)
            say(f"{label} — done")

    threads = [threading.Thread(target=watch, args=s, daemon=True) for s in signals]
    for t in threads:
        t.start()
    try:
        final = client.wait_dag(dag["ref"], timeout=timeout)
    except WaitTimeout:
        client.cancel(dag["ref"])
        raise StageFailed(f"stage {name} did not finish within {timeout:.0f}s; cancelled "
                          "it") from None
    except KeyboardInterrupt:
        client.cancel(dag["ref"])
        raise
    settled = final.get("jobs") or client.get_dag(final["ref"]).get("jobs") or []
    finished = {j["job_id"] for j in settled if j.get("state") == "COMPLETED"}
    if final["status"] != "COMPLETED":
        cancelled_whole = any(j.get("reason") == "DAG cancelled" for j in settled)
        if not (partial_ok and finished and not cancelled_whole):
            raise StageFailed(_failure_report(client, final))
        say(f"stage {name}: {len(finished)} of {len(jobs)} job(s) finished; going on "
            "without the others:")
        print(_failure_report(client, final), flush=True)
    expected = [(key, label) for key, label in signals if label in finished or not partial_ok]
    for t in threads:
        t.join(timeout=10 if final["status"] == "COMPLETED" else 1)
    missing = [key for key, _ in expected if key not in seen and client.store_get(key) is None]
    if missing:
        raise StageFailed(f"stage {name} completed but never signalled {missing}")


def research(client: TitanClient, query: str, *, max_iter: int, max_subtopics: int,
             max_tokens: int | None, model: str | None, out: Path | None,
             timeout: float, run_id: str | None = None) -> Path:
    # Outside any run nothing records it, and a replay draws a fresh id as it should: its
    # stages then join the replay's run, under their own fresh keys.
    run_id = run_id or f"{AGENT_ID}_{titan.trace.uuid()[:6]}"
    key = f"research:{run_id}"
    common = (["--model", model] if model else []) + (
        ["--max-tokens", str(max_tokens)] if max_tokens else [])
    client.store_put(f"{key}:query", query)
    say(f"Agent run {run_id}: {query}")

    say("Stage 1 — Planner: breaking query into subtopics...")
    run_stage(client, f"{run_id}_PLAN",
              [job("planner", "research_planner.py",
                   ["--run-id", run_id, "--max-subtopics", str(max_subtopics), *common],
                   timeout)],
              run_id, [(f"{key}:planner:done", "planner")], timeout)
    plan = json.loads(client.store_get(f"{key}:plan") or "{}")
    subtopics: list[str] = plan["subtopics"]
    say(f"Planner decided {len(subtopics)} subtopics:")
    for i, topic in enumerate(subtopics):
        print(f"  [{i}] {topic}", flush=True)

    iteration = 0
    while iteration < max_iter:
        iteration += 1
        say(f"Iteration {iteration}/{max_iter} — {len(subtopics)} subtopic(s)")
        client.store_put(f"{key}:subtopics:{iteration}", json.dumps(subtopics))
        researchers = [
            job(f"researcher-{iteration}-{i}", "research_worker.py",
                ["--run-id", run_id, "--iter", str(iteration), "--index", str(i), *common],
                timeout)
            for i in range(len(subtopics))
        ]
        say(f"Submitted {len(researchers)} researcher(s) in parallel...")
        run_stage(client, f"{run_id}_ITER{iteration}", researchers, run_id,
                  [(f"{key}:iter:{iteration}:{i}:done", f"researcher-{iteration}-{i}")
                   for i in range(len(subtopics))], timeout, partial_ok=True)

        run_stage(client, f"{run_id}_EVAL{iteration}",
                  [job("evaluator", "research_evaluator.py",
                       ["--run-id", run_id, "--iter", str(iteration), *common], timeout)],
                  run_id, [(f"{key}:eval:{iteration}:done", f"evaluator-{iteration}")], timeout)
        decision = json.loads(client.store_get(f"{key}:eval:{iteration}") or "{}")
        if decision.get("decision") == "SYNTHESIZE":
            say("Evaluator: research complete — proceeding to synthesis.")
            break
        subtopics = decision.get("gaps") or []
        if iteration >= max_iter:
            say(f"Evaluator asked to deepen {subtopics}, but --max-iter {max_iter} is "
                "reached — proceeding to synthesis.")
            break
        say(f"Evaluator: DEEPEN — {decision.get('reason', '')}")
        for i, topic in enumerate(subtopics):
            print(f"  gap [{i}] {topic}", flush=True)

    sections = len(client.store_smembers(f"{key}:results"))
    say(f"Stage 4 — Synthesizer: merging {sections} research sections...")
    run_stage(client, f"{run_id}_SYNTH",
              [job("synthesizer", "research_synthesizer.py", ["--run-id", run_id, *common],
                   timeout)],
              run_id, [(f"{key}:synth:done", "synthesizer")], timeout)
    target = out or Path(tempfile.gettempdir()) / f"research_{run_id}_report.md"
    saved = Path(client.get_artifact(f"{key}:report", save_path=target))
    client.store_put(f"{key}:report_path", str(saved))
    return saved


def _query(text: str) -> str:
    """The research question on one line, its runs of whitespace (newlines too) made one
    space: it is the report's title, where a newline began Markdown of its own (a question
    holding "\n\n## Open Questions" made a section). A blank one is refused before anything
    is stored (answered, it gave a confident report on the planner's worked example, bread)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the research question is empty: ask one, or leave "
                                         "it out for the default question")
    return " ".join(text.split())


#: The longest a job may run that the master accepts (a year and a day).
MAX_TIMEOUT = 366 * 24 * 3600


def _seconds(text: str) -> float:
    """``--timeout``: a finite number of seconds from 1 to MAX_TIMEOUT, checked here, before
    the question is stored (the master refused 0 and -5 only then, leaving an orphan run;
    nan and inf crashed with a traceback; 0.5 was sent as 0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 1 <= value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(f"takes a number of seconds from 1 to {MAX_TIMEOUT}, "
                                         f"got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", nargs="?", default=DEFAULT_QUERY, type=_query,
                   help="the research question (not blank; default: a question on vector "
                        "databases for RAG)")
    p.add_argument("--max-iter", type=int, default=3,
                   help="research iterations at most (default 3)")
    p.add_argument("--max-subtopics", type=int, default=4,
                   help="subtopics the planner may choose (default 4)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="cap on the tokens of every LLM answer (default: per stage)")
    # Passed to every job. Not read from this process's environment: the command line is
    # recorded with the run, so a replay asks for the same model wherever it runs.
    p.add_argument("--model", default=None,
                   help="LLM for every stage (default: the workers' TITAN_LLM_MODEL, else "
                        "the local model); a hosted model needs its API key where the "
                        "workers run")
    p.add_argument("--out", type=Path, default=None,
                   help="where to save the report (default: <tmp>/research_<run>_report.md)")
    p.add_argument("--timeout", type=_seconds, default=900,
                   help="seconds any one stage may take, at least 1 (default 900)")
    p.add_argument("--run-id", default=None,
                   help="the agent run's id, 1-190 ASCII letters, digits, '.', '_', ':' or "
                        "'-' with at least one letter or digit (default: RESEARCH_ and six "
                        "random hex digits); a caller that names it finds its run among "
                        "others on the cluster (it is still an agent RESEARCH run)")
    args = p.parse_args(argv)
    if args.max_iter < 1 or args.max_subtopics < 1:
        p.error("--max-iter and --max-subtopics must be at least 1")
    # 190: its stages are DAGs named <run id>_PLAN ... _SYNTH, at most 200 characters.
    if args.run_id is not None and not re.fullmatch(r"(?=.*[A-Za-z0-9])[A-Za-z0-9._:-]{1,190}",
                                                    args.run_id):
        p.error("--run-id takes 1-190 ASCII letters, digits, '.', '_', ':' or '-', with at "
                "least one letter or digit")

    started = time.monotonic()
    try:
        with TitanClient() as client:
            client.health()
            report = research(client, args.query, max_iter=args.max_iter,
                              max_subtopics=args.max_subtopics, max_tokens=args.max_tokens,
                              model=args.model, out=args.out, timeout=args.timeout,
                              run_id=args.run_id)
    except ConnectionFailed as exc:
        print(f"[AGENT] error: {exc}\n[AGENT] start a cluster first: `titan up` "
              "(or `make demo`)", file=sys.stderr)
        return 2
    except StageFailed as exc:
        print(f"[AGENT] FAILED: {exc}", file=sys.stderr)
        return 1
    except TitanError as exc:
        print(f"[AGENT] error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[AGENT] interrupted; the running stage was cancelled", file=sys.stderr)
        return 130
    say(f"Done in {time.monotonic() - started:.1f}s. Report downloaded → {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
