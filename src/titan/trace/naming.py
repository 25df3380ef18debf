"""Names derived from an agent run's id: its stages' short labels, its agent, its actors.

Shared by the master (stage labels on the Agent Runs page, a run's agent when none was given)
and the SDK (a job's actor path), so both spell them the same way. Replays get a new run id,
so anything that must match across runs (actor paths) is built from labels with the run id
taken out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: A replay's first stage and its one job (master/replays/service.py), which re-runs the
#: driver: the actor path its calls record under there, and so the one a process driving a
#: run from outside records its own calls under in the original (trace/runs.py): the two
#: runs must spell it the same for a replay to match them.
DRIVER_STAGE = "DRIVER"
DRIVER_JOB = "driver"
DRIVER_ACTOR = f"{DRIVER_STAGE}/{DRIVER_JOB}"

#: What may stand between a run id and its stage's own name in a DAG name.
_SEPARATORS = "_-:. "

#: A run id's tail that says which run, not which agent: random hex, a number, or a
#: timestamp in ISO 8601's basic format (a schedule's fire, ``nightly-20260302T050000Z``).
_RANDOM_TAIL = re.compile(
    r"^(?P<agent>.+?)[_\-:.](?P<tail>[0-9a-fA-F]{4,}|\d+|\d{8}T\d{4,6}(?:\.\d+)?Z?)$")


def stage_label(name: str, run_id: str, aliases: Iterable[str] = ()) -> str:
    """The DAG name with the agent run's prefix stripped: RESEARCH_1a9ac3_PLAN -> PLAN.

    The prefix is everything up to the run id and the separators after it, so a run named by
    its random part alone (seed 000's "the ITER1 stage of run 1a9ac3" is the DAG
    RESEARCH_1a9ac3_ITER1) gets short labels too; the id counts only as a whole word there
    (after the start or a separator), so "RESEARCH_R10_X" is not a stage of R1.

    ``aliases`` are other ids the run's driver used for it: a replayed orchestrator makes up
    a fresh run id (RESEARCH_77e0f1) and its stages are filed under the replay's run."""
    ids = [rid for rid in (run_id, *aliases) if rid]
    # The id at the start wins (the usual f"{run_id}_PLAN"), then the id as a later word.
    for anywhere in (False, True):
        for rid in ids:
            at = name.find(rid)
            while at >= 0:
                # The id, then separators, then the stage: "R1_X", "R1.X" and "R1__X" are
                # X's, "R10_X" is not a stage of R1.
                rest = name[at + len(rid):]
                label = rest.lstrip(_SEPARATORS)
                if label and label != rest and (at == 0 or name[at - 1] in _SEPARATORS):
                    return label
                at = name.find(rid, at + 1) if anywhere else -1
    return name


def run_aliases(run: Mapping[str, Any]) -> list[str]:
    """The aliases a run row's replay settings list."""
    replay = run.get("replay")
    if isinstance(replay, str):  # a raw row: the column is JSON text
        replay = json.loads(replay)
    return list(replay.get("aliases") or []) if isinstance(replay, dict) else []


def agent_of_run(run_id: str) -> str:
    """The agent a run belongs to when nobody said: the run id without its random, numbered
    or timestamp tail (RESEARCH_1a9ac3 -> RESEARCH, nightly-20260302T050000Z -> nightly),
    else the whole id."""
    m = _RANDOM_TAIL.match(run_id)
    return m.group("agent") if m else run_id


def job_actor(dag: str, job_id: str, run_id: str, aliases: Iterable[str] = ()) -> str:
    """A job's actor path inside its run: ``<stage label>/<job id>`` (ITER1/researcher-1-0)."""
    return f"{stage_label(dag, run_id, aliases)}/{job_id}" if dag else job_id
