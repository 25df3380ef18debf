"""What the master hands a worker to run (an *assignment*) and the environment it runs in."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from titan import errors
from titan.client.tls import CA_FILE_ENV
from titan.redaction import BUILTIN, TOKEN_START
from titan.worker import shared_imports

Key = tuple[int, int]
"""(job numeric id, attempt): the fencing token of one execution."""


@dataclass(frozen=True)
class Assignment:
    """One leased attempt of a job, as the poll reply describes it (docs/api.md)."""

    id: int
    attempt: int
    job_id: str
    filename: str
    ref: str = ""
    dag: str | None = None
    dag_id: int | None = None
    agent_run_id: str | None = None
    script_sha256: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    job_type: str = "RUN_PAYLOAD"
    is_archive: bool = False
    port: int = 0
    runner: str = "auto"
    timeout: float | None = None
    token: str | None = None
    #: The capability the job asked for (an executor may map it to resources: Ray's GPUs).
    requirement: str = "GENERAL"
    #: A service's settings (titan/services.py); None for every other job.
    service: dict[str, Any] | None = None

    @property
    def key(self) -> Key:
        return (self.id, self.attempt)

    @property
    def run(self) -> int | None:
        """The run number of the job's DAG, read from ``ref`` (``dag#run/job_id``: names hold
        neither ``#`` nor ``/``); None when the master did not say."""
        _, _, rest = self.ref.partition("#")
        number = rest.partition("/")[0]
        return int(number) if number.isascii() and number.isdigit() else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assignment:
        try:
            timeout = data.get("timeout")
            return cls(
                id=int(data["id"]),
                attempt=int(data["attempt"]),
                job_id=str(data.get("job_id") or data["id"]),
                filename=str(data["filename"]),
                ref=str(data.get("ref") or ""),
                dag=data.get("dag"),
                dag_id=data.get("dag_id"),
                agent_run_id=data.get("agent_run_id"),
                script_sha256=data.get("script_sha256"),
                args=[str(a) for a in data.get("args") or []],
                env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
                job_type=str(data.get("job_type") or "RUN_PAYLOAD"),
                is_archive=bool(data.get("is_archive")),
                port=int(data.get("port") or 0),
                runner=str(data.get("runner") or "auto"),
                timeout=float(timeout) if timeout else None,
                token=data.get("token"),
                requirement=str(data.get("requirement") or "GENERAL"),
                service=dict(data["service"]) if data.get("service") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.ValidationFailed(f"malformed assignment {dict(data)!r}: {exc}") from None


def master_host_port(master_url: str) -> tuple[str, int]:
    """The host and port a job's SDK should use to reach the master."""
    parts = urlsplit(master_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "127.0.0.1", port


#: Titan variables of the worker's environment that lead to a credential or to the
#: master's files; a job never inherits them (it gets its own job token instead).
_TITAN_SECRETS = frozenset({
    "TITAN_TOKEN", "TITAN_TOOL_TOKEN", "TITAN_DATABASE_URL", "TITAN_DATA_DIR",
    "TITAN_CONFIG_DIR", "TITAN_LIFELINE_FD", "TITAN_JOB_ENV_PASS",
})
#: Names that say "credential" (GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, PGPASSWORD, ...), and
#: HTTP headers to send (OTEL_EXPORTER_OTLP_HEADERS, TITAN_OTLP_HEADERS: an Authorization).
_CREDENTIAL_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(OR)?D|PASS$|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|AUTH|"
    r"COOKIE|SESSION|DATABASE_URL|_DSN$|HEADERS?$", re.IGNORECASE)
#: A value that is a credential whatever its variable's name: a provider's key by its
#: published prefix (ghp_, sk-, AKIA, ...), a JWT or a PEM private key (the PII redactor's
#: ``api_key`` pattern), or an HTTP credential ("Authorization: Basic ...", "Bearer ...").
_CREDENTIAL_VALUE = re.compile(BUILTIN["api_key"] +
                               r"|\b(?:Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{8,}")
#: A Titan token, whatever variable carries it (also URL-encoded or escaped:
#: ``Bearer%20tt_...``), or a worker credential: never passed on.
_TITAN_TOKEN_VALUE = re.compile(TOKEN_START + r"tt_[A-Za-z0-9_-]{20,}|\btw\.[^.\s]+\.[^.\s]+\.")
#: A URL with a password in it (``redis://:pw@host``, ``amqp://u:pw@host``): a credential
#: whatever its variable's name, passed on only when ``TITAN_JOB_ENV_PASS`` names it.
_PASSWORD_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{0,30}://[^/@\s:]*:[^/@\s]+@")
#: Credentials Titan's own agents read from the worker's environment (docs/security.md):
#: passed on by default; ``TITAN_JOB_ENV_PASS`` names more.
DEFAULT_PASS = ("GEMINI_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def passed_names(environ: Mapping[str, str]) -> set[str]:
    """The credentials a job is given all the same: :data:`DEFAULT_PASS` and the names
    ``TITAN_JOB_ENV_PASS`` lists."""
    passed = set(DEFAULT_PASS)
    passed.update(n.strip() for n in environ.get("TITAN_JOB_ENV_PASS", "").split(",")
                  if n.strip())
    return passed


def inherited_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What a job inherits of the worker's environment: everything but credentials.

    Computed once per worker (it is also the zygote's own environment, whose initial block
    every forked job could read back from ``/proc/self/environ``).
    """
    passed = passed_names(environ)
    env = {}
    for name, value in environ.items():
        if name in _TITAN_SECRETS or _TITAN_TOKEN_VALUE.search(value):
            continue
        if (_CREDENTIAL_NAME.search(name) or _PASSWORD_URL.search(value)
                or _CREDENTIAL_VALUE.search(value)) and name not in passed:
            continue
        if name == CA_FILE_ENV and value.strip():
            # Jobs start in the workspace, not the worker's directory: a relative path named
            # another file there (and not the one the sandbox lets them read).
            value = os.path.abspath(value.strip())
        env[name] = value
    return env


def job_env(assignment: Assignment, *, master_url: str, workspace: Path,
            project_dir: Path | None = None,
            base: Mapping[str, str] | None = None,
            master_urls: Sequence[str] = ()) -> dict[str, str]:
    """The job's environment: the worker's less its credentials (:func:`inherited_env`),
    then the job's own ``env``, then Titan's.

    Titan's variables come last so a job cannot be pointed at another job's identity; the
    worker's own token never reaches a job (``TITAN_TOKEN`` is the attempt's job token, or
    unset). ``base`` is an already scrubbed environment (the worker computes it once).
    ``TITAN_MASTER_URL`` is the master in use; ``TITAN_MASTER_URLS`` lists it first, then
    the other masters of ``master_urls`` (its standbys), so the job's SDK follows the leader
    when it changes.
    """
    env = dict(inherited_env(os.environ) if base is None else base)
    inherited_path = env.get("PYTHONPATH", "")
    env.update(assignment.env)
    site = shared_imports.site_dir()
    if inherited_path.split(os.pathsep)[0] == site and \
            env.get("PYTHONPATH", "").split(os.pathsep)[0] != site:
        # A --run-as job's own PYTHONPATH goes after the folder that keeps the interpreters
        # it starts from importing what another job left in shared/ (worker/isolation.py).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
    current = master_url.rstrip("/")
    host, port = master_host_port(current)
    env.update({
        "TITAN_HOST": host,
        "TITAN_PORT": str(port),
        "TITAN_MASTER_URL": current,
        "TITAN_MASTER_URLS": ",".join(dict.fromkeys([current,
                                                     *(u.rstrip("/") for u in master_urls)])),
        "TITAN_JOB_ID": assignment.job_id,
        "TITAN_JOB_REF": assignment.ref,
        "TITAN_JOB_UID": str(assignment.id),
        "TITAN_ATTEMPT": str(assignment.attempt),
        "TITAN_DAG": assignment.dag or "",
        "TITAN_WORKSPACE": str(workspace),
        # The job starts in the workspace: PWD inherited from the worker named the directory
        # `titan up` was started in, which os.environ["PWD"], and programs that trust it
        # (a subprocess without a shell), took for the job's own.
        "PWD": str(workspace),
        # Output reaches the master line by line only if Python children do not buffer it.
        "PYTHONUNBUFFERED": "1",
    })
    optional = {
        "TITAN_TOKEN": assignment.token,
        "TITAN_AGENT_RUN_ID": assignment.agent_run_id,
        "TITAN_DAG_RUN": str(assignment.run) if assignment.run is not None else None,
        "TITAN_SERVICE_PORT": str(assignment.port) if assignment.port > 0 else None,
        "TITAN_PROJECT_DIR": str(project_dir) if project_dir is not None else None,
    }
    env.pop("OLDPWD", None)  # the worker's, not a directory the job was ever in
    # Which helper process of which run its starter was (titan.trace.processes): a job is
    # no one's helper, even on a worker started by one, or named so by its own env.
    env.pop("TITAN_TRACE_PROCESS", None)
    for name, value in optional.items():
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env
