"""In a replay's DRIVER job, the copy of a recorded file that a path naming it stands for.

A replay lays the run's code out in its DRIVER job's workspace, in the files' recorded
relative layout (:mod:`titan.trace.replay_driver`), and runs the driver there: a job script
named relative to the driver's folder or working directory is found in that layout. One named
by absolute path (``TitanJob(filename="/home/me/agent/stage.py")``) was read from the worker's
disk: a replay of the recorded code ran the file as it was edited since, and failed with
``ScriptNotFound`` once it had moved, though the replay held its recorded copy (a QA pass).

So the DRIVER job writes where it laid each file (recorded path → copy) into a file named by
``TITAN_REPLAY_FILES`` (processes the driver starts inherit it), and a job script's path is
looked up there before the disk. The recorder names each file by its resolved path (``~``
expanded, ``..`` and symlinks resolved: :meth:`TitanJob.script_path`), so a path is looked up
as it is normalised, then resolved on this machine.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

ENV = "TITAN_REPLAY_FILES"


def publish(copies: dict[str, Path], manifest: Path) -> None:
    """Say, for this process and those it starts, where each recorded file was laid out."""
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({path: str(copy) for path, copy in copies.items()}))
    os.environ[ENV] = str(manifest)


@lru_cache(maxsize=4)
def _copies(manifest: str) -> dict[str, str]:
    try:
        found = json.loads(Path(manifest).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def copy_of(path: Path) -> Path | None:
    """The laid-out copy of the recorded file ``path`` (absolute) names; None outside a
    replay's DRIVER job, or for a path the run did not record."""
    manifest = os.environ.get(ENV)
    if not manifest or not os.environ.get("TITAN_REPLAY"):
        return None
    copies = _copies(manifest)
    for key in (os.path.normpath(path), os.path.realpath(path)):
        if key in copies:
            return Path(copies[key])
    return None
