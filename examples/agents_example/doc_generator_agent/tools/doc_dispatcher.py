"""The doc-generator agent: it reads a codebase, plans one documentation job per module, runs
them in parallel on the cluster and assembles the result into one DOCS.md.

The plan is made at run time from what it finds (the DAG's shape is the codebase's): one
``document_module.py`` job per module, each asking a model (``titan.llm``: the local one by
default) to explain its module from the source, and an ``assemble_docs.py`` job that waits
for all of them and publishes ``DOCS.md`` as an artifact. Sources and pages travel through
TitanStore, so the jobs may run on any worker. It is one agent run: every model call is on the
Runs page.

    titan up                                                   # in another terminal
    python examples/agents_example/doc_generator_agent/tools/doc_dispatcher.py \\
        [PROJECT_DIR] [--out DOCS.md] [--model gemini/gemini-2.0-flash]

PROJECT_DIR defaults to the sample project beside this folder.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from titan import trace
from titan_sdk import TitanClient, TitanJob

HERE = Path(__file__).resolve().parent
SKIP = {"__pycache__", ".git", ".venv", "venv", "node_modules", "tests", "build", "dist"}


def modules(root: Path, limit: int) -> list[Path]:
    found = sorted(p for p in root.rglob("*.py")
                   if not SKIP.intersection(p.relative_to(root).parts) and p.stat().st_size)
    if len(found) > limit:
        print(f"[PLAN] {len(found)} modules; documenting the first {limit} (--max-modules)")
    return found[:limit]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", nargs="?", default=str(HERE.parent / "sample_project"))
    ap.add_argument("--out", default="DOCS.md", help="where to write the result (DOCS.md)")
    ap.add_argument("--model", default="", help="titan.llm model for the jobs (default: local)")
    ap.add_argument("--max-modules", type=int, default=20)
    args = ap.parse_args()
    root = Path(args.project).resolve()
    found = modules(root, args.max_modules)
    if not found:
        print(f"no Python modules under {root}")
        return 1
    client = TitanClient()
    batch = secrets.token_hex(3)

    with trace.run("doc-generator") as run:
        jobs = []
        for i, path in enumerate(found):
            rel = path.relative_to(root).as_posix()
            client.store_put(f"docgen:{batch}:src:{rel}", path.read_text(errors="replace"))
            jobs.append(TitanJob(job_id=f"doc_{i}", filename=str(HERE / "document_module.py"),
                                 args=[batch, rel, args.model]))
        jobs.append(TitanJob(job_id="assemble", filename=str(HERE / "assemble_docs.py"),
                             args=[batch, root.name, *[j.args[1] for j in jobs]],
                             parents=[j.job_id for j in jobs]))
        dag = client.submit_dag("doc_generator", jobs, agent_run_id=run.id)
        print(f"[PLAN] {len(found)} modules of {root.name}: {dag['ref']} "
              f"({len(jobs)} jobs, run {run.id})")
        done = client.wait_dag(dag["ref"], timeout=1800)
        if done["status"] != "COMPLETED":
            failed = [j["job_id"] for j in done["jobs"] if j["state"] != "COMPLETED"]
            # Inside the block: the exception that leaves it fails the run, with this as its
            # error (a `return 1` here ended the block normally: the run said completed).
            sys.exit(f"[FAILED] {dag['ref']}: {done['status']} ({', '.join(failed)})")
        out = client.get_artifact(f"docgen:{batch}:DOCS.md", save_path=args.out)
        print(f"[DONE] {out} ({os.path.getsize(out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
