"""TitanJob: one job of a DAG, as the user describes it, validated when it is built.

A job names a script (``filename``) on the submitter's disk. The script is found at submit
time (:meth:`TitanJob.script_path`): relative to the current directory, else relative to the
directory of the running program (``sys.argv[0]``), so ``python examples/x/agent.py`` finds
``agent.py``'s sibling scripts from any directory. Archive jobs (``is_archive=True``,
``filename="<project>/<entry.py>"``) run from an uploaded ``<project>.zip`` and read nothing
locally.

Each field is checked as :mod:`titan.client.job_fields` says, so a bad job is refused before
it is sent.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from titan import services
from titan.client import replayed_files
from titan.client.job_fields import (
    check_name,
    checked_args,
    checked_env,
    checked_parents,
    invalid,
    is_int,
    is_seconds,
    shown,
)
from titan.errors import ScriptNotFound, ValidationFailed
from titan.formats import runner_problem

JOB_TYPES_HINT = "RUN_PAYLOAD"
RUNNERS = ("auto", "fork", "subprocess")
_JOB_TYPE = re.compile(r"^[A-Z][A-Z0-9_]*$")

def file_kind(path: Path) -> str:
    """What a path that is there but no regular file is, in words ("a character device")."""
    mode = path.stat().st_mode
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


class TitanJob:
    """One job: a script and its arguments, with scheduling hints.

    ``args`` may be a list or a string (split like a shell would). ``parents`` lists the job
    ids in the same DAG that must complete first. ``priority``: higher runs first.
    ``requirement``: the capability a worker must advertise (``GENERAL``, ``GPU``...).
    ``affinity``: prefer the worker that ran a parent. ``delay``: seconds to wait once ready.
    ``retries``/``timeout``: ``None`` means the master's default. ``runner``: ``auto`` (fork a
    warm interpreter for ``.py``), ``fork`` or ``subprocess`` (a fresh interpreter).

    A ``job_type="SERVICE"`` job is long-running: ``port`` (0: the worker allocates one),
    ``readiness`` (``"tcp"``, ``"http:/path"`` or ``"none"``), ``max_restarts`` within
    ``restart_window`` seconds, ``stop_grace`` and ``ready_timeout`` seconds say how it is
    started, checked, restarted and stopped (:mod:`titan.services`; ``None``: the default).
    """

    def __init__(
        self,
        job_id: str,
        filename: str | os.PathLike[str] | None = None,
        job_type: str = "RUN_PAYLOAD",
        args: str | Sequence[Any] | None = None,
        parents: Sequence[str] | None = None,
        port: int = 0,
        is_archive: bool = False,
        priority: int = 1,
        delay: float = 0,
        affinity: bool = False,
        requirement: str = "GENERAL",
        hitl_message: str | None = None,
        max_wait_seconds: float | None = None,
        *,
        retries: int | None = None,
        timeout: float | None = None,
        env: Mapping[str, Any] | None = None,
        runner: str = "auto",
        base_dir: str | os.PathLike[str] | None = None,
        readiness: str | None = None,
        max_restarts: int | None = None,
        restart_window: float | None = None,
        stop_grace: float | None = None,
        ready_timeout: float | None = None,
    ) -> None:
        self.job_id = check_name(job_id, "job_id", "job_id")
        jid = self.job_id

        def bad(field: str, message: str) -> ValidationFailed:
            return invalid(field, f"job {jid!r}: {message}", jid)

        if not isinstance(job_type, str) or not _JOB_TYPE.match(job_type.upper()):
            raise bad("job_type", f"job_type must be a name such as {JOB_TYPES_HINT!r}, "
                      f"got {shown(job_type)}")
        self.job_type: str = job_type.upper()

        if isinstance(filename, os.PathLike):
            filename = os.fspath(filename)
        if self.is_gate and filename is None:
            filename = ""  # a gate runs nothing
        elif not isinstance(filename, str) or not filename.strip():
            raise bad("filename", "filename must be a non-empty string (the script to run)")
        self.filename: str = filename

        self.args: list[str] = checked_args(args, bad)
        self.parents: list[str] = checked_parents(parents, bad)

        if not is_int(port) or not 0 <= port <= 65535:
            raise bad("port", f"port must be an integer 0-65535, got {shown(port)}")
        self.port: int = port
        if not isinstance(is_archive, bool):
            raise bad("is_archive", f"is_archive must be true or false, got {shown(is_archive)}")
        self.is_archive: bool = is_archive
        if not is_int(priority) or not -2**63 <= priority < 2**63:
            raise bad("priority", "priority must be an integer (64-bit), got "
                      f"{shown(priority)}")
        self.priority: int = priority
        if not is_seconds(delay) or delay < 0:
            raise bad("delay", f"delay must be a number of seconds >= 0, got {shown(delay)}")
        self.delay: float = delay
        if not isinstance(affinity, bool):
            raise bad("affinity", f"affinity must be true or false, got {shown(affinity)}")
        self.affinity: bool = affinity
        if not isinstance(requirement, str) or not requirement.strip():
            raise bad("requirement", f"requirement must be a capability name such as "
                      f"'GENERAL' or 'GPU', got {shown(requirement)}")
        self.requirement: str = requirement
        if hitl_message is not None and not isinstance(hitl_message, str):
            raise bad("hitl_message", f"hitl_message must be a string, got {shown(hitl_message)}")
        if hitl_message is not None and not hitl_message.strip():
            raise bad("hitl_message", "hitl_message is empty: say what the approver decides, "
                      "or leave it out for no approval gate")
        self.hitl_message: str | None = hitl_message
        if max_wait_seconds is not None and (
            not is_seconds(max_wait_seconds) or max_wait_seconds <= 0
        ):
            raise bad("max_wait_seconds", f"max_wait_seconds must be a number > 0, "
                      f"got {shown(max_wait_seconds)}")
        if max_wait_seconds is not None and hitl_message is None and not self.is_gate:
            # It bounds the wait of the gate hitl_message asks for: alone it was ignored.
            raise bad("max_wait_seconds", "max_wait_seconds is how long the approval gate "
                      "asked for by hitl_message waits for a decision: give hitl_message too, "
                      "or leave max_wait_seconds out")
        self.max_wait_seconds: float | None = max_wait_seconds
        if retries is not None and (not is_int(retries) or retries < 0):
            raise bad("retries", f"retries must be an integer >= 0, got {shown(retries)}")
        self.retries: int | None = retries
        if timeout is not None and (not is_seconds(timeout) or timeout <= 0):
            raise bad("timeout", f"timeout must be a number of seconds > 0, got {shown(timeout)}")
        self.timeout: float | None = timeout
        self.env: dict[str, str] = checked_env(env, bad)
        if runner not in RUNNERS:
            raise bad("runner", f"runner must be one of {', '.join(RUNNERS)}, got {shown(runner)}")
        if (why := runner_problem(runner, self.filename)) is not None:
            raise bad("runner", why)
        self.runner: str = runner
        self.base_dir: str | None = os.fspath(base_dir) if base_dir is not None else None
        given = {"readiness": readiness, "max_restarts": max_restarts,
                 "restart_window": restart_window, "stop_grace": stop_grace,
                 "ready_timeout": ready_timeout}
        #: A service's settings as given (None: the master's default); None for other jobs.
        self.service: dict[str, Any] | None = None
        if services.is_service(self.job_type):
            services.settings(given, bad)  # checked now, sent as given
            self.service = given
        else:
            for field, value in given.items():
                if value is not None:
                    raise bad(field, f"{field} is for services only (job_type='SERVICE'), "
                                     f"not {self.job_type}")
        self._built = self._as_built()  # what checked() finds unchanged

    # ------------------------------------------------------------------ changed after it was built

    def _fields(self) -> tuple[Any, ...]:
        """What makes the job what it is, lists and dicts copied (a snapshot stays as it
        was): every field but ``base_dir``, which says where a relative ``filename`` is
        looked for, as the current directory does."""
        return tuple(list(v) if type(v) is list else dict(v) if type(v) is dict else v
                     for v in (self.job_id, self.filename, self.job_type, self.args,
                               self.parents, self.port, self.is_archive, self.priority,
                               self.delay, self.affinity, self.requirement,
                               self.hitl_message, self.max_wait_seconds, self.retries,
                               self.timeout, self.env, self.runner, self.service))

    def _as_built(self) -> tuple[tuple[Any, ...], tuple[type, ...]]:
        fields = self._fields()
        return fields, tuple(map(type, fields))  # True == 1, but affinity=1 is no bool

    def checked(self) -> TitanJob:
        """This job as it stands, validated again as the constructor validates: a field set
        after construction (``job.args = [...]``, ``job.timeout = ...``) was sent as it was,
        to fail as a bare ``TypeError`` or ``ValueError``, or to be taken wrongly (``parents
        = "ab"`` went as ``['a', 'b']``). What :meth:`TitanClient.submit_dag` sends: this
        job itself when nothing changed (validating twice doubled the SDK's part of a
        10,000-job submission)."""
        if self._as_built() == getattr(self, "_built", None):
            return self
        service = self.service if isinstance(self.service, Mapping) else {}
        return TitanJob(
            self.job_id, None if self.is_gate and self.filename == "" else self.filename,
            self.job_type, self.args, self.parents, self.port, self.is_archive, self.priority,
            self.delay, self.affinity, self.requirement, self.hitl_message,
            self.max_wait_seconds, retries=self.retries, timeout=self.timeout, env=self.env,
            runner=self.runner, base_dir=self.base_dir,
            **{field: service.get(field) for field in services.FIELDS})

    # ------------------------------------------------------------------ identity

    @property
    def id(self) -> str:
        """The job id (the original SDK's attribute name)."""
        return self.job_id

    def __repr__(self) -> str:
        """The job as it would be written: its id, its script and every field that is not
        its default, in the constructor's order; ``env`` by its names only (its values are
        where secrets go, and a repr ends up in logs)."""
        shown = [f"job_id={self.job_id!r}"]
        if not (self.is_gate and self.filename == ""):
            shown.append(f"filename={self.filename!r}")
        for field, default in _DEFAULTS:
            value = getattr(self, field)
            if value != default:
                shown.append(f"{field}={value!r}")
        if self.env:
            shown.append("env={" + ", ".join(f"{k!r}: '***'" for k in self.env) + "}")
        if self.runner != "auto":
            shown.append(f"runner={self.runner!r}")
        if self.base_dir is not None:
            shown.append(f"base_dir={self.base_dir!r}")
        shown += [f"{k}={v!r}" for k, v in (self.service or {}).items() if v is not None]
        return f"TitanJob({', '.join(shown)})"

    def __eq__(self, other: object) -> bool:
        """Equal jobs have equal fields (:meth:`_fields`): ``load_pipeline`` of what
        ``dump_pipeline`` wrote equals the jobs written, as documented; it compared as
        different objects only."""
        if not isinstance(other, TitanJob):
            return NotImplemented
        return self._fields() == other._fields()

    #: Mutable and compared by value, as a list: no hash (a job changed in a set was lost).
    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ the script

    def candidates(self) -> list[Path]:
        """The places the script is looked for, in order (in a replay's driver, a recorded
        file's path is its recorded copy's: :mod:`titan.client.replayed_files`)."""
        return [replayed_files.copy_of(place) or place for place in self._places()]

    def _places(self) -> list[Path]:
        path = Path(os.path.expanduser(self.filename))
        if path.is_absolute():
            return [path]
        if self.base_dir is not None:
            return [Path(self.base_dir) / path]
        places = [Path.cwd() / path]
        argv0 = sys.argv[0] if sys.argv else ""
        if argv0 and argv0 not in ("-c", "-m", "-") and os.path.isfile(argv0):
            alt = Path(os.path.dirname(os.path.abspath(argv0))) / path
            if alt not in places:
                places.append(alt)
        return places

    def script_path(self) -> Path:
        """The script on this machine; :class:`ScriptNotFound` names every path tried."""
        tried = self.candidates()
        for place in tried:
            if place.is_file():
                return place
        paths = ", ".join(str(p) for p in tried)
        others = [p for p in tried if p.exists() and not p.is_dir()]
        if others:  # a device, a FIFO, a socket: there, so "not found" was wrong
            raise ScriptNotFound(f"script {self.filename!r} for job {self.job_id!r} is not a "
                                 f"regular file ({others[0]}: {file_kind(others[0])}); a "
                                 "job runs a script file")
        folders = [p for p in tried if p.is_dir()]
        if folders:  # there, but not a file: "not found" sent people looking for a typo
            raise ScriptNotFound(f"script {self.filename!r} for job {self.job_id!r} is a "
                                 f"folder, not a script ({folders[0]}); an archive job names "
                                 "its entry inside an uploaded project: 'project/main.py'")
        raise ScriptNotFound(
            f"script {self.filename!r} for job {self.job_id!r} not found (tried: {paths})"
            + _not_brought(tried))

    @property
    def is_gate(self) -> bool:
        """An approval gate declared directly (``job_type="APPROVAL"``): no script."""
        return self.job_type == "APPROVAL"

    def remote_filename(self) -> str:
        """The name the script is sent under: the relative path as given, else its basename.

        Absolute paths and paths that climb out of their directory (``../x.py``) are sent as
        their basename; the master must never see a path that escapes a workspace.
        """
        if self.is_archive or self.is_gate:
            return self.filename
        path = os.path.expanduser(self.filename)
        if os.path.isabs(path):
            return os.path.basename(path)
        norm = os.path.normpath(path).replace(os.sep, "/")
        if norm == ".." or norm.startswith("../"):
            return os.path.basename(norm)
        return norm

    def to_payload(self, script_sha256: str | None) -> dict[str, Any]:
        """The job as ``POST /dags`` expects it."""
        return {
            "job_id": self.job_id,
            "filename": self.remote_filename(),
            "script_sha256": script_sha256,
            "job_type": self.job_type,
            "args": list(self.args),
            "parents": list(self.parents),
            "priority": self.priority,
            "delay": self.delay,
            "affinity": self.affinity,
            "requirement": self.requirement,
            "retries": self.retries,
            "timeout": self.timeout,
            "env": dict(self.env),
            "runner": self.runner,
            "port": self.port,
            "is_archive": self.is_archive,
            "hitl_message": self.hitl_message,
            "max_wait_seconds": self.max_wait_seconds,
            # Only a service's: a payload stays what a master without services reads.
            **(self.service or {}),
        }


#: The constructor's defaults that a repr leaves out, in its order (``env``, ``runner``,
#: ``base_dir`` and a service's settings are said apart).
_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("job_type", "RUN_PAYLOAD"), ("args", []), ("parents", []), ("port", 0),
    ("is_archive", False), ("priority", 1), ("delay", 0), ("affinity", False),
    ("requirement", "GENERAL"), ("hitl_message", None), ("max_wait_seconds", None),
    ("retries", None), ("timeout", None))


def _not_brought(tried: list[Path]) -> str:
    """Why a script that a running job names is not on its worker, and what to do (a job
    that submits the script beside its own, as it did on the submitter's machine, got only
    "not found (tried: .../titan_workspace/shared/step.py)"); "" outside a job, or when a
    place tried is outside the job's workspace and project (a path of the user's own)."""
    workspace, project = os.environ.get("TITAN_WORKSPACE"), os.environ.get("TITAN_PROJECT_DIR")
    if not workspace or not os.environ.get("TITAN_JOB_ID"):
        return ""
    roots = [Path(p).resolve() for p in (workspace, project) if p]
    if not all(any(p.resolve().is_relative_to(r) for r in roots) for p in tried):
        return ""
    if project:
        return (f": this job runs from an uploaded project ({project}), which brings the files "
                "its folder held when it was uploaded, and this one was not among them; add it "
                "to the folder and upload it again, or name it by its absolute path on this "
                "machine")
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "main.py"
    return (": this job runs a plain script, and only its own script travels to the worker, "
            "not the files beside it on the machine it was submitted from. Upload that folder "
            "as a project (client.upload_project_folder(folder, 'NAME'), or `titan files "
            f"upload FOLDER --name NAME`) and submit this job as TitanJob(filename='NAME/{argv0}', "
            "is_archive=True): the folder's files then travel with it and are found beside "
            "it. Or name a file by its absolute path on this machine")
