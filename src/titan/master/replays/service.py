"""Replays on the master: a run's recorded code, starting a replay, and what the jobs need.

A replay is a new agent run (``replay_of`` the original) whose first stage, ``DRIVER``, is one
job running :mod:`titan.trace.replay_driver`: it lays out the original's driver script and
files (the recorded versions, or the current ones ``titan replay --code current`` uploaded)
and runs the driver with its recorded arguments. Every stage the driver submits joins the
replay's run, and the master gives each of their jobs ``TITAN_REPLAY`` — the replay's settings
— so its intercepted calls are answered from the recording (:mod:`titan.trace.replay`). The
comparison of the two runs is :mod:`titan.master.replays.report`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import titan
from titan.errors import Conflict, PayloadTooLarge, ValidationFailed
from titan.formats import run_id_problem
from titan.master.auth.tokens import Principal
from titan.master.runs.compliance import started_by
from titan.master.runs.events import run_summary
from titan.master.runs.ledger import verify_run
from titan.master.runs.lookup import run_or_404
from titan.master.scheduling.refs import as_id
from titan.master.scheduling.validation import unknown_field, validate_dag
from titan.storage.base import Row, RunQuery, Transaction
from titan.storage.blobs import BlobStore
from titan.trace.canonical import dumps
from titan.trace.naming import DRIVER_JOB, DRIVER_STAGE

if TYPE_CHECKING:
    from titan.master.runs.service import RunService
    from titan.master.scheduling.engine import Engine

DRIVER_SCRIPT = Path(titan.__file__).resolve().parent / "trace" / "replay_driver.py"
MODES = ("strict", "lenient")
CODES = ("recorded", "current")
MAX_CODE_FILES = 500
MAX_OVERRIDE_BYTES = 1 << 20
#: The run blocks of one process its first run lists (see :func:`register_block`).
MAX_BLOCKS = 1000
_SHA = re.compile(r"^[0-9a-f]{64}\Z")


def not_available(why: str) -> Conflict:
    return Conflict(f"Replay not available: {why}", code="replay_not_available")


def parse_settings(body: Any) -> Row:
    """Check a ``POST /runs/{id}/replay`` body; the settings with defaults filled."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    known = {"mode", "code", "files", "fork_at", "overrides", "model", "allow_live", "verify"}
    unknown = set(body) - known
    if unknown:
        raise ValidationFailed(f"unknown field {sorted(unknown)[0]!r} (known: "
                               f"{', '.join(sorted(known))})", details={"field": sorted(unknown)[0]})
    mode = body.get("mode") or "strict"
    if mode not in MODES:
        raise ValidationFailed(f"mode must be strict or lenient, got {mode!r}",
                               details={"field": "mode"})
    code = str(body.get("code") or "recorded").lower()
    if code not in CODES:
        raise ValidationFailed(f"code must be recorded or current, got {code!r}",
                               details={"field": "code"})
    files = body.get("files")
    if code == "current":
        if not isinstance(files, dict) or not files:
            raise ValidationFailed(
                "code=current needs the current files ({path: sha256}, uploaded first); "
                "`titan replay RUN --code current` uploads them from your working tree",
                details={"field": "files"})
        # Laid out by the replay's driver job below its workspace by these paths: each one
        # checked as a run's recorded code is (a "../" would write outside it).
        _check_files(files)
    elif files is not None:
        raise ValidationFailed("files is only for code=current", details={"field": "files"})
    fork = body.get("fork_at")
    if fork is not None and (not isinstance(fork, int) or isinstance(fork, bool) or fork < 1):
        raise ValidationFailed("fork_at must be an action's seq (1 or more)",
                               details={"field": "fork_at"})
    overrides = body.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ValidationFailed("overrides must be {seq: the output to use instead}",
                               details={"field": "overrides"})
    parsed: dict[int, Any] = {}
    for seq, value in overrides.items():
        number = as_id(str(seq))
        if number is None or number < 1:
            raise ValidationFailed(f"overrides key {seq!r} must be an action's seq",
                                   details={"field": "overrides"})
        if len(dumps(value)) > MAX_OVERRIDE_BYTES:
            raise PayloadTooLarge(f"the override of step {seq} is larger than 1 MiB")
        parsed[number] = value
    if parsed and fork is None:
        fork = min(parsed)  # an override is a fork at the step it replaces
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()
                              or len(model) > 200):
        raise ValidationFailed("model must be a model name", details={"field": "model"})
    if model and fork is None:
        raise ValidationFailed("model applies to the live part of a fork: give fork_at too",
                               details={"field": "model"})
    for flag in ("allow_live", "verify"):
        if not isinstance(body.get(flag, False), bool):
            raise ValidationFailed(f"{flag} must be true or false", details={"field": flag})
    return {"mode": mode, "code": code, "files": files if code == "current" else None,
            "fork_at": fork, "overrides": parsed, "model": model,
            "allow_live": bool(body.get("allow_live")), "verify": bool(body.get("verify"))}


_CODE_FIELDS = frozenset({"driver", "files", "block"})
_DRIVER_FIELDS = frozenset({"path", "args", "cwd"})
_BLOCK_FIELDS = frozenset({"first", "agent", "n", "process"})


def parse_code(body: Any) -> Row:
    """Check a ``PUT /runs/{id}/code`` body: ``{"driver": {path, args, cwd}, "files":
    {absolute path: sha256}, "block"?: {first, agent, n}}``: ``block`` says which
    ``titan.trace.run`` block of its process the run was, the ``n``-th of agent ``agent``,
    and the process's first run, which lists them all (a replay matches the blocks of the
    re-run script to these)."""
    if not isinstance(body, dict) or not isinstance(body.get("files"), dict):
        raise ValidationFailed('the body must be {"driver": {...}, "files": {path: sha256}}')
    # A misspelt "drvier" or "procss" was dropped: the run recorded no driver, and its replay
    # failed long after, saying nothing of the request that lost it.
    for where, given, known in (("", body, _CODE_FIELDS),
                                ("driver.", body.get("driver"), _DRIVER_FIELDS),
                                ("block.", body.get("block"), _BLOCK_FIELDS)):
        unknown = unknown_field(given, known) if isinstance(given, dict) else None
        if unknown is not None:
            raise ValidationFailed(f"{where}{unknown[1]}",
                                   details={"field": f"{where}{unknown[0]}"})
    files = body["files"]
    _check_files(files)
    driver = body.get("driver")
    if driver is not None:
        ok = (isinstance(driver, dict) and isinstance(driver.get("path"), str)
              and driver["path"] in files and isinstance(driver.get("cwd"), str)
              and driver["cwd"].startswith("/") and isinstance(driver.get("args", []), list)
              and all(isinstance(a, str) for a in driver.get("args", [])))
        if not ok:
            raise ValidationFailed("driver must be {path (one of files), args: [str], cwd}",
                                   details={"field": "driver"})
        driver = {"path": driver["path"], "args": list(driver.get("args", [])),
                  "cwd": driver["cwd"]}
    block = body.get("block")
    if block is not None:
        ok = (isinstance(block, dict) and isinstance(block.get("first"), str)
              and run_id_problem(block["first"]) is None
              and isinstance(block.get("agent"), str) and 0 < len(block["agent"]) <= 200
              and type(block.get("n")) is int and block["n"] >= 0
              and (block.get("process") is None or isinstance(block["process"], str)
                   and 0 < len(block["process"]) <= 64))
        if not ok:
            raise ValidationFailed("block must be {first: a run id, agent: the agent id, n: "
                                   "0 or more, process?: an id of at most 64 characters}",
                                   details={"field": "block"})
        block = {"first": block["first"], "agent": block["agent"], "n": block["n"],
                 **({"process": block["process"]} if block.get("process") else {})}
    return {"driver": driver, "files": dict(files), "block": block}


def register_block(tx: Transaction, run_id: str, block: Row, code: Row) -> None:
    """Run ``run_id`` was the ``block["n"]``-th ``titan.trace.run`` block of agent
    ``block["agent"]`` its process opened: listed in the code of the process's first run
    (``code`` when that is this one), ``blocks: [[agent, n, run id], ...]``, in the order they
    opened. A replay of any one of them re-runs the whole script, and answers the other
    blocks' calls from their own recordings (:mod:`titan.trace.runs`). A first run whose
    own block names another ``process`` is another execution's: never edited."""
    entry = [block["agent"], block["n"], run_id]
    first = code if block["first"] == run_id else None
    if first is None:
        found = tx.get_run(block["first"])
        if found is None:
            return
        first = dict(found.get("code") or {})
        theirs = (first.get("block") or {}).get("process")
        if theirs and block.get("process") and theirs != block["process"]:
            return  # another process's run (another execution's): its recording is its own
    blocks = list(first.get("blocks") or [])
    if entry in blocks or len(blocks) >= MAX_BLOCKS:
        return
    first["blocks"] = [*blocks, entry]
    if block["first"] != run_id:
        tx.update_run(block["first"], {"code": first})


def _check_files(files: dict[str, Any]) -> None:
    """``{absolute path: sha256}``, at most MAX_CODE_FILES of them."""
    if len(files) > MAX_CODE_FILES:
        raise ValidationFailed(f"a run's code is at most {MAX_CODE_FILES} files",
                               details={"field": "files"})
    for path, sha in files.items():
        if not path.startswith("/") or len(path) > 1000 or "\x00" in path or ".." in \
                path.split("/"):
            raise ValidationFailed(f"files: {path!r} must be an absolute path",
                                   details={"field": "files"})
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise ValidationFailed(f"files[{path!r}] must be a sha256", details={"field": "files"})


def job_settings(run: Row) -> Row:
    """What a replay's jobs get as ``TITAN_REPLAY``."""
    s = run.get("replay") or {}
    # "run": the replay's own id, where a process of it records what it does outside any run
    # (titan.trace.context.outside_run), whatever the script made of TITAN_AGENT_RUN_ID.
    return {"of": run["replay_of"], "run": run["id"], "mode": s.get("mode", "strict"),
            "fork_at": s.get("fork_at"),
            "overrides": s.get("overrides") or {}, "model": s.get("model"),
            "allow_live": bool(s.get("allow_live")), "verify": bool(s.get("verify")),
            "aliases": s.get("aliases") or []}


class Replays:
    def __init__(self, engine: Engine, blobs: BlobStore, runs: RunService) -> None:
        self.engine, self.blobs, self.runs = engine, blobs, runs
        self.active: dict[str, Row] = {}  # replay run id -> its run row (for job settings)
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        def q(tx: Transaction) -> list[Row]:
            return [r for r in tx.iter_runs(RunQuery(statuses=("running",))) if r["replay_of"]]
        for run in await self.engine.read(q):
            self.active[run["id"]] = run

    # -- the code of a run --------------------------------------------------------------------
    async def set_code(self, run_id: str, body: Any, who: Principal) -> Row:
        await self.runs.check_may_drive(run_id, who)
        code = parse_code(body)
        block = code["block"]
        if block is not None and block["first"] != run_id:
            await self.runs.check_may_drive(block["first"], who)
        shas = set(code["files"].values())

        def op(tx: Transaction) -> Row:
            run = run_or_404(tx, run_id)
            # Used now, in the transaction that names them (garbage collection: see
            # engine_submission.use_scripts).
            missing = shas - tx.use_blobs(shas, time.time())
            if missing:
                raise ValidationFailed(f"blob {sorted(missing)[0][:12]}… was not uploaded "
                                       "(PUT /api/v1/blobs/{sha256} first)",
                                       details={"field": "files"})
            have = run.get("code") or {}
            merged = {**have, "driver": have.get("driver") or code["driver"],
                      "files": {**(have.get("files") or {}), **code["files"]}}
            if block is not None and not have.get("block"):
                merged["block"] = block
                register_block(tx, run_id, block, merged)
            tx.update_run(run_id, {"code": merged})
            return merged

        return {"run_id": run_id, "code": await self.engine.run(op)}

    # -- starting one -------------------------------------------------------------------------
    async def start(self, run_id: str, body: Any, who: Principal) -> Row:
        settings = parse_settings(body)
        await self._check_recording(run_id)
        loop = asyncio.get_running_loop()
        overrides: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for seq, value in settings["overrides"].items():
            data = dumps(value).encode()
            overrides[str(seq)] = await loop.run_in_executor(None, self.blobs.write_bytes, data)
            sizes[overrides[str(seq)]] = len(data)
        script = DRIVER_SCRIPT.read_bytes()
        script_sha = await loop.run_in_executor(None, self.blobs.write_bytes, script)
        sizes[script_sha] = len(script)
        now = time.time()
        replay_id = f"{run_id[:180]}-replay-{secrets.token_hex(3)}"

        def op(tx: Transaction) -> Row:
            orig = run_or_404(tx, run_id)
            if orig["status"] == "running":
                raise not_available(f"run {run_id} is still running; replay it once it has "
                                    "ended (the recording must be complete)")
            code = orig.get("code") or {}
            if not code.get("driver"):
                raise not_available(
                    f"run {run_id} has no recorded code to re-execute. Titan records a run's "
                    "code when a Python script drives it (submit_dag(..., agent_run_id=...) or "
                    "titan.trace.run(...)); runs recorded otherwise — over the HTTP API, by "
                    "OTLP, or by an evaluation, whose agent the evaluation drives — can be "
                    "inspected, exported and re-run (`titan eval rerun`), not replayed")
            files = dict(code["files"])
            if settings["files"]:
                files.update(settings["files"])
            wanted = set(files.values())
            missing = wanted - tx.use_blobs(wanted, now)
            if missing:
                raise not_available(f"a file of its code ({sorted(missing)[0][:12]}…) is "
                                    "no longer on the master")
            for seq in settings["overrides"]:
                if tx.get_action(run_id, seq) is None:
                    raise ValidationFailed(f"run {run_id} has no step {seq} to override",
                                           details={"field": "overrides"})
            if settings["fork_at"] is not None and settings["fork_at"] > orig["action_count"]:
                raise ValidationFailed(f"fork_at {settings['fork_at']} is past the run's last "
                                       f"step ({orig['action_count']})",
                                       details={"field": "fork_at"})
            for sha, size in sizes.items():
                tx.add_blob(sha, size, now)
            replayed = {"driver": code["driver"], "files": files}
            block = code.get("block")
            if block:
                # Which block of its script the run was, and the others': the replay re-runs
                # them all, and answers theirs from their own recordings.
                first = code if block["first"] == run_id else (
                    tx.get_run(block["first"]) or {}).get("code") or {}
                replayed.update(block=block, blocks=first.get("blocks") or [])
            stored = {k: v for k, v in settings.items() if k != "files"}
            stored.update(overrides=overrides, aliases=[], started_by=who.name or who.role)
            row = {"id": replay_id, "created_at": now, "started_at": now, "status": "running",
                   "agent_id": orig["agent_id"], "agent_version": orig["agent_version"],
                   "tags": orig["tags"], "replay_of": run_id, "replay": stored,
                   "code": replayed,
                   # It serves the original's recording: it is kept as long.
                   "retention_class": orig["retention_class"],
                   "started_by": started_by(who, self.engine.sched)}
            tx.create_run(row)
            found = tx.get_run(replay_id)
            assert found is not None
            return found

        run = await self.engine.run(op)
        self.active[replay_id] = run
        self.engine.hub.publish("run_created", run_summary(run))
        # Its job's actor is DRIVER_ACTOR, the one the original's driver recorded its calls as.
        stage = f"{replay_id}_{DRIVER_STAGE}"
        _, specs = validate_dag(stage, [{
            "job_id": DRIVER_JOB, "filename": "titan_replay.py", "script_sha256": script_sha,
            "retries": 0, "env": {"TITAN_REPLAY": json.dumps(job_settings(run))},
        }], max_jobs=1)
        self.engine.blob_holds.known.add(script_sha)
        await self.engine.submit_dag(stage, specs, replay_id, run["agent_id"])
        return {"run_id": replay_id, "replay_of": run_id, "status": "running",
                "settings": job_settings(run) | {"code": settings["code"]}}

    async def _check_recording(self, run_id: str) -> None:
        """Refuse to replay a recording that does not verify (an action edited, deleted,
        inserted or reordered in the database since it was recorded, a payload changed in
        the blob store): the replay would serve what was changed as what the run did, and
        report a clean match. Walked whole, as ``titan runs verify`` does; a run still
        recording is refused for that in the transaction that starts the replay."""
        def read(tx: Transaction) -> Row | None:
            run = run_or_404(tx, run_id)
            if run["status"] == "running":
                return None
            return verify_run(tx, run, blobs=self.blobs)

        verdict = await self.engine.read(read)
        if verdict is not None and verdict["status"] == "broken":
            raise not_available(
                f"run {run_id}'s recording does not verify: {verdict['message']}. A replay "
                "would serve what was changed as what the run did; `titan runs verify "
                f"{run_id}` says where its ledger breaks")

    # -- the replay's stages ------------------------------------------------------------------
    async def job_env(self, run_id: str, alias: str | None) -> dict[str, str] | None:
        """``TITAN_REPLAY`` for the jobs of a stage submitted to replay run ``run_id`` (None
        when it is not one); ``alias`` is the run id its driver used, kept on the run."""
        run = self.active.get(run_id)
        if run is None:
            return None
        async with self._lock:
            settings = run.get("replay") or {}
            aliases = settings.setdefault("aliases", [])
            if alias and alias not in aliases:
                aliases.append(alias)
                await self.engine.run(lambda tx: tx.update_run(run_id, {"replay": settings}))
        return {"TITAN_REPLAY": json.dumps(job_settings(run))}
