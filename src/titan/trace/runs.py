"""Opening an agent run from any Python process: ``with titan.trace.run(...) as run:``.

The run is announced to the master through the recorder's ordered stream (the caller does not
wait), its actions follow, and leaving the block ends its driver: the run ends ``failed`` with
the exception that left the block, else as its last stage ends (``failed`` if that stage did
not complete; a stage still running is waited for), ``completed`` when it has no stages. Inside a Titan job there is nothing to open: the job's actions
already belong to its agent run.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from titan.formats import run_id_for, run_id_problem, tags_problem
from titan.retention import retention_problem
from titan.trace import canonical, context, settings
from titan.trace.emit import _said
from titan.trace.naming import DRIVER_ACTOR
from titan.trace.recorder import RECORDER


def _script_version() -> str | None:
    """A hash of the main script, the code version of a run opened outside Titan."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    try:
        return hashlib.sha256(Path(main).read_bytes()).hexdigest()[:16] if main else None
    except OSError:
        return None


#: In a replay, how this process's ``with titan.trace.run(...)`` block ended (the body its
#: original sent to end the run); read by :mod:`titan.trace.replay_driver`.
replayed_end: dict[str, Any] | None = None

#: The ``titan.trace.run`` blocks this process opened: how many per agent id (the next one's
#: number), and the first one's id, in whose code the master lists them all. A replay of any
#: of them re-runs the whole script, and tells its blocks apart by these numbers.
_opened: dict[str, int] = {}
_first: str | None = None
_blocks_lock = threading.Lock()
#: In a replay's driver (:func:`replaying_blocks`): the original run replayed, the block it
#: was (agent id, number), and the run each block of the original process was; the pid they
#: hold for (a process forked from it opens blocks of its own).
_replayed: tuple[str, str, int] | None = None
_originals: dict[tuple[str, int], str] = {}
_originals_pid = 0


#: This process, in its blocks' code: the master lists a block in the first run's code only
#: if that run's process is the same (a first run that was another execution's is not edited).
_process = secrets.token_hex(8)


def _forget_blocks() -> None:
    global _first, _process
    _opened.clear()
    _first = None
    _process = secrets.token_hex(8)


os.register_at_fork(after_in_child=_forget_blocks)


def replaying_blocks(original: str, code: dict[str, Any]) -> None:
    """In a replay's driver: which block of the script the replayed run ``original`` was,
    and the others' runs (from the replayed code's ``block`` and ``blocks``). A run recorded
    before blocks were told apart has neither: every block of the script is then the
    replayed run, as before."""
    global _replayed, _originals, _originals_pid
    block = code.get("block")
    if not block:
        return
    _replayed = (original, block["agent"], int(block["n"]))
    _originals = {(agent, int(n)): run_id for agent, n, run_id in code.get("blocks") or ()}
    _originals_pid = os.getpid()


def _refused_in_original(run_id: str) -> None:
    """In a replay, a block naming a run that is neither the replayed one nor one of the
    original process's blocks, which has ended: the master refused it in the original (a
    run id names one execution), so it is refused again here, where the script's own
    fallback ran; nor counted, as it was not."""
    if _replayed is None or _originals_pid != os.getpid() or run_id == _replayed[0] \
            or run_id in _originals.values():
        return
    from titan import errors
    from titan.url_paths import quote_ref

    try:
        found = RECORDER.client().call("GET", f"/runs/{quote_ref(run_id)}")
    except errors.NotFound:
        return
    status = found.get("status") if isinstance(found, dict) else None
    if status not in (None, "running"):
        raise errors.Conflict(
            f"agent run {run_id} already ended {status}: a run id names one execution, and "
            "a run that has ended is not opened again (refused as in the original run)",
            code="run_ended", details={"id": run_id, "status": status})


def _original_block(agent_id: str, n: int, run_id: str | None) -> str | None:
    """In a replay, the run a block of the script was in the original: None when it is the
    replayed run (or nothing tells the blocks apart), else the other run's id ("" when the
    original opened no such block). By the id the block names, else by its agent id and
    number: the n-th block of that agent, as the original opened them."""
    if _replayed is None or _originals_pid != os.getpid():
        return None
    original, agent, number = _replayed
    if run_id is not None:
        if run_id == original:
            return None
        if run_id in _originals.values():
            return run_id
    if (agent_id, n) == (agent, number):
        return None
    return _originals.get((agent_id, n), "")


class Run:
    """An agent run opened here; ``id`` is known at once (made up locally)."""

    def __init__(self, *, agent_id: str, agent_version: str | None = None,
                 budget_usd: float | None = None, tags: Any = None,
                 run_id: str | None = None, retention_class: str | None = None) -> None:
        if not agent_id or not isinstance(agent_id, str):
            raise ValueError("agent_id is required: it groups the agent's runs on the Runs page")
        # Checked here, where the mistake is made: the master would refuse the run later, on
        # the sender thread, and every action after it (the script went on, its run lost).
        if len(agent_id) > 200:
            raise ValueError(f"agent_id is longer than 200 characters ({len(agent_id)})")
        problem = retention_problem(retention_class) if retention_class is not None else None
        if problem is not None:
            raise ValueError(problem)
        problem = run_id_problem(run_id) if run_id is not None else None
        if problem is not None:
            raise ValueError(f"run_id {problem}")
        problem = tags_problem(tags)
        if problem is not None:
            raise ValueError(f"tags {problem}")
        if agent_version is not None and (not isinstance(agent_version, str)
                                          or len(agent_version) > 200):
            raise ValueError("agent_version must be a string of at most 200 characters")
        for field, value in (("agent_id", agent_id), ("agent_version", agent_version),
                             ("tags", tags)):
            problem = _not_utf8(value)
            if problem is not None:
                raise ValueError(f"{field} {problem}")
        # Replayed, the block that was the replayed run is the replay's: opened and ended by
        # the replay itself. The script's other blocks (a sub-agent's run, the other items
        # of a batch) are what they were: their calls answered from their own recordings,
        # recorded nowhere.
        self.replaying = bool(os.environ.get("TITAN_REPLAY") and
                              os.environ.get("TITAN_AGENT_RUN_ID"))
        self._chosen = run_id is not None  # the caller named the run: see __enter__
        self.block = -1  # the n-th block of this agent id the process opened (see _count)
        shadow = None
        if self.replaying:
            if run_id is not None:
                _refused_in_original(run_id)
            shadow = _original_block(agent_id, self._count(agent_id), run_id)
        if shadow is not None:
            self.replaying = False
            run_id = shadow or None
        elif self.replaying:
            run_id = os.environ["TITAN_AGENT_RUN_ID"]
        self.id = run_id or run_id_for(agent_id, secrets.token_hex(4))
        self.agent_id = agent_id
        self.handle = context.RunHandle(id=self.id, agent_id=agent_id, default_actor=agent_id,
                                        budget_usd=budget_usd, shadow_of=shadow)
        self._first: str | None = None  # the process's first block's run (see _opened)
        self.handle.known_at = 1.0  # its budget is the one given here: nothing to fetch
        self._body: dict[str, Any] = {"id": self.id, "agent_id": agent_id}
        for key, value in (("agent_version", agent_version), ("budget_usd", budget_usd),
                           ("tags", tags), ("code_version", _script_version()),
                           ("retention_class", retention_class)):
            if value is not None:
                self._body[key] = value
        self._token: object = None

    def __enter__(self) -> Run:
        if not self.replaying and self.handle.shadow_of is None:
            body = dict(self._body, started_at=time.time())
            if self._chosen:
                # A run id names one execution: one that has ended is not opened again (the
                # second's calls took the first's keys, and its replay re-ran half of each).
                # Asked now, so the master's Conflict is raised here, in the caller's code.
                RECORDER.open_now(self.handle, body)
            # Counted once the master took it: a block it refused (another execution's id)
            # is no block of this process, nor its first run, whose code lists the others.
            self._count(self.agent_id, first=True)
            RECORDER.put("create", self.handle, body)
            # Read now, on the caller's thread: by the time the sender gets to it a short
            # script may be over, and the interpreter has cleared __main__.__file__.
            from titan.trace import code

            found = code.driver_code()
            if found is not None:  # which block of the script it is: see replaying_blocks
                block = {"first": self._first, "agent": self.agent_id, "n": self.block,
                         "process": _process}
                found = (dict(found[0], block=block), found[1])
            RECORDER.put("code", self.handle, found)
        self._token = context.enter_run(self.handle)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        global replayed_end
        context.leave_run(self._token)
        if exc is None or isinstance(exc, SystemExit) and exc.code in (0, None):
            # Its driver is done, not its run: the master ends it as its last stage ends
            # (waited for, if still running: failed when that stage did not complete), and
            # one without stages completed, whatever its handled calls did.
            body: dict[str, Any] = {"status": "ended", "without_stages": "completed"}
        elif isinstance(exc, KeyboardInterrupt):
            body = {"status": "cancelled", "error": "interrupted (KeyboardInterrupt)"}
        else:
            body = {"status": "failed", "error": _error_of(exc)}
        if self.handle.shadow_of is not None:
            return  # another block than the replayed run's: recorded nowhere
        if self.replaying:
            # The replay's driver ends the run, as this block ended the original: a replayed
            # run that failed here again is a failed replay, even if the script went on.
            replayed_end = body
            return
        # The block's end is its driver's, whatever the process does after it (a `return 1`
        # that becomes sys.exit(1)): a run it drove (it submitted stages) is not ended again
        # at exit, which the master refused ("already ended completed") on the user's stderr.
        RECORDER.driven.pop(self.id, None)
        RECORDER.put("patch", self.handle, dict(body, ended_at=time.time()))
        RECORDER.ended()

    def _count(self, agent_id: str, *, first: bool = False) -> int:
        """Number this block: the n-th of ``agent_id`` the process opened (and, ``first``,
        the process's first run if none was before it)."""
        global _first
        with _blocks_lock:
            n = self.block = _opened.get(agent_id, 0)
            _opened[agent_id] = n + 1
            if first:
                _first = self._first = _first or self.id
        return n

    @property
    def cost_usd(self) -> float:
        """What the run has spent so far, as far as this process knows."""
        return self.handle.cost_usd + self.handle.unsent_cost


def _not_utf8(value: Any) -> str | None:
    """What makes a run field unsendable (None when nothing does): a lone surrogate, from
    bytes decoded with ``surrogateescape`` (``os.fsdecode``, ``sys.argv``, ``os.environ``).
    The master never gets such text: the run would be lost, and every action of it."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode()
    except UnicodeEncodeError as exc:
        return (f"holds {exc.object[exc.start:exc.end]!r}, a lone surrogate (bytes that were "
                "not UTF-8, read with surrogateescape): decode them with errors='replace'")
    return None


def _error_of(exc: BaseException) -> str:
    """A failed run's error as the master can store it: a lone surrogate in the message (an
    exception naming a file read with ``os.fsdecode``) made it refuse the end, and the run
    stayed ``running`` for good."""
    return canonical.storable_text(f"{type(exc).__name__}: {_said(exc)}"[:2000])


class _Failure(Exception):
    """Stands in for an exception whose message the master could not store, where the
    recorder describes how the process ended (``type: message``) to end its driven runs."""

    def __init__(self, said: str) -> None:
        super().__init__(said)
        self.said = said

    def __str__(self) -> str:
        return self.said


def _storable(exc: BaseException) -> BaseException:
    """``exc``, or a stand-in of the same name saying its message as the master can store it
    (UTF-8; a ``__str__`` that raises said so)."""
    said = canonical.storable_text(_said(exc))
    try:
        if str(exc) == said:
            return exc
    except Exception:  # noqa: BLE001 - the user's __str__; said above how it failed
        pass
    stand_in: type[_Failure] = type(type(exc).__name__, (_Failure,), {})
    return stand_in(said)


def run(agent_id: str, *, agent_version: str | None = None, budget_usd: float | None = None,
        tags: Any = None, run_id: str | None = None, retention_class: str | None = None) -> Run:
    """Open an agent run (``with titan.trace.run("support-bot") as run:``).
    ``retention_class`` (``standard``, ``extended``, ``legal_hold``: see titan.retention)
    says how long the master must keep its recording."""
    return Run(agent_id=agent_id, agent_version=agent_version, budget_usd=budget_usd,
               tags=tags, run_id=run_id, retention_class=retention_class)


#: The runs this process submitted stages of from outside, by id: the handle its own calls
#: record into (one per run, so their numbering goes on when it comes back to a run).
_driving: dict[str, context.RunHandle] = {}


def drive(run_id: str, endpoint: Any = None) -> None:
    """This process submitted a stage of agent run ``run_id`` from outside it: it is the run's
    driver, its own calls from now on are recorded in the run (actor ``DRIVER/driver``), and
    when it exits the run ends (completed unless its last stage ended FAILED, PARTIAL or
    CANCELLED, failed
    with the uncaught exception that ended the process or a sys.exit with a failure code,
    cancelled by Ctrl-C)."""
    if os.environ.get("TITAN_AGENT_RUN_ID") == run_id:
        return
    # Its own calls (a @titan.tool, an LLM call) are the run's from now on, made by the actor
    # its replay's DRIVER job records them as: the replay re-runs them and matches them there.
    # Even where it leaves the run's end to another (TITAN_TRACE_DRIVER=0): its code is the
    # run's code all the same, and a replay re-runs these calls.
    handle = _driving.get(run_id)
    if handle is None:
        handle = _driving[run_id] = context.RunHandle(id=run_id, endpoint=endpoint,
                                                      default_actor=DRIVER_ACTOR)
    context.drives(handle)
    if run_id in RECORDER.driven or not settings.driver_ends_runs():
        return
    # Started first: in a process forked from the zygote (an orchestrator running as a job)
    # starting resets the parent's recorder, and the run registered before it was lost (it
    # was never ended, nor watched).
    RECORDER.ensure_started()
    RECORDER.driven[run_id] = handle
    _watch_uncaught()
    # Its first sign of life now, not on the sender's next turn: a driver killed at once
    # would leave a run no one watches (master/runs/liveness.py). This run's alone: all of
    # them at each new one was a request of N ids for the N-th run a driver started.
    RECORDER.beat([handle])
    RECORDER.wake.set()  # an idle sender sleeps until it has runs to keep alive


_hooked = False


def _watch_uncaught() -> None:
    global _hooked
    if _hooked:
        return
    _hooked = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        # A KeyboardInterrupt (Ctrl-C) ends the runs cancelled, anything else failed.
        RECORDER.failure = exc if isinstance(exc, KeyboardInterrupt) else _storable(exc)
        previous(kind, exc, tb)

    sys.excepthook = hook
    # Python calls no hook for SystemExit: a driver that ended with sys.exit(3) ended its runs
    # completed, where a trace.run block fails. What sys.exit is asked, on the main thread
    # (elsewhere it ends only a thread), is what the runs end with: the last such call wins.
    # (A SystemExit raised by hand, or caught and gone past, is not seen this way.)
    real_exit = sys.exit

    def exit(status: Any = None) -> NoReturn:  # noqa: A001 - it stands in for sys.exit
        try:
            real_exit(status)
        except SystemExit as exc:
            if threading.current_thread() is threading.main_thread():
                failed = exc.code not in (0, None)
                if failed and RECORDER.failure is None:
                    RECORDER.failure = _storable(exc)
                elif not failed and isinstance(RECORDER.failure, SystemExit):
                    RECORDER.failure = None
            raise

    exit.__wrapped__ = real_exit  # type: ignore[attr-defined]
    sys.exit = exit
