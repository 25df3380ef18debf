"""Writing jobs as a pipeline file: what :func:`titan.client.pipeline.load_pipeline` reads
back as the same jobs, fields at their defaults left out, for people to read and edit (the
dashboard's DAG builder exports with it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from titan import services
from titan.client.job import TitanJob
from titan.client.pipeline_fields import JOB_FIELDS


class _Inline(list[str]):
    """A job's list (``args``, ``depends_on``), written on one line: ``[extract, train]``."""


# libyaml's emitter when PyYAML was built with it: ten times the pure-Python one's speed,
# which a 10,000-job DAG builder draft, written again on each change, needs.
_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_SafeDumper):  # type: ignore[valid-type,misc]
    """Jobs and mappings as blocks, a job's lists inline, never an anchor: the file is for
    people to read and edit."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(
    _Inline, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                            flow_style=True))
#: What a TitanJob holds when a field is not given (besides None): such fields are not written.
_DEFAULTS: dict[str, Any] = {
    "job_type": "RUN_PAYLOAD", "args": [], "parents": [], "requirement": "GENERAL",
    "priority": 1, "delay": 0, "affinity": False, "port": 0, "env": {}, "is_archive": False,
    "runner": "auto",
}


def dump_pipeline(name: str, jobs: Iterable[TitanJob]) -> str:
    """The pipeline file for ``jobs``: :func:`load_pipeline` reads it back as the same jobs
    (``file`` as each job names it; an approval gate's empty one is left out)."""
    entries = []
    for job in (job.checked() for job in jobs):  # a field set since is checked too
        entry: dict[str, Any] = {}
        settings = job.service or {}  # a service's own settings are kept apart on the job
        for key, arg in JOB_FIELDS.items():
            value = settings.get(arg) if arg in services.FIELDS else getattr(job, arg)
            if value is None or (arg in _DEFAULTS and value == _DEFAULTS[arg]):
                continue
            if arg == "filename" and not value and job.is_gate:
                continue
            entry[key] = _Inline(value) if isinstance(value, list) else value
        entries.append(entry)
    return yaml.dump({"name": name, "jobs": entries}, Dumper=_Dumper, sort_keys=False,
                     allow_unicode=True, default_flow_style=False, width=100)
