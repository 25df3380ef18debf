"""The agent side of an evaluation run: calling tools through Titan's proxy, answering, and
sending live trace events.

A job agent finds everything in its environment (``TITAN_EVAL_RUN``, ``TITAN_TOOL_PROXY``,
and in ``TITAN_TOKEN`` its run's agent token, which its worker hands it instead of a job
token); a coding run's agent, run by its coding job, finds the agent token that job asked for
it (``TITAN_TOOL_TOKEN``, :mod:`titan.evals.agent_env`) instead. An HTTP agent gets ``proxy.url``
and ``proxy.token`` in the request Titan sends it and builds a :class:`Proxy` from them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from titan import retry
from titan.errors import ConfigError, ToolCallFailed

log = logging.getLogger("titan.evals")


class Proxy:
    """One evaluation run's proxy. ``url`` is the run's tools URL
    (``.../api/v1/runs/<run>/tools``) as Titan hands it to HTTP agents."""

    def __init__(self, url: str, token: str, *, timeout: float = 300.0) -> None:
        import httpx

        from titan.client.plain_http import tcp_transport
        from titan.client.tls import httpx_verify

        self.tools_url = url.rstrip("/")
        self.run_url = self.tools_url.rsplit("/tools", 1)[0]
        # Titan's own transport, so over plain HTTP the token goes only to a server that
        # proved it is the master (titan/master_proof.py), as every other client's does.
        self._http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"},
                                  trust_env=False, transport=tcp_transport(
                                      max_connections=4, max_keepalive=2,
                                      verify=httpx_verify(self.tools_url)))

    def _post(self, url: str, body: Any, actor: str | None = None, *,
              replayable: bool = False) -> Any:
        """POST to the proxy, riding out a master restart (:mod:`titan.retry`): a request
        that never reached it is sent again until ``TITAN_MASTER_RESTART_GRACE`` runs out; one
        whose reply was lost only when ``replayable`` (a tool call is not: it may have changed
        the world already)."""
        import httpx

        from titan.client.master_check import TokenUnknown
        from titan.errors import APIError, Unauthorized

        headers = {"X-Titan-Actor": actor} if actor else {}
        backoff = retry.Backoff(retry.restart_grace())
        while True:
            try:
                response = self._http.post(url, json=body, headers=headers)
            except TokenUnknown as exc:
                # The master does not know this token (proven nowhere: it was not sent).
                raise Unauthorized(f"{url.rsplit('/', 1)[-1]}: {exc}; check the proxy token "
                                   "this agent was given (proxy.token, TITAN_TOOL_TOKEN)"
                                   ) from None
            except httpx.HTTPError as exc:
                delay = backoff.next_delay() if retry.retryable_error(
                    exc, replayable=replayable) else None
                if delay is None:
                    raise ToolCallFailed(url.rsplit("/", 1)[-1], "proxy_unreachable",
                                         f"the tool proxy at {url} is unreachable: {exc}"
                                         + (f" (after {backoff.tries} tries)"
                                            if backoff.tries > 1 else "")) from exc
                time.sleep(delay)
                continue
            if retry.retryable_status(response.status_code, replayable=replayable):
                delay = backoff.next_delay()
                if delay is not None:
                    time.sleep(delay)
                    continue
            break
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                err = {"code": "http_error", "message": response.text[:500]}
            raise APIError(err.get("message"), code=err.get("code"), status=response.status_code,
                           details=err.get("details") or {})
        return response.json()

    def call(self, tool: str, arguments: dict[str, Any] | None = None, *,
             actor: str | None = None) -> Any:
        """Call a tool; its result. Raises :class:`~titan.errors.ToolCallFailed` when the
        simulator could not answer or the real endpoint failed (an injected failure is a
        result: its payload is what the tool said)."""
        got = self._post(f"{self.tools_url}/{tool}", {"arguments": arguments or {}}, actor)
        if got.get("source") in ("error", "transport_error"):
            raise ToolCallFailed(tool, got["source"], got.get("error") or "failed")
        return got.get("result")

    def respond(self, final_response: str, messages: list[Any] | None = None) -> None:
        self._post(f"{self.run_url}/eval/response",
                   {"final_response": final_response, "messages": messages})

    def event(self, kind: str, data: Any = None, *, actor: str | None = None,
              occurred_at: float | None = None) -> None:
        # A live trace event sent twice is harmless (it only shows in the timeline twice).
        item: dict[str, Any] = {"kind": kind, "data": data}
        if occurred_at is not None:
            item["__occurred_at"] = occurred_at
        self._post(f"{self.run_url}/eval/events", {"events": [item]}, actor, replayable=True)

    def handoff(self, to: str, reason: str | None = None, *, actor: str | None = None) -> bool:
        """Record a transfer of control from ``actor`` (the agent itself when None) to the
        sub-agent named ``to`` (titan.evals.handoffs). Whether it was recorded: a malformed
        one (``to`` missing, not a name) is refused by the master, which says why on the
        run, and only logged here — a trace event does not end the agent's run."""
        from titan.errors import APIError
        from titan.evals.handoffs import ROOT_ACTOR

        if not isinstance(to, str | int | float | bool | list | dict | None):
            # Not JSON: sent described, so the master still refuses it and says so on the run.
            to = {"type": type(to).__name__, "repr": repr(to)[:100]}
        data = {"from": actor or ROOT_ACTOR, "to": to, "reason": reason}
        try:
            self.event("handoff", data, actor=actor)
        except APIError as exc:
            if exc.code != "bad_handoff":
                raise
            log.warning("handoff not recorded: %s", exc.message)
            return False
        return True


_default: Proxy | None = None


def in_evaluation() -> bool:
    return bool(os.environ.get("TITAN_EVAL_RUN"))


def default_proxy() -> Proxy:
    """The proxy of the evaluation run this process is the agent of (from the environment)."""
    global _default
    if _default is None:
        run = os.environ.get("TITAN_EVAL_RUN")
        base = os.environ.get("TITAN_TOOL_PROXY")
        token = os.environ.get("TITAN_TOOL_TOKEN") or os.environ.get("TITAN_TOKEN")
        if not (run and base and token):
            raise ConfigError("not inside an evaluation run: TITAN_EVAL_RUN, TITAN_TOOL_PROXY "
                              "and a token are set by Titan when it dispatches a task")
        _default = Proxy(f"{base.rstrip('/')}/{run}/tools", token)
    return _default


def task() -> dict[str, Any]:
    """The task this agent was dispatched with: ``id``, ``user_instruction``, ``tools``."""
    raw = os.environ.get("TITAN_EVAL_TASK")
    if not raw:
        raise ConfigError("not inside an evaluation run (TITAN_EVAL_TASK is not set)")
    value: dict[str, Any] = json.loads(raw)
    return value
