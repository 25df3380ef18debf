"""Replay mode inside one process: every intercepted call answered from the recording.

A replay re-executes an agent's own code (see :mod:`titan.master.replays.service`). Its jobs run with
``TITAN_REPLAY`` in their environment — the replay's settings as JSON, ``of`` naming the run
being replayed — and then each call Titan intercepts (``titan.llm``, ``@titan.tool``,
``titan.trace.action``, ``titan.trace.now/uuid/random``) asks :meth:`Session.decide` how to
answer before it does anything.

Calls are matched to the recording by **(actor path, channel, name, ordinal)**, never by global
order: researchers running in parallel may finish in any order and still each find their own
calls. The ordinal is taken when the call starts, in recording and replay alike. Calls one
actor makes side by side may start in another order in the replay (their turns come as
earlier answers arrive): a call whose key holds other inputs is matched to the call of that
name with the same inputs not answered yet, if there is one (:meth:`Session._claim`). What a
call gets:

- recorded, same inputs: the recorded output, at no cost (``served``);
- recorded, different input hash: an *input mismatch* — strict mode stops the replay there,
  lenient mode serves the recorded output anyway;
- not recorded: an *extra call*, or a *name mismatch* when the recording made another call of
  the same channel at that position of the actor — strict stops; lenient runs it live with ``allow_live``,
  else fails the call with :class:`~titan.errors.ReplayMiss` (clock and random values, which
  have no side effects, always run live);
- made outside any run (a driver before its first stage, a helper process that sees no run
  of its own: :func:`titan.trace.context.outside_run`): nothing recorded it, so it runs live
  as it did in the original, recorded in the replay's run as ``unrecorded`` with its cost —
  a live call, never a free one (no divergence: the original made it unrecorded too);
- with ``fork_at``: recorded calls from that step on run live (``forked``), as do the new calls
  of a forked actor, and an ``overrides`` entry replaces one recorded output (``override``);
- with ``verify``: a tool marked ``pure=True`` runs again and its output is compared with the
  recording (``verified``; a difference is an *output mismatch*);
- recorded, but its outputs were redacted (PII) by the master before storage: the original
  is gone, so the call is never served — it runs live with ``allow_live``, else is refused
  (lenient) or stops the replay (strict). Recorded inputs that were redacted are compared
  with the live inputs redacted by the same patterns (the recording says which).

The master compares the replay's actions with the original's to report divergences (missing
calls included); this module only decides each call, consistently with that comparison.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from titan import errors
from titan.redaction import Redactor
from titan.trace import context, forks, netguard
from titan.trace.canonical import (
    bytes_as_before,
    digest,
    dumps,
    holds_lost_bytes,
    holds_stand_in,
)
from titan.trace.emit import emit
from titan.trace.recorded import ActorRecording, Decision, Recorded
from titan.trace.recorder import RECORDER
from titan.trace.replay_refusals import refusal
from titan.url_paths import quote_ref

ENV = "TITAN_REPLAY"
AMBIENT = ("clock", "random")


class Session:
    """This process's replay: its settings and the recording it has fetched so far."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.original: str = settings["of"]
        self.mode: str = settings.get("mode") or "strict"
        fork = settings.get("fork_at")
        self.fork_at: int | None = int(fork) if fork is not None else None
        self.overrides: dict[int, str] = {int(k): v for k, v in
                                          (settings.get("overrides") or {}).items()}
        self.model: str | None = settings.get("model")
        self.allow_live = bool(settings.get("allow_live"))
        self.verify = bool(settings.get("verify"))
        self.master: str | None = settings.get("master")
        # By (the run recorded, actor): the replayed run's, and those of the script's other
        # `titan.trace.run` blocks (a RunHandle's shadow_of), which answer these blocks' calls.
        self._recordings: dict[tuple[str, str], ActorRecording] = {}
        self._positions: dict[tuple[str, str], int] = {}
        self._forked: set[tuple[str, str]] = set()  # actors past the fork point
        self._claimed: set[tuple[str, str, str, str, int]] = set()  # recorded calls answered
        self._override_values: dict[int, Any] = {}
        self._lock = threading.Lock()
        # The master's redaction patterns (from the recording), to redact live values alike.
        self.redactor: Redactor | None = None

    # -- the recording ------------------------------------------------------------------------
    def _fetch(self, root: str, original: str) -> ActorRecording:
        rec = ActorRecording()
        after = 0
        while original:  # "": a block the original script did not open, nothing recorded
            try:
                page = RECORDER.client().call(
                    "GET", f"/runs/{quote_ref(original)}/recording",
                    params={"actor": root, "after": after, "limit": 5000})
            except errors.NotFound:
                if original == self.original:
                    raise
                break  # another block's run, deleted since: its calls are not recorded
            if page.get("redaction") and self.redactor is None:
                self.redactor = Redactor.from_config(page["redaction"])
            for a in page["actions"]:
                r = Recorded(a["seq"], a["actor"], a["channel"], a["name"], a["ordinal"],
                             a["inputs_hash"], a["outputs"], a["outcome"], a.get("error_type"),
                             a.get("error_message"), a.get("model"),
                             tuple(a.get("redacted") or ()), a.get("id"), a.get("parent_id"),
                             a.get("duration_ns"))
                # A retried job recorded its calls once per attempt: the last attempt counts.
                old = rec.by_key.get(r.key)
                if old is not None:
                    rec.order[r.actor] = [x for x in rec.order[r.actor] if x is not old]
                rec.by_key[r.key] = r
                rec.order.setdefault(r.actor, []).append(r)
            if page.get("next_after") is None:
                break
            after = page["next_after"]
        for r in sorted(rec.by_key.values(), key=lambda r: r.seq):
            if r.parent_id:
                rec.children.setdefault(r.parent_id, []).append(r)
        for r in sorted(rec.by_key.values(), key=lambda r: r.ordinal):
            rec.calls.setdefault((r.actor, r.channel, r.name), []).append(r)
            if (pool := forks.pooled(r.actor)) is not None:
                rec.pooled.setdefault((pool, r.channel, r.name), []).append(r)
        return rec

    def of(self, run: Any) -> str:
        """The recorded run that answers ``run``'s calls: the replayed one, or for another
        ``titan.trace.run`` block of the script, the run that block was (see
        :mod:`titan.trace.runs`)."""
        shadow = getattr(run, "shadow_of", None)
        return self.original if shadow is None else shadow

    def _recording(self, actor: str, original: str | None = None) -> ActorRecording:
        root = actor.split("/", 2)
        # A job's actor is STAGE/job; sub-actors nest below it. Fetch the job's whole subtree
        # once (a run opened with titan.trace.run has a one-part root: the agent id).
        # A forked process's calls may be any sibling's: fetched from the actor it forked from.
        key = forks.above("/".join(root[:2]) if len(root) >= 2 else root[0])
        original = self.original if original is None else original
        with self._lock:
            found = self._recordings.get((original, key))
            if found is None:
                found = self._recordings[(original, key)] = self._fetch(key, original)
            return found

    def override_value(self, seq: int) -> Any:
        """The replacement output given for recorded step ``seq`` (a blob on the master)."""
        if seq not in self._override_values:
            sha = self.overrides[seq]
            raw = RECORDER.client().send("GET", f"/blobs/{sha}").content
            self._override_values[seq] = json.loads(raw)
        return self._override_values[seq]

    # -- deciding -----------------------------------------------------------------------------
    def decide(self, run: Any, actor: str, channel: str, name: str, inputs: Any, *,
               pure: bool = False, ordinal: int | None = None) -> Decision:
        """How to answer the call ``name`` of ``actor`` with ``inputs``; raises
        :class:`~titan.errors.ReplayDiverged` (strict) or :class:`~titan.errors.ReplayMiss`
        (lenient, extra call, no live calls allowed) after recording the refusal.
        ``ordinal``: the call's number if it was taken already (an async call takes it on
        the event loop, in the order the calls were made, before its thread starts)."""
        if ordinal is None:
            ordinal = run.next_ordinal(actor, channel, name)
        if getattr(run, "outside", False):
            # Made outside any run (context.outside_run): the original recorded nothing of
            # it to answer with. It runs live, as it did there, and is reported as such.
            return Decision("unrecorded", ordinal)
        original = self.of(run)
        shadow = original != self.original
        rec = self._recording(actor, original)
        with self._lock:
            pos = self._positions.get((original, actor), 0)
            self._positions[(original, actor)] = pos + 1
        recorded = self._claim(rec, (actor, channel, name, ordinal), inputs, original)
        if recorded is not None:
            if shadow:  # another block's run: its steps are not the replayed run's
                d = self._served(recorded, recorded.ordinal, inputs, shadow=original)
                if self.fork_at is not None and d.divergence == "input_mismatch":
                    return Decision("forked", recorded.ordinal, of=original)  # new branch
                return d
            return self._recorded(actor, recorded, recorded.ordinal, inputs, pure)
        # Not in the recording: past a fork point that is the new branch, else a divergence.
        # (Another block's call its run lacks, in a fork: the fork's new branch as well.)
        if self.fork_at is not None and (shadow or (original, actor) in self._forked
                                         or actor not in rec.order
                                         or _past_fork(rec.order[actor], pos, self.fork_at)):
            self._forked.add((original, actor))
            return Decision("forked", ordinal, of=original if shadow else None)
        order = rec.order.get(actor, [])
        there = order[pos] if pos < len(order) else None
        kind = "name_mismatch" if there is not None and there.channel == channel \
            and there.name != name else "extra"
        decision = Decision("live", ordinal, there if kind == "name_mismatch" else None, kind,
                            of=original if shadow else None)
        if self.mode == "strict":
            decision.status = "stopped"
        elif channel not in AMBIENT and not self.allow_live:
            decision.status = "refused"
        return decision

    def _claim(self, rec: ActorRecording, key: tuple[str, str, str, int],
               inputs: Any, original: str) -> Recorded | None:
        """The recorded call this one answers to. By its key first; but calls an actor makes
        side by side (``asyncio.gather``, threads) start in the order their turns come, which
        need not be the recording's: a tool called with each LLM answer starts when that
        answer arrives, and a replay serves answers at once. So when the call at this key
        has other inputs, a call of the same name with these very inputs that nothing has
        answered yet is the one (the action is then recorded under its ordinal, and the
        comparison pairs the two); failing that, the call at the key, or the first one not
        answered yet, and its difference is the divergence."""
        hashes: dict[tuple[bool, bool], str | None] = {}

        def same(r: Recorded) -> bool:
            return self._same_inputs(r, inputs, hashes) is not None

        at = rec.by_key.get(key)
        with self._lock:
            claimed = self._claimed

            def free(r: Recorded) -> bool:
                return (original, *r.key) not in claimed

            if at is not None and free(at) and same(at):
                claimed.add((original, *at.key))
                return at
            siblings = [r for r in rec.calls.get(key[:3], ()) if free(r)]
            chosen = next((r for r in siblings if same(r)), None)
            pool = forks.pooled(key[0])
            pooled = [r for r in rec.pooled.get((pool, *key[1:3]), ()) if free(r)] \
                if pool is not None else []
            if chosen is None:
                # A pool's tasks go to whichever process is free: the recording may hold
                # this one's call under a sibling process (its answer is recorded there).
                chosen = next((r for r in pooled if same(r)), None)
            if chosen is None:
                # Nothing recorded with these inputs: the call at the key, or one its actor
                # has not answered yet, or else one of the pool's. Which process ran a task
                # is the scheduler's doing (a process started late may have run none in the
                # recording; a pool replaces a process a strict stop ended): a changed call
                # is an input mismatch, whichever process of the pool makes it.
                chosen = at if at is not None and free(at) else next(
                    iter(siblings or pooled), None)
            if chosen is not None:
                claimed.add((original, *chosen.key))
            return chosen

    def pass_over(self, run: Any, served: Recorded) -> None:
        """After a served call: the calls recorded inside it that were not made again (a
        served tool's function does not run, nor does a block guarded by ``a.replayed``)
        count as made, or every later call of the same names would be matched one recorded
        call too early."""
        original = self.of(run)
        for inner in self._recording(served.actor, original).nested(served):
            with self._lock:
                self._claimed.add((original, *inner.key))
            if run.skip_ordinals(inner.actor, inner.channel, inner.name, inner.ordinal):
                with self._lock:
                    at = (original, inner.actor)
                    self._positions[at] = self._positions.get(at, 0) + 1

    def _recorded(self, actor: str, recorded: Recorded, ordinal: int, inputs: Any,
                  pure: bool) -> Decision:
        if recorded.seq in self.overrides:
            self._forked.add((self.original, actor))
            return Decision("override", ordinal, recorded,
                            outputs=self.override_value(recorded.seq))
        if self.fork_at is not None and recorded.seq >= self.fork_at:
            self._forked.add((self.original, actor))
            return Decision("forked", ordinal, recorded)
        how = self._same_inputs(recorded, inputs) if self.verify and pure else None
        if how is not None:
            return Decision("verified", ordinal, recorded,
                            legacy_bytes=how == "legacy" or holds_lost_bytes(recorded.outputs))
        return self._served(recorded, ordinal, inputs)

    def _served(self, recorded: Recorded, ordinal: int, inputs: Any,
                shadow: str | None = None) -> Decision:
        """A recorded call answered from the recording (the replayed run's, or ``shadow``'s:
        another block of the script)."""
        how = self._same_inputs(recorded, inputs)
        mismatch = how is None
        legacy = how == "legacy" or holds_lost_bytes(recorded.outputs)
        if mismatch and self.mode == "strict":
            return Decision("stopped", ordinal, recorded, "input_mismatch", of=shadow)
        divergence = "input_mismatch" if mismatch else None
        succeeded = recorded.outcome not in ("error", "blocked")
        unkept = "redacted" if "outputs" in recorded.redacted else "bytes_not_kept" if (
            succeeded and holds_lost_bytes(recorded.outputs)) else "not_replayable" if (
            succeeded and holds_stand_in(recorded.outputs)) else None
        if unkept is not None:
            # The recording holds placeholders (PII redaction), only the hash of bytes
            # returned (a run recorded before Titan kept them) or only the repr of what
            # JSON cannot hold (an object, a generator), not what the call returned: serving
            # them would hand the agent made-up data. It runs live if allowed, else is
            # refused.
            if self.allow_live:
                return Decision("live", ordinal, recorded, unkept, legacy_bytes=legacy,
                                of=shadow)
            return Decision("stopped" if self.mode == "strict" else "refused", ordinal,
                            recorded, unkept, legacy_bytes=legacy, of=shadow)
        return Decision("served", ordinal, recorded, divergence, recorded.value(),
                        legacy_bytes=legacy, of=shadow)

    def _same_inputs(self, recorded: Recorded, inputs: Any,
                     hashes: dict[tuple[bool, bool], str | None] | None = None) -> str | None:
        """Whether live ``inputs`` are the recorded ones: ``"same"``, ``"legacy"`` (equal as a
        run recorded before Titan kept bytes hashed them: bytes over 256 by their sha256), or
        None. ``hashes``: the live inputs' hashes already taken, by (redacted, legacy)."""
        hashes = {} if hashes is None else hashes
        redacted = "inputs" in recorded.redacted
        if (redacted, False) not in hashes:
            text = dumps(self.as_recorded(recorded, "inputs", inputs))
            hashes[(redacted, False)] = digest(text)
            if '"$bytes":"' not in text:  # no bytes: the same in either spelling
                hashes[(redacted, True)] = None
        if hashes[(redacted, False)] == recorded.inputs_hash:
            return "same"
        if (redacted, True) not in hashes:
            with bytes_as_before():
                hashes[(redacted, True)] = digest(dumps(self.as_recorded(recorded, "inputs",
                                                                         inputs)))
        return "legacy" if hashes[(redacted, True)] == recorded.inputs_hash else None

    def as_recorded(self, recorded: Recorded, side: str, value: Any) -> Any:
        """A live value as the recording would hold it: redacted like the master redacted
        the recorded one (the same patterns), else as it is."""
        if side in recorded.redacted and self.redactor is not None:
            return self.redactor.value(value, {})
        return value

    def refusal(self, decision: Decision, channel: str, name: str, actor: str) -> BaseException:
        """The exception a stopped or refused call raises (:mod:`titan.trace.replay_refusals`)."""
        return refusal(self.original, decision, channel, name, actor)


def _past_fork(order: list[Recorded], pos: int, fork_at: int) -> bool:
    """Whether an actor's unrecorded call at ``pos`` comes after the fork point: the recorded
    call it follows was at or after ``fork_at``."""
    before = order[pos - 1] if 0 < pos <= len(order) else None
    return before is not None and before.seq >= fork_at


_session: Session | None = None
_session_pid = 0
_session_lock = threading.Lock()


def active() -> Session | None:
    """This process's replay session, or None when it is not replaying."""
    global _session, _session_pid
    raw = os.environ.get(ENV)
    if not raw:
        return None
    if _session is not None and _session_pid == os.getpid():
        return _session
    with _session_lock:
        if _session is None or _session_pid != os.getpid():
            _session, _session_pid = Session(json.loads(raw)), os.getpid()
            netguard.install(_network_leak)
    return _session


def _network_leak(host: str, port: int) -> None:
    """A connection the agent opened itself, outside any recorded call (see
    :mod:`titan.trace.netguard`): recorded on the ``network`` channel, and refused unless the
    replay allows live calls."""
    session = active()
    if session is None:
        # Not replaying (any more): the guard, installed for good once a replay began in
        # this process, guards nothing. A process whose TITAN_REPLAY went away (a test that
        # set it for a while) had every later connection refused as a replay's leak.
        return
    run = context.current_run()
    # A driver before its first stage, outside any run: let through as its original was
    # (nothing recorded the connection there), and recorded here as the live call it is
    # (``unrecorded``), so a replay that reached the world never reads as a free one.
    unrecorded = context.outside_replayed_run()
    allowed = unrecorded or session.allow_live
    if run is None:
        run = context.outside_run()
    message = (f"replay of {session.original}: a connection to "
               f"{host}:{port} was not intercepted by Titan (wrap the call in @titan.tool so "
               "it is recorded and served on replay)")
    exc = ConnectionRefusedError(111, message)
    if run is not None:
        emit(run, channel="network", name="connect", inputs={"host": host, "port": port},
             outputs=None, started_at=time.time(), duration_ns=0,
             outcome="success" if allowed else "blocked", error=None if allowed else exc,
             replay_status="unrecorded" if unrecorded else "live" if allowed else "refused")
    if not allowed:
        raise exc
