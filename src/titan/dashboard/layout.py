"""Laying a DAG out on a grid, on the server, so the browser only has to draw.

Column = dependency depth (the longest path from a root), so every edge points right. Inside
a column, nodes are ordered by the barycenter of their parents' rows (one pass, left to
right), which keeps children next to their parents and most edges short; ties keep
submission order, so the picture is stable between runs of the same DAG.

The result is a handful of flat lists (no per-node objects): a 10,000-node DAG is a few
hundred kilobytes of JSON, and the browser indexes it by column to find what is visible.
Everything here is iterative — a 10,000-long chain must not recurse 10,000 deep.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

Layout = dict[str, Any]


def layout(job_ids: Sequence[str], parents: Sequence[Sequence[str]]) -> Layout:
    """Lay out nodes ``job_ids`` (in submission order) whose parents are given by job id.

    Returns ``cols`` and ``rows`` (the grid's size), ``x`` and ``y`` (each node's column and
    row, by node index) and ``edges`` (a flat ``[parent, child, parent, child, ...]`` list of
    node indexes). Parents that name no node are ignored. A cycle cannot hang it: validation
    rejects one before anything is stored, but the DAG builder draws drafts that have one, so
    the cycle is cut at its earliest-submitted job and drawn as a chain with one edge back."""
    n = len(job_ids)
    index = {jid: i for i, jid in enumerate(job_ids)}
    par: list[list[int]] = [[] for _ in range(n)]
    children: list[list[int]] = [[] for _ in range(n)]
    edges: list[int] = []
    for child, names in enumerate(parents):
        seen: set[int] = set()
        for name in names:
            p = index.get(name)
            if p is None or p == child or p in seen:
                continue
            seen.add(p)
            par[child].append(p)
            children[p].append(child)
            edges += (p, child)

    depth = _depths(par, children)
    cols = max(depth, default=-1) + 1
    columns: list[list[int]] = [[] for _ in range(cols)]
    for i in range(n):
        columns[depth[i]].append(i)

    row = [0] * n
    for c, members in enumerate(columns):
        if c > 0:
            members.sort(key=lambda i: (_barycenter(par[i], row, depth, c), i))
        for r, i in enumerate(members):
            row[i] = r
    return {"cols": cols, "rows": max((len(m) for m in columns), default=0),
            "x": depth, "y": row, "edges": edges}


def _depths(par: list[list[int]], children: list[list[int]]) -> list[int]:
    """Longest path from a root, by Kahn's topological order (no recursion).

    When the order stalls, every job left waits on a cycle: the earliest-submitted one is
    released as if its parents still waiting were not there, and the order goes on."""
    n = len(par)
    depth = [0] * n
    missing = [len(p) for p in par]
    queue = deque(i for i in range(n) if missing[i] == 0)
    cut = 0  # jobs before this one were all released: each is looked at once
    while True:
        while queue:
            i = queue.popleft()
            d = depth[i] + 1
            for c in children[i]:
                if missing[c] < 0:  # released to cut a cycle: this is the edge back
                    continue
                if depth[c] < d:
                    depth[c] = d
                missing[c] -= 1
                if missing[c] == 0:
                    queue.append(c)
        while cut < n and missing[cut] <= 0:
            cut += 1
        if cut == n:
            return depth
        missing[cut] = -1
        queue.append(cut)


def _barycenter(parents: list[int], row: list[int], depth: list[int], column: int) -> float:
    rows = [row[p] for p in parents if depth[p] < column]
    return sum(rows) / len(rows) if rows else 0.0
