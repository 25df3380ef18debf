"""Several runs' recording in one request: ``POST /runs/batch`` (master/runs/batch.py).

A script recording many short runs (a ``trace.run`` block, a few tool calls each) sent every
run as four requests one after another (open, code, actions, end) from the one sender thread:
~70 runs a second, far slower than it recorded, and what was still queued at exit was lost.
Here the head of the queue, whatever runs it holds, goes as one list of operations, in order,
up to :data:`MAX_OPS` operations, :data:`~titan.trace.batches.MAX_BATCH` actions and
:data:`~titan.trace.batches.MAX_BATCH_BYTES`. The master applies them in order and stops at
the first it refuses: that one is then sent again by its own route, where the recorder already
handles refusals (an action named and left out, a run's start said on stderr). A master from
before the route (404, 405) is sent to by the per-run routes from then on.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any

from titan import errors
from titan.trace import batches, code
from titan.trace.context import RunHandle
from titan.url_paths import quote_ref

MAX_OPS = 500  # the master takes 1,000
#: Asking as a named block opens (:meth:`MultiRun.open_now`): one try, its connection given
#: this long, its answer OPEN_READ; a master found out of reach is not asked again as blocks
#: open for OPEN_SKIP seconds (their runs are opened by the sender, as unnamed ones are).
OPEN_CONNECT, OPEN_READ, OPEN_SKIP = 0.5, 2.0, 60.0
log = logging.getLogger("titan.trace")


def _head(q: deque[Any], n: int) -> list[Any]:
    out = []
    for item in q:
        out.append(item)
        if len(out) >= n:
            break
    return out


def learn(run: RunHandle, state: dict[str, Any]) -> None:
    """Take the budget state the master reported for the run."""
    if "cost_usd" in state:
        run.cost_usd = float(state.get("cost_usd") or 0.0)
        run.budget_usd = state.get("budget_usd")
        run.blocked = bool(state.get("blocked"))
        run.known_at = time.monotonic()


class MultiRun:
    """The recorder's sending by ``POST /runs/batch`` (part of its Recorder)."""

    queue: deque[tuple[str, RunHandle, Any]]
    in_flight: int
    acked_actions: int
    acked_ends: int
    acked_at: float
    _next_beat: float
    _unbatched: set[int]  # transports to a master without the route
    _single: bool  # send the next item by its own route (the master refused it in a batch)
    _unwatching: set[int]  # transports to a master without POST /runs's "watched"
    _unstaged: set[int]  # transports to a master without PATCH /runs's "without_stages"
    _unreached: dict[int, float]  # transports whose master was out of reach: until when

    def client(self, run: RunHandle | None = None) -> Any: ...  # the recorder's

    def _send_batch(self) -> bool | None:
        """Send the head of the queue as one batch; None when that master has no batch route
        (then the caller sends by the per-run routes)."""
        q = self.queue
        client = self.client(q[0][1])
        if id(client) in self._unbatched:
            return None
        ops: list[str] = []
        # Per op: its kind, run, queue entries, actions, and what it needs once acknowledged
        # (the actions' cost, the code's body, whether the update ends the run).
        spans: list[list[Any]] = []
        lead = 0  # entries at the head with nothing to send (code already told)
        size = actions = 0
        for kind, run, item in _head(q, MAX_OPS + batches.MAX_BATCH):
            if self.client(run) is not client or run.refused:
                break  # another master: its own batch (a refused run: dropped by its route)
            if kind == "action":
                if actions >= batches.MAX_BATCH:
                    break
                meta, inputs, outputs, spent = item
                text = batches.fitted(meta, inputs, outputs)
                if ops and size + len(text) > batches.MAX_BATCH_BYTES:
                    break
                size += len(text) + 1
                actions += 1
                if spans and spans[-1][0] == "action" and spans[-1][1] is run:
                    spans[-1][2] += 1
                    spans[-1][3] += 1
                    spans[-1][4] += spent
                    ops[-1] += "," + text
                else:
                    if len(ops) >= MAX_OPS:
                        break
                    spans.append(["action", run, 1, 1, spent])
                    ops.append(f'{{"run":{json.dumps(run.id)},"actions":[{text}')
                continue
            if kind == "code":
                try:
                    body = code.prepared(client, run.id, found=item)
                except Exception:  # noqa: BLE001 - its own route says why, and goes on
                    break
                if body is None:  # nothing to tell: rides along with what is before it
                    if spans:
                        spans[-1][2] += 1
                    else:
                        lead += 1
                    continue
                op: dict[str, Any] = {"run": run.id, "code": body}
            elif kind == "create":
                op = {"run": run.id, "create": dict(item, watched=True)}
            else:
                op = {"run": run.id, "update": self._told(client, item)}
            text = json.dumps(op, separators=(",", ":"), ensure_ascii=False, default=str)
            if len(ops) >= MAX_OPS or (ops and size + len(text) > batches.MAX_BATCH_BYTES):
                break
            size += len(text) + 1
            extra = op["code"] if kind == "code" else item.get("status") not in (None, "running")
            spans.append([kind, run, 1, 0, extra])
            ops.append(text)
        if not ops:
            if lead:
                for _ in range(lead):
                    q.popleft()
                return True
            self._single = True  # its code could not be uploaded: said by its own route
            return True
        wire = ('{"ops":[' + ",".join(o + "]}" if s[0] == "action" else o
                                      for o, s in zip(ops, spans, strict=True)) + "]}")
        self.in_flight = actions
        try:
            reply = client.send("POST", "/runs/batch", body=wire.encode(),
                                headers={"Content-Type": "application/json"}).json()
        except errors.APIError as exc:
            if exc.status in (404, 405):  # an older master: its per-run routes, from now on
                self._unbatched.add(id(client))
                return None
            if exc.status >= 500 or exc.status in batches.RETRIED:
                raise
            self._single = True  # too large, or refused whole: its own routes say why
            return True
        finally:
            self.in_flight = 0
        if not isinstance(reply, dict) or "applied" not in reply:  # not the route we know
            self._unbatched.add(id(client))
            return None
        for _ in range(lead):
            q.popleft()
        applied = int(reply.get("applied") or 0)
        results = reply.get("results") or []
        for i, (kind, run, entries, count, extra) in enumerate(spans[:applied]):
            for _ in range(entries):
                q.popleft()
            result = results[i] if i < len(results) and isinstance(results[i], dict) else {}
            learn(run, result.get("run") or {})
            if kind == "action":
                self.acked_actions += count
                run.unsent_cost = max(0.0, run.unsent_cost - extra)
            elif kind == "create":
                self._next_beat = 0.0  # watched from now (master/runs/liveness.py)
            elif kind == "code":
                code.sent(run.id, extra)
            elif kind == "patch" and extra:
                self.acked_ends += 1
        self.acked_at = time.monotonic()
        self._unreached.pop(id(client), None)  # reached: blocks opening ask it again
        if "error" in reply:
            self._single = True  # the one refused goes by its own route, which handles it
        return True

    def open_now(self, run: RunHandle, body: dict[str, Any]) -> None:
        """Open ``run`` now, on the caller's thread (a run id the caller chose): raises the
        master's Conflict when that id names a run that has ended, where the caller can
        see it. Anything else (unreachable, an older master) is left to the sender, which
        opens the run in its turn as ever (the same start again, which the master takes).
        Telemetry must not stall the agent: one try, no retries, a short connection; a
        master out of reach is not asked again for a while (the sender's own opening still
        reports a refusal, on stderr)."""
        client = self.client(run)
        if self._unreached.get(id(client), 0.0) > time.monotonic():
            return
        try:
            learn(run, client.call("POST", "/runs", json=dict(body, watched=True),
                                   deadline=time.monotonic(), connect_timeout=OPEN_CONNECT,
                                   read_timeout=OPEN_READ))
        except errors.Conflict:
            raise
        except errors.ConnectionFailed as exc:
            self._unreached[id(client)] = time.monotonic() + OPEN_SKIP
            log.debug("titan.trace: run %s not opened at once (%s)", run.id, exc)
        except errors.TitanError as exc:
            log.debug("titan.trace: run %s not opened at once (%s)", run.id, exc)

    def _told(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        """A run update as ``client``'s master takes it: one from before ``without_stages``
        (a run with no stages ends by its own older rule there) is not sent the field."""
        if id(client) in self._unstaged and "without_stages" in body:
            return {k: v for k, v in body.items() if k != "without_stages"}
        return body

    def _patch(self, run: RunHandle, body: dict[str, Any]) -> Any:
        """``PATCH /runs/{id}``. A master from before ``without_stages`` refuses the field as
        unknown, and with it the run's end (the run was left running, then crashed): asked
        again without it, as every later end to that master is."""
        client = self.client(run)
        path = f"/runs/{quote_ref(run.id)}"
        told = self._told(client, body)
        try:
            return client.call("PATCH", path, json=told)
        except errors.ValidationFailed as exc:
            if "without_stages" not in told or not _names_field(exc, "without_stages"):
                raise
            self._unstaged.add(id(client))
        return client.call("PATCH", path, json=self._told(client, body))

    def _create(self, run: RunHandle, body: dict[str, Any]) -> Any:
        """``POST /runs``, asking the master to watch the run from now: one that never got a
        sign of life (its end lost at exit, its process killed at once) stayed running for
        good. A master from before ``watched`` refuses the field: asked again without it."""
        client = self.client(run)
        if id(client) not in self._unwatching:
            try:
                return client.call("POST", "/runs", json=dict(body, watched=True))
            except errors.ValidationFailed as exc:
                if not _names_field(exc, "watched"):
                    raise
                self._unwatching.add(id(client))
        return client.call("POST", "/runs", json=body)


def _names_field(exc: errors.ValidationFailed, field: str) -> bool:
    """Whether the master's refusal names ``field`` among the body's problems."""
    found = exc.details.get("errors") if isinstance(exc.details, dict) else None
    return any(isinstance(e, dict) and e.get("field") == field for e in found or ())
