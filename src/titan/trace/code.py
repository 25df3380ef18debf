"""The code a run can be replayed from: its driver script, the driver's arguments, and files.

Titan holds the agent's code, so a replay re-executes it rather than re-reading a log. The
process that drives a run from outside (the orchestrator calling ``submit_dag(...,
agent_run_id=...)``, or a script inside ``titan.trace.run(...)``) reports, once per run:
its ``__main__`` script with ``sys.argv[1:]`` and working directory, the local modules it
imported from its own directory, and every job script it submitted — each file by absolute
path and sha256, the bytes uploaded to the master's blob store the way job scripts are (only
those the master lacks). The master keeps this manifest on the run (``PUT /runs/{id}/code``);
a replay lays the files out again in the same relative layout and runs the driver.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from titan.url_paths import quote_ref

log = logging.getLogger("titan.trace")
MAX_FILES = 200
MAX_FILE_BYTES = 5 * 1024 * 1024

_driver: tuple[dict[str, Any], dict[str, bytes]] | None = None
_sent: set[tuple[str, str, str]] = set()  # (run, path, sha) reported by this process
_warned = False


def _library_dirs() -> list[str]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(path)
    return [os.path.realpath(d) + os.sep for d in dirs]


def driver_code() -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """This process's driver manifest and file bytes (by sha), or None when ``__main__`` is
    not a script file (``python -c``, a REPL, a notebook)."""
    global _driver
    if _driver is not None:
        return _driver
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if not main or not os.path.isfile(main):
        return None
    main = os.path.realpath(main)
    home = os.path.dirname(main) + os.sep
    libraries = _library_dirs()
    paths = [main]
    for module in list(sys.modules.values()):
        f = getattr(module, "__file__", None)
        if not f or not f.endswith(".py"):
            continue
        f = os.path.realpath(f)
        # The driver's own modules: beside it or below, not an installed library.
        if f.startswith(home) and f != main and not any(f.startswith(d) for d in libraries) \
                and "site-packages" not in f:
            paths.append(f)
    files: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    for path in sorted(set(paths), key=lambda p: (p != main, p))[:MAX_FILES]:
        data = _read(path)
        if data is not None:
            sha = hashlib.sha256(data).hexdigest()
            files[path], blobs[sha] = sha, data
    manifest = {"driver": {"path": main, "args": list(sys.argv[1:]), "cwd": os.getcwd()},
                "files": files}
    _driver = (manifest, blobs)
    return _driver


def _read(path: str) -> bytes | None:
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return None
        return Path(path).read_bytes()
    except OSError:
        return None


def register(transport: Any, run_id: str, scripts: dict[str, str] | None = None,
             found: tuple[dict[str, Any], dict[str, bytes]] | None = None) -> None:
    """Tell the master what code run ``run_id`` is made of: this process's driver files (or
    ``found``, read earlier by :func:`driver_code`) and ``scripts`` ({absolute path: sha256}
    of job scripts, already uploaded). Never raises: a run that cannot report its code still
    runs, it just cannot be replayed."""
    try:
        body = prepared(transport, run_id, scripts, found)
        if body is not None:
            transport.call("PUT", f"/runs/{quote_ref(run_id)}/code", json=body)
    except Exception as exc:  # the run goes on; only its replay is lost
        unsent(run_id, exc)
        return
    if body is not None:
        sent(run_id, body)


def prepared(transport: Any, run_id: str, scripts: dict[str, str] | None = None,
             found: tuple[dict[str, Any], dict[str, bytes]] | None = None) -> dict[str, Any] | None:
    """The body of ``PUT /runs/{id}/code`` for what the master was not yet told (None:
    nothing, or a replay), its files' bytes uploaded (raises when that fails). The recorder
    sends it within a batch of several runs' recording; :func:`sent` once acknowledged."""
    if os.environ.get("TITAN_REPLAY"):
        return None  # a replay's code is the one the replay was started with
    found = found or driver_code()
    files: dict[str, str] = dict(found[0]["files"]) if found else {}
    files.update(scripts or {})
    fresh = {p: s for p, s in files.items() if (run_id, p, s) not in _sent}
    if not fresh:
        return None
    body: dict[str, Any] = {"files": fresh}
    if found is not None and found[0]["driver"]["path"] in fresh:
        body["driver"] = found[0]["driver"]  # with its file: the master checks they go together
        if found[0].get("block"):  # which `titan.trace.run` block of the script it was
            body["block"] = found[0]["block"]
    if found is not None:
        _upload(transport, found[1])
    return body


def sent(run_id: str, body: dict[str, Any]) -> None:
    _sent.update((run_id, p, s) for p, s in body["files"].items())


def unsent(run_id: str, exc: BaseException) -> None:
    """Say (once a process) that a run's code could not be recorded."""
    global _warned
    if not _warned:
        _warned = True
        sys.stderr.write(f"[titan.trace] could not record run {run_id}'s code; it will "
                         f"not be replayable: {exc}\n")


def _upload(transport: Any, blobs: dict[str, bytes]) -> None:
    shas = [s for s in blobs if ("", "", s) not in _sent]
    if not shas:
        return
    missing = set(transport.call("POST", "/blobs/missing", json={"sha256": shas})
                  .get("missing", []))
    for sha in shas:
        if sha in missing:
            transport.call("PUT", f"/blobs/{sha}", body=blobs[sha])
        _sent.add(("", "", sha))
