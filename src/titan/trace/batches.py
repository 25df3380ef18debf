"""Recorded actions on their way to the master, a request at a time: each action's JSON, how
many and how large, the post itself, and what a master's refusal names.

The recorder (:mod:`titan.trace.recorder`) sends a run's queued actions in batches of at most
:data:`MAX_BATCH` actions and :data:`MAX_BATCH_BYTES`; a batch the master finds too large is
halved until each part fits. One action larger than :data:`MAX_ACTION_BYTES` is sent with its
payloads replaced by a note of their size and SHA-256: over the master's body limit (64 MiB by
default) a master ends the upload by closing the connection, which reads as a master out of
reach, and the action was sent again for ever, with every action after it held behind it.
Refused actions are counted; the first :data:`SAID_REFUSALS` are said on stderr as they come,
the total at exit (a flood of refusals was a flood of lines on the program's stderr).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any

from titan import errors
from titan.trace import canonical
from titan.trace.context import RunHandle
from titan.url_paths import quote_ref

MAX_BATCH = 2000
SAID_REFUSALS = 5  # refusals said on stderr as they come; the rest counted
#: Answers sent again later: the master busy or timing out. A 401 is not among them: the
#: master answered and refused the token, which waiting does not change (it was retried
#: for the exit's whole wait, then said as "the master could not be reached" — a QA pass).
RETRIED = (408, 429)
#: Bytes of actions sent in one request at most (the master's default body limit is 64 MiB):
#: a batch of large payloads goes in several requests, and one the master still finds too
#: large is split (a 413 refused every action of it, small ones included).
MAX_BATCH_BYTES = 16 * 1024 * 1024
#: An action whose JSON is larger goes with its payloads noted, not sent (see above).
MAX_ACTION_BYTES = 60 << 20
#: A request body this large that fails to send may have been refused for its size: the
#: recorder asks whether the master answers before calling it out of reach.
LARGE_BODY = 1 << 20


def encode(meta: dict[str, Any], inputs: str, outputs: str | None) -> str:
    """One action's JSON, splicing in the already-canonical inputs and outputs."""
    head = canonical.utf8(json.dumps(meta, separators=(",", ":"), ensure_ascii=False,
                                     default=str))
    return f'{head[:-1]},"inputs":{inputs},"outputs":{outputs or "null"}}}'


def fitted(meta: dict[str, Any], inputs: str, outputs: str | None) -> str:
    """:func:`encode`, with payloads too large to send replaced by a note of what they were
    (``{"titan_payload_omitted": {"bytes": n, "sha256": "..."}}``), the action kept."""
    text = encode(meta, inputs, outputs)
    if len(text) * 4 <= MAX_ACTION_BYTES or len(text.encode()) <= MAX_ACTION_BYTES:
        return text
    return encode(meta, _noted(inputs), None if outputs is None else _noted(outputs))


def _noted(payload: str) -> str:
    if len(payload) < 1 << 20:
        return payload
    raw = payload.encode()
    return json.dumps({"titan_payload_omitted": {
        "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
        "why": f"the action was over {MAX_ACTION_BYTES >> 20} MiB, more than one request may "
               "carry"}}, sort_keys=True, separators=(",", ":"))


def refused_indexes(exc: errors.APIError, size: int) -> set[int]:
    """The positions in a batch the master's 400 names: ``details.errors[].index`` (an
    action's fields), or ``details.field`` as ``actions[3]...`` (a value JSON itself refuses
    there: an integer past 64 bits, nesting past 64 levels)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    found = details.get("errors")
    if isinstance(found, list):
        return {e["index"] for e in found if isinstance(e, dict)
                and type(e.get("index")) is int and 0 <= e["index"] < size}
    where = re.match(r"actions\[(\d+)\]", str(details.get("field") or ""))
    return {int(where.group(1))} if where and int(where.group(1)) < size else set()


class Sending:
    """How the recorder posts a batch of one run's actions and takes a master's refusals
    (part of :class:`~titan.trace.recorder.Recorder`)."""

    refused: int
    _said_refusals: int

    def client(self, run: RunHandle | None = None) -> Any: ...  # the recorder's

    def _post_actions(self, run: RunHandle, batch: list[str]) -> dict[str, Any] | None:
        # A loop, not a recursion: a master naming one refused action per answer (a value
        # JSON refuses is found while parsing) had 1,000 bad actions of a batch recurse past
        # Python's limit, the batch was never taken off the queue, and nothing more was sent.
        rounds = 0
        while batch:
            body = ('{"actions":[' + ",".join(batch) + "]}").encode()
            try:
                response = self.client(run).send(
                    "POST", f"/runs/{quote_ref(run.id)}/actions", body=body,
                    headers={"Content-Type": "application/json"})
                reply: dict[str, Any] = response.json()
                return reply
            except errors.ConnectionFailed:
                # Past its body limit a master answers 413 and closes the connection before
                # reading the body: an upload larger than the socket's buffers fails while
                # it is written, as if the master were gone. Asked a small question, it
                # answers: too large, then, not out of reach (retried for ever before).
                if len(body) < LARGE_BODY or not self._answers(run):
                    raise
                why = "it closed the connection on the upload, as a master past its limit does"
            except errors.PayloadTooLarge as exc:
                why = str(exc)
            except errors.APIError as exc:
                if exc.status >= 500 or exc.status in RETRIED:
                    raise
                if exc.status == errors.Unauthorized.status:
                    self._refusal(run, len(batch), str(exc), token=True)
                    return None
                bad = refused_indexes(exc, len(batch))
                if not bad or len(bad) == len(batch):
                    self._refusal(run, len(batch), str(exc))
                    return None
                # The master names the actions it refuses: the others of the batch are sent
                # again without them (one bad value threw the whole batch away).
                self._refusal(run, len(bad), str(exc))
                batch = [a for i, a in enumerate(batch) if i not in bad]
                rounds += 1
                if rounds >= 4 and len(batch) > 1:
                    # Named one at a time: the rest go one by one, each sent once, rather
                    # than the whole remainder again for every bad one.
                    replies = [self._post_actions(run, [a]) for a in batch]
                    return next((r for r in reversed(replies) if r is not None), None)
                continue
            if len(batch) > 1:  # too large: halves until each fits, or one alone does not
                half = len(batch) // 2
                first = self._post_actions(run, batch[:half])
                return self._post_actions(run, batch[half:]) or first
            self._refusal(run, 1, f"as too large ({len(body):,} bytes): {why}")
            return None
        return None

    def _answers(self, run: RunHandle) -> bool:
        """Whether the run's master answers a small request now."""
        try:
            self.client(run).call("GET", "/health")
        except errors.TitanError:
            return False
        return True

    def _refusal(self, run: RunHandle, count: int, why: str, token: bool = False) -> None:
        """Count refused actions; say the first few (a flood of refusals was a flood of
        lines on the program's stderr), and the total at exit. ``token``: the master refused
        the credential itself (401), not the actions."""
        self.refused += count
        if self._said_refusals < SAID_REFUSALS:
            self._said_refusals += 1
            more = " (further refusals are counted and totalled at exit)" \
                if self._said_refusals == SAID_REFUSALS else ""
            what = "an action" if count == 1 else f"{count} actions"
            if token:
                warn(f"{token_refused(why)}: {what} of run {run.id} not recorded{more}")
                return
            warn(f"the master refused {what} of run {run.id}"
                  f"{' ' if why.startswith('as ') else ': '}{why}{more}")


def token_refused(why: str) -> str:
    """What a 401 is said as: the master answered, and refused the credential (revoked,
    or another master's); TITAN_TOKEN must change, so no wait helps."""
    return f"the master refused the token ({why})"


def change_refused(kind: str, run_id: str, exc: errors.APIError) -> str:
    """What a refused run start or end is said as."""
    if exc.status == errors.Unauthorized.status:
        return f"{token_refused(str(exc))}: run {run_id} not " \
            f"{'opened' if kind == 'create' else 'updated'}"
    return f"the master refused to {'open' if kind == 'create' else 'update'} run {run_id}: {exc}"


def exit_end_refused(run_id: str, body: dict[str, Any], exc: errors.APIError) -> str | None:
    """What the exit's end of a driven run is said as when the run had already ended (an
    operator cancelled it, another process ended it): None when there is nothing to say (the
    process ended well, its runs end as their stages did), else that its failure is not on
    the run. Not "the master refused": nothing went wrong in the SDK or the master."""
    if body.get("status") == "ended":
        return None
    details = exc.details if isinstance(exc.details, dict) else {}
    ended = details.get("status") or "already"
    said = f"{body.get('status')}: {body['error']}" if body.get("error") else body.get("status")
    return (f"run {run_id} had already ended {ended} when this process exited: its end as "
            f"the process exited ({said}) was not recorded")


def warn(message: str) -> None:
    try:
        sys.stderr.write(f"[titan.trace] {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
