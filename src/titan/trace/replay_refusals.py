"""Why a replayed call is stopped or refused, said as the exception the agent's code gets.

Every message names the call (channel, name, ordinal, actor, and the script's run block when
it is not the replayed one), what the recording holds instead, and the flag that would let
the call run (``--allow-live``, ``--mode lenient``).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from titan import errors
from titan.trace.canonical import NOT_REPLAYABLE_SAYS, REPR
from titan.trace.recorded import Decision, Recorded


def refusal(original: str, decision: Decision, channel: str, name: str,
            actor: str) -> BaseException:
    """The exception a call of the replay of ``original`` raises when it is stopped (strict)
    or refused: what the call was, where, why the recording cannot answer it, and the flag
    that would let it run."""
    what = {"input_mismatch": "its inputs differ from the recording's",
            "name_mismatch": (f"the recording made {decision.recorded.name!r} at this "
                              "position" if decision.recorded else "a different call"),
            "extra": "the recording has no such call",
            "redacted": "its recorded outputs were redacted (PII) before storage, so the "
                        "replay cannot return them",
            "bytes_not_kept": "it returned bytes, and the run was recorded before Titan "
                              "kept bytes over 256 (only their sha256 and size are on "
                              "record), so the replay cannot return them",
            "not_replayable": f"what it returned ({_stand_in_of(decision.recorded)}) "
                              f"{NOT_REPLAYABLE_SAYS} (return a list, a dict or a "
                              "dataclass instead)",
            }[decision.divergence or "extra"]
    where = f"{channel} call {name!r} #{decision.ordinal} of {actor}"
    if decision.of is not None:
        where += (f" (in the script's `titan.trace.run` block that was run {decision.of}, "
                  "answered from its recording)" if decision.of else
                  " (in a `titan.trace.run` block the original script did not open)")
    if decision.divergence in ("redacted", "bytes_not_kept", "not_replayable"):
        message = f"replay of {original}: {where}: {what} (--allow-live runs it live)"
        if decision.status == "stopped":
            return errors.ReplayDiverged(message, kind=decision.divergence)
        return errors.ReplayMiss(message, kind=decision.divergence)
    if decision.status == "stopped":
        return errors.ReplayDiverged(
            f"replay of {original} stopped at {where}: {what} (strict mode; "
            "--mode lenient goes on)", kind=decision.divergence or "extra")
    return errors.ReplayMiss(
        f"replay of {original}: {where} is not in the recording and live calls are "
        "off (--allow-live runs it)", kind=decision.divergence or "extra")


def _stand_in_of(recorded: Recorded | None) -> str:
    """The first value of a call's outputs recorded only by its repr (``$repr``), as said."""
    found: list[str] = []

    def look(v: Any) -> None:
        if found:
            return
        if isinstance(v, dict):
            if len(v) == 1 and isinstance(v.get(REPR), str):
                found.append(v[REPR][:200])
            for x in v.values():
                look(x)
        elif isinstance(v, list):
            for x in v:
                look(x)

    if recorded is not None and recorded.outputs:
        with contextlib.suppress(ValueError):
            look(json.loads(recorded.outputs))
    return found[0] if found else "a value"
