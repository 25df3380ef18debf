"""A pipeline file's job fields: each YAML key and the ``TitanJob`` argument it sets, the one
table the reader (:mod:`titan.client.pipeline`) and the writer (:mod:`titan.client.pipeline_writer`)
both follow."""

from __future__ import annotations

#: YAML key -> TitanJob argument.
JOB_FIELDS = {
    "id": "job_id",
    "file": "filename",
    "args": "args",
    "depends_on": "parents",
    "requirement": "requirement",
    "priority": "priority",
    "delay": "delay",
    "affinity": "affinity",
    "type": "job_type",
    "port": "port",
    "retries": "retries",
    "timeout": "timeout",
    "env": "env",
    "is_archive": "is_archive",
    "hitl_message": "hitl_message",
    "max_wait_seconds": "max_wait_seconds",
    "runner": "runner",
    "readiness": "readiness",
    "max_restarts": "max_restarts",
    "restart_window": "restart_window",
    "stop_grace": "stop_grace",
    "ready_timeout": "ready_timeout",
}
