"""Moving bytes: job scripts as content-addressed blobs, files, project folders, artifacts.

A mixin of :class:`~titan.client.TitanClient`. Scripts are named by their sha256: the client
asks the master which of a submission's hashes it lacks (``POST /blobs/missing``) and uploads
only those, once per client, so an unchanged script is never sent twice. Uploads stream from
disk with a ``Content-Length``; downloads stream to a temp file renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote

import httpx

from titan.client import replay_keys
from titan.client.containment import folder_files
from titan.client.download_file import check_sha256, expected_sha256
from titan.client.job import TitanJob, file_kind
from titan.client.transport import CHUNK, Transport
from titan.errors import (
    LocalFileNotFound,
    LocalPathIsFolder,
    PayloadTooLarge,
    ScriptNotFound,
    ValidationFailed,
)
from titan.url_paths import quote_ref

#: Directories left out of an uploaded project folder.
SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache",
                       ".ruff_cache", ".titan", ".venv", "titan_workspace"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


#: How programs start: a #! line, ELF (Linux), Mach-O (macOS, 32/64-bit, universal).
_PROGRAMS = (b"#!", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")


def starts_as_program(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` begins as a program does (a ``#!`` line, an ELF or Mach-O
    binary): ``titan submit`` runs such a file as one job rather than read it as a pipeline.
    False when it cannot be read (what reads it next says why)."""
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError:
        return False
    return head.startswith(_PROGRAMS)


def _check_runnable(job: TitanJob, path: Path, data: bytes) -> None:
    """A worker runs a ``.py`` (or any file with ``runner="fork"``) with Python, a ``.sh``
    with the shell, anything else as a program: a data file was submitted and its job failed on the worker with "Exec format
    error"; it is refused here, naming what would run."""
    if path.suffix in (".py", ".sh") or job.runner == "fork" or os.access(path, os.X_OK) \
            or data.startswith(_PROGRAMS):
        return
    raise ValidationFailed(
        f"job {job.job_id!r}: {job.filename!r} is not something a worker can run: a .py "
        "or .sh script, or a program (executable, or starting with #!, or compiled)",
        details={"job_id": job.job_id, "field": "filename"})


def _local_file(path: str | os.PathLike[str], what: str) -> Path:
    file = Path(os.path.expanduser(os.fspath(path)))
    if file.is_dir():
        raise LocalPathIsFolder(f"{what} {os.fspath(path)!r} is a folder, not a file "
                                f"({file.absolute()}); upload_project_folder takes a folder",
                                path=os.fspath(path))
    if file.exists() and not file.is_file():  # a device, a FIFO, a socket: there, not "not found"
        raise ScriptNotFound(f"{what} {os.fspath(path)!r} is not a regular file "
                             f"({file.absolute()}: {file_kind(file)}); a file is uploaded")
    if not file.is_file():
        raise LocalFileNotFound(f"{what} {os.fspath(path)!r} not found (looked at "
                                f"{file.absolute()})", path=os.fspath(path))
    return file


def _project_zip(filename: str) -> str:
    """The upload an archive job's ``<project>/<entry.py>`` runs from, as the master names
    it."""
    return PurePosixPath(filename.replace("\\", "/")).parts[0] + ".zip"


def _project_name(project: str) -> str:
    """A project as archive jobs name it, the first part of ``<project>/<entry.py>``: ``..``
    was uploaded as ``...zip``, which no job can name (a job's filename holds no ``..``)."""
    if project in ("", ".", "..") or any(c in project for c in "/\\\x00") \
            or re.match(r"[A-Za-z]:", project):
        raise ValidationFailed(
            f"invalid project name {project!r}: archive jobs name it in "
            "'<project>/<entry.py>', so it may not be empty, '.' or '..', hold '/', '\\' or "
            "NUL, or begin with a drive letter ('C:')",
            details={"field": "project_name"})
    return project


def _upload_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValidationFailed(f"invalid file name {name!r}", details={"field": "name"})
    return name


class FileOps:
    """Blobs, files and artifacts."""

    _transport: Transport
    _uploaded: set[str]
    #: ``<project>.zip`` → the sha256 of this client's latest upload of it.
    _projects: dict[str, str]
    _uploaded_lock: threading.Lock

    # ------------------------------------------------------------------ job scripts

    def _script_blobs(self, jobs: Iterable[TitanJob],
                      deadline: float | None = None) -> dict[str, str | None]:
        """Upload the scripts the master lacks; ``{job_id: sha256 or None}`` (an archive
        job's: the upload of its project this client made, else None; a gate's: None).
        ``deadline``: a waiting submission's, past which a master away is not waited for."""
        shas: dict[str, str | None] = {}
        contents: dict[str, bytes] = {}
        # Looked up and read once per script, not per job: a 10,000-job DAG of one script
        # would otherwise stat and hash it 10,000 times (a fifth of a second).
        by_source: dict[tuple[str, str | None], str] = {}
        for job in jobs:
            if job.is_archive:
                # The project this client uploaded (upload_project_folder), pinned: another
                # upload under its name since (anyone's) does not change what the job runs.
                # None: the master pins its latest upload.
                with self._uploaded_lock:
                    shas[job.job_id] = self._projects.get(_project_zip(job.filename))
                continue
            if job.is_gate:
                shas[job.job_id] = None
                continue
            source = (job.filename, None if job.base_dir is None else str(job.base_dir))
            sha = by_source.get(source)
            if sha is None:
                # Read once into memory (scripts are small): the bytes hashed are the bytes
                # sent, even if the file changes meanwhile.
                path = job.script_path()
                data = path.read_bytes()
                _check_runnable(job, path, data)
                sha = by_source[source] = hashlib.sha256(data).hexdigest()
                contents.setdefault(sha, data)
            shas[job.job_id] = sha
        self._upload_missing(contents, deadline)
        return shas

    def upload_blobs(self, bodies: Iterable[bytes]) -> list[str]:
        """Store each body as a content-addressed blob (a job's ``script_sha256``), uploading
        only those the master lacks; their sha256 names, in order."""
        shas = []
        contents: dict[str, bytes] = {}
        for body in bodies:
            if not isinstance(body, bytes):
                raise ValidationFailed(f"blobs are bytes, got {type(body).__name__}",
                                       details={"field": "bodies"})
            sha = hashlib.sha256(body).hexdigest()
            contents.setdefault(sha, body)
            shas.append(sha)
        self._upload_missing(contents)
        return shas

    def _forget_uploaded(self, sha: Any) -> bool:
        """Forget that ``sha`` was uploaded (the master refused it as missing: collected as
        unused since); whether this client had taken it for uploaded."""
        with self._uploaded_lock:
            if sha not in self._uploaded:
                return False
            self._uploaded.discard(sha)
            return True

    def _upload_missing(self, contents: dict[str, bytes],
                        deadline: float | None = None) -> None:
        """Upload the bodies (by sha256) the master lacks: one question, then one PUT each."""
        with self._uploaded_lock:
            unknown = [sha for sha in contents if sha not in self._uploaded]
        if unknown:
            # A read sent as POST (its list can be long): marked safe to send again, so a
            # 503 while the database is away is ridden out as a GET's would be.
            reply = self._transport.call("POST", "/blobs/missing", json={"sha256": unknown},
                                         idempotency_key=True, deadline=deadline)
            missing = set(reply.get("missing", []))
            for sha in unknown:
                if sha in missing:
                    self._transport.call("PUT", f"/blobs/{sha}", body=contents[sha],
                                         deadline=deadline)
            with self._uploaded_lock:
                self._uploaded.update(unknown)

    # ------------------------------------------------------------------ files

    def upload_file(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Upload a file under its basename (``PUT /files/{name}``); the file object."""
        file = _local_file(path, "file")
        name = _upload_name(file.name)
        reply: dict[str, Any] = self._transport.call("PUT", f"/files/{quote_ref(name)}",
                                                     body=file)
        return reply

    def upload_project_folder(
        self, folder: str | os.PathLike[str], project_name: str | None = None
    ) -> dict[str, Any]:
        """Zip ``folder`` (without caches and VCS dirs) and upload it as
        ``<project_name>.zip``, for archive jobs ``filename="<project_name>/<entry.py>"``.

        Entries are relative to ``folder`` itself. A symlink is sent as what it names while
        that lies inside ``folder``; one pointing outside is refused
        (:class:`ValidationFailed`), as in a pipeline. Returns the file object. This client's
        archive jobs of that project then run this upload (its sha256 is sent as their
        ``script_sha256``), whatever is uploaded under the name after it.
        """
        root = Path(os.path.expanduser(os.fspath(folder)))
        if root.is_file():
            raise ScriptNotFound(f"project folder {os.fspath(folder)!r} is a file, not a "
                                 f"folder ({root.absolute()}); upload_file takes a file")
        if not root.is_dir():
            raise LocalFileNotFound(f"project folder {os.fspath(folder)!r} not found "
                                    f"(looked at {root.absolute()})", path=os.fspath(folder))
        name = _upload_name(f"{_project_name(project_name or root.resolve().name)}.zip")
        with tempfile.TemporaryDirectory(prefix="titan-upload-") as tmp:
            archive = Path(tmp) / name
            with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for entry, full in folder_files(root, SKIP_DIRS, _SKIP_SUFFIXES):
                    zf.write(full, entry)
            reply: dict[str, Any] = self._transport.call(
                "PUT", f"/files/{quote_ref(name)}", body=archive
            )
        if isinstance(reply.get("sha256"), str):
            with self._uploaded_lock:
                self._projects[name] = reply["sha256"]
        return reply

    def fetch_artifact(
        self, name: str, save_path: str | os.PathLike[str] | BinaryIO | None = None
    ) -> str:
        """Download the latest file called ``name`` to ``save_path`` (default: ``./name``; a
        directory, or a path ending in a slash, made if missing: inside it). Returns the path
        written. ``save_path`` may be a binary stream open for writing (``sys.stdout.buffer``)
        instead: the bytes are written to it as they arrive, and checked once all have come
        (:class:`DownloadCorrupt` after them); the stream's ``name`` is returned."""
        _upload_name(name)
        if save_path is not None and not isinstance(save_path, str | os.PathLike):
            stream = save_path
            self._transport.download(f"/files/{quote_ref(name)}", lambda headers: stream)
            return str(getattr(stream, "name", "the stream"))
        path = save_path
        dest = self._transport.download(
            f"/files/{quote_ref(name)}", lambda headers: _destination(path, name)
        )
        return str(dest)

    def delete_file(self, name: str, keep_latest: bool = False) -> dict[str, Any]:
        """Delete every version of the file called ``name`` (``keep_latest``: all but the
        newest): uploads, project archives, and artifacts published under that name whatever
        their key. What went: ``deleted`` (versions), ``bytes``, ``kept``, ``ids``, and
        ``store`` (store values moved on with them: a key whose newest artifact went). An
        operator or admin token; :class:`NotFound` when no file has that name,
        :class:`Conflict` while an archive job yet to end runs from it."""
        _upload_name(name)
        reply: dict[str, Any] = self._transport.call(
            "DELETE", f"/files/{quote_ref(name)}", params=_keep(keep_latest),
            idempotency_key=True)
        return reply

    # ------------------------------------------------------------------ artifacts

    def publish_artifact(self, key: str, filename: str | os.PathLike[str]) -> dict[str, Any]:
        """Upload ``filename`` and bind it under the store key ``key`` (whose value becomes
        the file's basename). Returns the file object."""
        file = _local_file(filename, "artifact")
        name = _upload_name(file.name)
        reply: dict[str, Any] = self._transport.call(
            "POST", "/artifacts", params={"key": replay_keys.rename(key), "name": name},
            body=file,
            idempotency_key=True,
        )
        return reply

    def get_artifact(self, key: str, save_path: str | os.PathLike[str] | None = None) -> str:
        """Download the artifact published under ``key`` to ``save_path`` (default: its
        published name in the current directory; a directory, or a path ending in a slash,
        made if missing: inside it). Returns the path."""

        def dest(headers: Any) -> Path:
            # Percent-encoded UTF-8: a header cannot carry every name as it is.
            published = os.path.basename(unquote(headers.get("X-Titan-Filename") or ""))
            if published in ("", ".", ".."):
                published = "artifact"
            return _destination(save_path, published)

        return str(self._transport.download("/artifacts", dest,
                                            params={"key": replay_keys.rename(key)}))

    def delete_artifact(self, key: str, keep_latest: bool = False) -> dict[str, Any]:
        """Delete the files published under ``key`` (``keep_latest``: all but the newest),
        and the key's store value when it still names the newest of them
        (``value_deleted``); otherwise as :meth:`delete_file`. :class:`NotFound` when nothing
        was published under ``key``."""
        reply: dict[str, Any] = self._transport.call(
            "DELETE", "/artifacts",
            params={"key": replay_keys.rename(key), **(_keep(keep_latest) or {})},
            idempotency_key=True)
        return reply

    def read_artifact(self, key: str, max_bytes: int | None = None) -> tuple[str, bytes]:
        """The artifact published under ``key``, in memory: ``(its published name, its
        bytes)``. One larger than ``max_bytes`` is refused (:class:`PayloadTooLarge`) without
        reading past the limit."""

        def too_large(limit: int) -> PayloadTooLarge:
            return PayloadTooLarge(f"artifact {key!r} is larger than {limit:,} bytes: download "
                                   "it to a file with get_artifact()", details={"limit": limit})

        def read(response: httpx.Response) -> tuple[str, bytes]:
            declared = response.headers.get("Content-Length")
            if max_bytes is not None and declared is not None and int(declared) > max_bytes:
                raise too_large(max_bytes)
            data = bytearray()  # a body that broke off is dropped, and read again whole
            for chunk in response.iter_bytes(CHUNK):
                data += chunk
                if max_bytes is not None and len(data) > max_bytes:
                    raise too_large(max_bytes)
            check_sha256(expected_sha256(response), hashlib.sha256(data).hexdigest(),
                         f"artifact {key!r}", "nothing was returned")
            name = os.path.basename(unquote(response.headers.get("X-Titan-Filename") or ""))
            return name or "artifact", bytes(data)

        return self._transport.fetch("/artifacts", read,
                                     params={"key": replay_keys.rename(key)})


def _keep(keep_latest: bool) -> dict[str, str] | None:
    return {"keep_latest": "true"} if keep_latest else None


def _destination(save_path: str | os.PathLike[str] | None, name: str) -> Path:
    """Where a download of the file published as ``name`` goes: ``save_path`` itself, or
    ``name`` inside it when it is a folder, or when it ends in a slash (a folder, made if it
    does not exist yet: ``pathlib`` drops the slash, which wrote a file named ``downloads``
    for ``save_path="downloads/"``)."""
    if save_path is None:
        return Path.cwd() / name
    raw = os.path.expanduser(os.fspath(save_path))
    path = Path(raw)
    if path.is_dir():
        return (path / name).absolute()
    if raw.endswith(os.sep) or (os.altsep is not None and raw.endswith(os.altsep)):
        if path.exists():
            raise ValidationFailed(
                f"save_path {os.fspath(save_path)!r} ends in a slash, which names a folder, "
                f"but {path.absolute()} is a file: leave the slash out to replace that file",
                details={"field": "save_path"})
        return (path / name).absolute()
    return path.absolute()
