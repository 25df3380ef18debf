"""Shipping recorded actions to the master without making the caller wait.

The caller appends to a deque (no lock, no syscall) and returns; one background thread, started
on first use, sends what queued in batches every ``TITAN_TRACE_FLUSH_INTERVAL`` seconds (0.2 by
default) or sooner when a batch fills. Runs opened and closed here travel in the same ordered
stream, so the master always sees a run before its actions and its end after them.

A master that is down or restarting loses nothing this process still holds: a failed send is
retried with backoff, in order. At exit the queue is flushed: ``TITAN_TRACE_FLUSH_TIMEOUT``
seconds (10 by default) for a master that takes nothing, longer while it is taking what is sent
(acknowledged something in the last :data:`PROGRESS_WINDOW` seconds), up to :data:`EXIT_CAP`
(120 s, or the setting if longer): a script that recorded faster than the master takes lost
most of it to a fixed 10 s. What could not be sent is then summed up on stderr: how much was
delivered and not, and why. In a multiprocessing child, where no exit hook runs, a run's end
waits for the same delivery. A batch the master rejects as invalid (4xx) is reported and
dropped: resending it cannot succeed.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections import deque
from typing import Any

from titan import errors, retry
from titan.trace import batches, multirun, settings
from titan.trace.batches import warn
from titan.trace.context import RunHandle
from titan.trace.multirun import _head
from titan.trace.multirun import learn as learn  # where llm_hooks reads it

log = logging.getLogger("titan.trace")
MAX_BUFFER = 200_000  # actions held at most while the master is unreachable
#: The exit's wait goes on past TITAN_TRACE_FLUSH_TIMEOUT while the master acknowledged
#: something within this many seconds (a slow request, a large batch: a few seconds).
PROGRESS_WINDOW = 5.0
#: ...but no longer than this in all (or TITAN_TRACE_FLUSH_TIMEOUT, if longer): a process
#: that does not end is a worse surprise than a recording cut short, and said so.
EXIT_CAP = 120.0
#: Run ids named in the exit's summary of what was not delivered (all of them were 60 KB).
NAMED_RUNS = 3


class Recorder(batches.Sending, multirun.MultiRun):
    def __init__(self) -> None:
        self.queue: deque[tuple[str, RunHandle, Any]] = deque()
        self.wake = threading.Event()
        self.idle = threading.Condition()
        self.in_flight = 0
        self.dropped = 0
        self.refused = 0  # actions the master refused (counted for flush's answer)
        self.interval = settings.flush_interval()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._clients: dict[str, Any] = {}
        self._stopping = False
        self._flushing = 0  # callers waiting in flush(): the sender does not pause for them
        self._lock = threading.Lock()
        self.driven: dict[str, RunHandle] = {}  # runs this process drives (ends at exit)
        self.failure: BaseException | None = None  # an uncaught exception, seen at exit
        # Runs this process opened and has not ended: with the driven ones, they get a sign
        # of life every settings.HEARTBEAT seconds (master/runs/liveness.py ends a silent one).
        self.open: dict[str, RunHandle] = {}
        self._next_beat = 0.0
        self._out_of_reach = False  # the last wait at a run's end timed out (see ended)
        self._said_refusals = 0
        self.changes_refused = 0  # runs' starts and ends the master refused
        self._exit_ends: set[str] = set()  # driven runs the exit ends (close)
        self._lost_at_flush = 0  # refused and not kept, as of the last flush's answer
        # What the master acknowledged (the exit's summary), when it last did (the exit's
        # wait goes on while it does), and why the last send failed (None: it did not).
        self.acked_actions = 0
        self.acked_ends = 0
        self.acked_at = 0.0
        self.send_error: BaseException | None = None
        self._unwatching: set[int] = set()  # transports to a master without "watched"
        self._unstaged: set[int] = set()  # transports to a master without "without_stages"
        self._unbatched: set[int] = set()  # transports to a master without /runs/batch
        self._unreached: dict[int, float] = {}  # masters out of reach as a block opened
        self._single = False  # the next item goes by its own route (see multirun.py)

    # -- the caller's side --------------------------------------------------------------------
    def put(self, kind: str, run: RunHandle, item: Any) -> None:
        if self._thread is None or self._pid != os.getpid():
            self.ensure_started()
        if kind == "create":
            self.open[run.id] = run
        elif kind == "patch" and item.get("status") not in (None, "running"):
            self.open.pop(run.id, None)
        q = self.queue
        if kind == "action":
            if len(q) >= MAX_BUFFER:
                # Memory is finite: past the buffer, new actions are not kept (counted, said at
                # exit, and flush() answers False). Not the oldest: the sender pops from that
                # end, and a caller's thread popping there too dropped what was being sent.
                with self._lock:
                    self.dropped += 1
                return
            idle = not q
            q.append((kind, run, item))
            if idle or len(q) >= batches.MAX_BATCH:  # a batch begins (it waits `interval`) or is full
                self.wake.set()
            return
        q.append((kind, run, item))
        self.wake.set()  # a run's start or end goes at once

    def ensure_started(self) -> None:
        """Start the sender thread (and the exit flush) in this process, once."""
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():  # a fork: the parent's thread did not come along
                self.__init__()  # type: ignore[misc]
            self._thread = threading.Thread(target=self._loop, name="titan-trace", daemon=True)
            self._thread.start()
            atexit.register(self.close)
            mp = settings.multiprocessing_child()
            if mp is not None:  # its exit runs multiprocessing's finalizers, not atexit's
                mp.util.Finalize(None, self.close, exitpriority=100)

    def client(self, run: RunHandle | None = None) -> Any:
        """The transport to the run's master (the SDK's default master unless the run came
        from a client pointed elsewhere)."""
        from titan.client.config import resolve
        from titan.client.transport import Transport

        endpoint = run.endpoint if run is not None and run.endpoint is not None else None
        # By the whole list of masters: one transport per Titan, whichever master leads.
        key = ",".join(endpoint.urls) if endpoint is not None else ""
        found = self._clients.get(key)
        if found is None:
            found = self._clients[key] = Transport(endpoint or resolve(None, None, None),
                                                   timeout=10.0)
        return found

    # -- the sender ---------------------------------------------------------------------------
    def _hurry(self) -> bool:
        """Whether to send the next item at once rather than after ``interval``: actions wait
        a moment so they travel in batches; a run's start or end, a flush's or the exit's
        wait, a full batch do not (each waited its own interval, so ending 25 runs at exit
        took 5 s and the exit's deadline left some open)."""
        q = self.queue
        return bool(q) and (self._stopping or self._flushing > 0 or q[0][0] != "action"
                            or len(q) >= batches.MAX_BATCH)

    def _loop(self) -> None:
        failures = 0
        while True:
            if not self._hurry():
                if self.queue:  # actions wait a moment, to travel in batches
                    self.wake.wait(self.interval)
                else:  # nothing to send: until something is put or a sign of life is due
                    self.wake.wait(max(0.0, self._next_beat - time.monotonic())
                                   if self.open or self.driven else settings.HEARTBEAT)
                self.wake.clear()
            if not self._stopping and time.monotonic() >= self._next_beat:
                self.beat()
            try:
                sent = self._send_some()
            except Exception as exc:  # the master is unreachable or failing: keep and retry
                # Titan's one jittered backoff; at exit the flush has a deadline, so it keeps
                # trying about every second rather than every five.
                delay = retry.pause(failures, start=0.25, cap=1.0 if self._stopping else 5.0)
                failures += 1
                self.send_error = exc
                log.debug("titan.trace: send failed (%s); retrying in %.2fs", exc, delay)
                self._back_off(delay)
                continue
            failures = 0
            self.send_error = None
            if not sent:
                with self.idle:
                    self.idle.notify_all()
                if self._stopping:
                    return

    def _back_off(self, delay: float) -> None:
        """Wait ``delay`` before trying again, whoever wakes the sender meanwhile (a flush
        does every 0.1 s: a master that reset each 70 MB upload got it again 6 times a
        second), but at most a second once the process is exiting."""
        start = time.monotonic()
        while True:
            left = min(start + delay, start + 1.0 if self._stopping else math.inf) \
                - time.monotonic()
            if left <= 0:
                return
            self.wake.wait(left)
            self.wake.clear()

    def beat(self, runs: list[RunHandle] | None = None) -> None:
        """Tell each master that this process is alive and holds its runs open (the
        sender's thread does every settings.HEARTBEAT seconds); ``runs``: only these, now (a run just
        driven), the next beat of them all left as it was."""
        if runs is None:
            self._next_beat = time.monotonic() + settings.HEARTBEAT
        by_master: dict[int, tuple[RunHandle, list[str]]] = {}
        for run in runs if runs is not None else [*self.driven.values(), *self.open.values()]:
            client = self.client(run)
            by_master.setdefault(id(client), (run, []))[1].append(run.id)
        for run, ids in by_master.values():
            for i in range(0, len(ids), 1000):  # the master takes 1,000 ids a request
                try:
                    self.client(run).call("POST", "/runs/alive",
                                          json={"runs": ids[i:i + 1000]})
                except errors.TitanError as exc:  # unreachable now: the next beat tries again
                    log.debug("titan.trace: sign of life not delivered (%s)", exc)
                    self._next_beat = min(self._next_beat, time.monotonic() + 5.0)

    def _send_some(self) -> bool:
        """Send the head of the queue: by ``POST /runs/batch`` where the master has it
        (:mod:`.multirun`), else one run's consecutive actions, or one run change; it leaves
        the queue only once the master acknowledged it."""
        q = self.queue
        while q and q[0][1].refused:  # a run the master would not open: nothing of it goes
            self._drop_refused()
        if not q:
            return False
        if not self._single:  # several runs' work in one request, where the master can
            sent = self._send_batch()
            if sent is not None:
                return sent
        self._single = False
        kind, run, item = q[0]
        if kind != "action":
            self._send_change(kind, run, item)
            q.popleft()
            self.acked_at = time.monotonic()
            if kind == "patch" and item.get("status") not in (None, "running"):
                self.acked_ends += 1
            return True
        batch: list[str] = []
        cost = 0.0
        size = 0
        for k, r, it in _head(q, batches.MAX_BATCH):
            if k != "action" or r is not run:
                break
            meta, inputs, outputs, spent = it
            text = batches.fitted(meta, inputs, outputs)
            size += len(text) + 1
            if batch and size > batches.MAX_BATCH_BYTES:
                break
            batch.append(text)
            cost += spent
        self.in_flight = len(batch)
        reply = self._post_actions(run, batch)
        for _ in batch:
            q.popleft()
        self.in_flight = 0
        self.acked_actions += len(batch)
        self.acked_at = time.monotonic()
        run.unsent_cost = max(0.0, run.unsent_cost - cost)
        if reply is not None:
            learn(run, reply.get("run") or {})
        return True

    def _send_change(self, kind: str, run: RunHandle, body: Any) -> None:
        if kind == "code":  # the script that opened the run: what a replay re-executes
            from titan.trace import code

            code.register(self.client(run), run.id, found=body)
            return
        try:
            if kind == "create":
                learn(run, self._create(run, body))
                self._next_beat = 0.0  # watched from now (master/runs/liveness.py)
            else:
                self._patch(run, body)
        except errors.APIError as exc:
            if exc.status >= 500 or exc.status in batches.RETRIED:
                raise
            self.changes_refused += 1
            if kind == "patch" and run.id in self._exit_ends and exc.code == "run_ended":
                # Someone else ended the run this process drove: not a refusal of the SDK's.
                said = batches.exit_end_refused(run.id, body, exc)
                if said is not None:
                    warn(said)
                return
            warn(batches.change_refused(kind, run.id, exc))
            if kind == "create" and (exc.status == 401 or exc.code == "run_ended"):
                # Its actions and end would go into the run of that id that has ended,
                # another execution's, or meet the same refused token: they are not sent
                # (said once, counted as refused).
                run.refused = True

    def _drop_refused(self) -> None:
        """Leave out the head of the queue, of a run the master would not open."""
        kind, run, _ = self.queue.popleft()
        if kind == "action":
            self.refused += 1
        elif kind == "patch":
            self.open.pop(run.id, None)

    # -- flushing -----------------------------------------------------------------------------
    def ended(self) -> None:
        """A run block ended. In a multiprocessing child what it recorded is delivered before
        the block returns: such a process never runs Python's exit hooks (its bootstrap leaves
        by ``os._exit``), and a ``Pool`` SIGTERMs its workers the moment the last result is
        back, before the sender's next turn; the run would have ended ``crashed`` two minutes
        later with its last actions lost. Waits at most TITAN_TRACE_FLUSH_TIMEOUT (10 s);
        after a wait that timed out, the next ends wait only a moment until one is delivered."""
        if settings.multiprocessing_child() is None:
            return
        timeout, _asked = settings.flush_timeout()
        self._out_of_reach = not self.flush(0.2 if self._out_of_reach else timeout) and bool(
            self.queue)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is acknowledged; False on timeout, or when
        something recorded since the last flush was not delivered: refused by the master
        (each refusal is said on stderr) or not kept (past the buffer)."""
        if self._thread is None or self._pid != os.getpid():
            return not self.queue
        deadline = time.monotonic() + (30.0 if timeout is None else timeout)
        with self._lock:  # callers on several threads: a lost update would hurry for good
            self._flushing += 1
        try:
            while self.queue:
                self.wake.set()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with self.idle:
                    self.idle.wait(min(left, 0.1))
        finally:
            with self._lock:
                self._flushing -= 1
        # Refused, or not kept, since the last flush answered: not all of it was delivered.
        lost = self.refused + self.dropped + self.changes_refused
        delivered, self._lost_at_flush = lost == self._lost_at_flush, lost
        return delivered

    def close(self) -> None:
        """At exit: end the runs this process drove, then flush (bounded)."""
        if self._pid != os.getpid():
            return
        self.open.clear()  # ended by their blocks, or not: either way no longer beating
        for run in list(self.driven.values()):
            body: dict[str, Any] = {"status": "ended"}
            if isinstance(self.failure, KeyboardInterrupt):
                body = {"status": "cancelled", "error": "interrupted (KeyboardInterrupt)"}
            elif self.failure is not None:
                body = {"status": "failed", "error": _describe(self.failure)}
            self._exit_ends.add(run.id)
            self.put("patch", run, body)
        self.driven.clear()
        timeout, asked = settings.flush_timeout()
        pending = list(self.queue)
        actions = sum(1 for k, _, _ in pending if k == "action")
        if not actions and not asked:
            timeout = min(timeout, 2.0)  # only run ends to report: sent at once, or unreachable
        self._stopping = True
        started, acts, ends = time.monotonic(), self.acked_actions, self.acked_ends
        why = self._drain(timeout)
        # Nothing left queued: delivered, or refused (each refusal was said as it came).
        if why is not None and self.queue:
            left = list(self.queue)
            actions = sum(1 for k, _, _ in left if k == "action")
            runs = list(dict.fromkeys(r.id for _, r, _ in left))
            named = ", ".join(runs[:NAMED_RUNS]) + (
                f" and {len(runs) - NAMED_RUNS} more" if len(runs) > NAMED_RUNS else "")
            warn(f"at exit, {self.acked_ends - ends} run end(s) and "
                  f"{self.acked_actions - acts} action(s) were delivered in "
                  f"{time.monotonic() - started:.0f}s; not delivered: {actions} action(s) and "
                  f"the start, code or end of {len(runs)} run(s) ({named}): {why}")
        if self.dropped:
            warn(f"{self.dropped} action(s) were not recorded: more than {MAX_BUFFER:,} "
                  "waited to be sent (recorded faster than the master took them, or while it "
                  "was out of reach)")
        if self.refused > batches.SAID_REFUSALS:
            warn(f"the master refused {self.refused} action(s) in all (the first "
                  f"{batches.SAID_REFUSALS} refusals were said above)")

    def _drain(self, timeout: float) -> str | None:
        """The exit's wait for the queue to empty; None once it has, else why it stopped
        waiting. ``timeout`` bounds the wait for a master that takes nothing; while it takes
        what is sent the wait goes on, up to EXIT_CAP (a setting of 0 waits not at all)."""
        start = time.monotonic()
        cap = max(timeout, EXIT_CAP) if timeout > 0 else 0.0
        while self.queue:
            now = time.monotonic()
            if now - start >= timeout and now - self.acked_at > PROGRESS_WINDOW:
                error = self.send_error
                if error is not None:
                    return (f"the master could not be reached ({error}; "
                            "TITAN_TRACE_FLUSH_TIMEOUT waits longer)")
                return (f"the master took nothing for {PROGRESS_WINDOW:g}s after the "
                        f"{timeout:g}s TITAN_TRACE_FLUSH_TIMEOUT")
            if now - start >= cap:
                return (f"the master was still taking them when the exit's wait reached its "
                        f"{cap:g}s limit (recorded faster than it took them)")
            self.wake.set()
            with self.idle:
                self.idle.wait(0.1)
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


RECORDER = Recorder()
