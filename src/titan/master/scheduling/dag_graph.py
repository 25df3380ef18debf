"""The graph of a DAG submission: duplicate ids, self-dependencies, unknown parents, cycles.

Kept apart from the per-job checks of :mod:`~titan.master.scheduling.validation`: the
dashboard's DAG builder asks for these alone, on drafts whose jobs are not valid yet.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from titan.errors import InvalidDAG


def job_problem(job_id: str, field: str, message: str) -> InvalidDAG:
    """An :class:`InvalidDAG` naming the job and the field at fault."""
    return InvalidDAG(f"job {job_id!r}: {message}", details={"job_id": job_id, "field": field})


def graph_problems(specs: list[dict[str, Any]]) -> list[InvalidDAG]:
    """Every problem of the graph itself — duplicate ids, a job that depends on itself, an
    unknown parent, a cycle — in that order. ``specs`` need only ``job_id`` and ``parents``:
    the dashboard's DAG builder lists them all at once while a draft is being drawn, and
    :func:`validate_dag` raises the first, so both say the same thing."""
    problems: list[InvalidDAG] = []
    seen: set[str] = set()
    # Listed parents first (as most submissions are), the order is a topological one and
    # there can be no cycle: the search for one is skipped.
    parents_first = True
    for spec in specs:
        if parents_first and not seen.issuperset(spec["parents"]):
            parents_first = False
        if spec["job_id"] in seen:
            problems.append(job_problem(spec["job_id"], "job_id", "duplicate job id in this DAG"))
        seen.add(spec["job_id"])
    for spec in specs:
        for parent in spec["parents"]:
            if parent == spec["job_id"]:
                problems.append(job_problem(parent, "parents", "a job cannot depend on itself (cycle)"))
            elif parent not in seen:
                problems.append(job_problem(spec["job_id"], "parents", f"unknown parent {parent!r}"))
    cycle = None if parents_first else find_cycle(specs)
    if cycle is not None:
        # A long one is shown by its ends: 10,000 jobs in a loop made a 150 KB message (and
        # ``details`` as big) in the API's answer, the exception and the CLI (a QA pass).
        shown = cycle if len(cycle) <= CYCLE_SHOWN else [
            *cycle[:CYCLE_SHOWN // 2], f"... {len(cycle) - CYCLE_SHOWN} more ...",
            *cycle[-(CYCLE_SHOWN // 2):]]
        problems.append(InvalidDAG(
            f"job {cycle[0]!r}: cycle in dependencies: {' -> '.join(shown)}",
            details={"job_id": cycle[0], "field": "parents", "cycle": shown,
                     "cycle_length": len(cycle) - 1},
        ))
    return problems


#: Jobs of a cycle named in its error: the first half and the last half of them.
CYCLE_SHOWN = 10


def find_cycle(specs: list[dict[str, Any]]) -> list[str] | None:
    """One dependency cycle as ``[a, b, ..., a]`` (each job a parent of the next), or None.

    Kahn's algorithm, then a walk up the parents of a job it never released until a job
    repeats. Unknown parents and self-dependencies are left out (:func:`graph_problems` names
    them), and a duplicated id counts as one job with both jobs' parents, so a draft with
    those mistakes still gets its real cycles found."""
    parents: dict[str, list[str]] = {}
    for spec in specs:
        parents.setdefault(spec["job_id"], []).extend(spec["parents"])
    for job_id, names in parents.items():
        parents[job_id] = [p for p in dict.fromkeys(names) if p in parents and p != job_id]
    indegree = {j: len(ps) for j, ps in parents.items()}
    children: dict[str, list[str]] = {j: [] for j in parents}
    for job_id, names in parents.items():
        for p in names:
            children[p].append(job_id)
    ready = deque(j for j, d in indegree.items() if d == 0)
    done = 0
    while ready:
        j = ready.popleft()
        done += 1
        for c in children[j]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    if done == len(parents):
        return None
    # A job left over has a parent left over (a released parent would have released it), so
    # walking up such parents must repeat a job: that loop is a cycle.
    start = next(j for j, d in indegree.items() if d > 0)
    path: list[str] = []
    index: dict[str, int] = {}
    node = start
    while node not in index:
        index[node] = len(path)
        path.append(node)
        node = next(p for p in parents[node] if indegree[p] > 0)
    cycle = path[index[node]:] + [node]
    cycle.reverse()
    return cycle
