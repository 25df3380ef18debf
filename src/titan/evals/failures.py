"""Why an evaluation run failed: the error-class table, HTTP classification, failure rules.

A failed run carries one ``error_class``; the pages render it as a chip whose palette tells the
reader who has to act: *danger* — fix the agent; *warning* — a transient problem, retrying
is reasonable; *amber* — the agent and Titan disagree about the integration (drift). The chip
labels and palettes follow the product page exactly, so the pages never invent their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from titan.evals.tasks import FailureRule

PALETTES = {"danger": "fix the agent", "warning": "retry-friendly", "amber": "integration drift"}
#: docs/troubleshooting.md as the dashboard serves it: its failure-mode table, then a section
#: per error class whose heading is the class in words ("Agent timeout": #agent-timeout).
TROUBLESHOOTING = "/docs/troubleshooting"
FAILURE_MODES = f"{TROUBLESHOOTING}#failure-modes"


@dataclass(frozen=True)
class ErrorClass:
    name: str
    chip: str  # the label on the chip
    palette: str  # a key of PALETTES
    hint: str  # the one-line hover text

    @property
    def docs(self) -> str:
        """The class's section of the troubleshooting page: what to check, what Titan does."""
        return f"{TROUBLESHOOTING}#{self.name.replace('_', '-')}"


ERROR_CLASSES: dict[str, ErrorClass] = {c.name: c for c in (
    ErrorClass("auth_failed", "auth failed", "danger",
               "The agent endpoint rejected Titan's credentials (HTTP 401/403): check the "
               "agent's auth settings."),
    ErrorClass("agent_timeout", "timeout", "warning",
               "The agent did not answer within the run's time limit (or answered 408/504): "
               "retry, or raise the timeout."),
    ErrorClass("agent_5xx", "5xx", "danger",
               "The agent failed: its endpoint answered with a server error (HTTP 5xx), or "
               "its job crashed (exit code and log tail in the error): see the agent's own "
               "logs."),
    ErrorClass("agent_4xx", "4xx", "amber",
               "The agent endpoint refused the request (HTTP 4xx): its expected request "
               "shape has probably drifted from Titan's."),
    ErrorClass("agent_bad_response", "bad response", "warning",
               "The agent answered, but not with a JSON object holding a string "
               "final_response."),
    ErrorClass("agent_unreachable", "unreachable", "danger",
               "Titan could not connect to the agent endpoint (refused, DNS or bad URL): "
               "check that it is running and reachable."),
    ErrorClass("proxy_misconfigured", "proxy misconfigured", "amber",
               "The agent called the tool proxy with a wrong URL, token or run id, or named a "
               "tool the task does not declare: check the proxy settings handed to the agent "
               "and the task's tools."),
    ErrorClass("contract_error", "contract error", "danger",
               "The agent broke the tool contract: arguments that do not match the declared "
               "input schema."),
    ErrorClass("transport_error", "transport error", "warning",
               "A network hop failed mid-run (connection dropped, tool endpoint down); the "
               "run is re-dispatched once automatically."),
    ErrorClass("internal_error", "internal error", "danger",
               "Titan itself failed or lost the run (a master restart during an HTTP call, "
               "a job agent's worker lost mid-run): re-run the task; if it recurs with "
               "nothing to explain it, report it with the run id."),
)}

# Transient failures: the run is re-dispatched once automatically (a second failure stands).
RETRYABLE = frozenset({"transport_error"})


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _body_text(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        return body
    try:
        return json.dumps(body, default=str)
    except (TypeError, ValueError):
        return repr(body)


def classify_http(status: int | None, exc: BaseException | None,
                  body: Any) -> tuple[str | None, str]:
    """Classify one call to an HTTP agent endpoint: (error class or None, one-line detail).

    Pass the exception when the request raised (``status`` is then None), else the status and
    the body (parsed JSON when it parsed, the text otherwise).
    """
    if exc is not None:
        what = _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        # Order matters: ConnectTimeout is a TimeoutException, not a ConnectError.
        if isinstance(exc, httpx.TimeoutException):
            return "agent_timeout", f"the agent did not answer in time ({what})"
        if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol | httpx.ProxyError
                      | httpx.InvalidURL):
            return "agent_unreachable", f"could not connect to the agent ({what})"
        if isinstance(exc, httpx.DecodingError | httpx.TooManyRedirects):
            return "agent_bad_response", f"the agent's answer could not be read ({what})"
        if isinstance(exc, httpx.TransportError):
            # Connected, then the connection broke (reset, protocol error): a blip, not a
            # misconfiguration, so it is worth one automatic retry.
            return "transport_error", f"the connection to the agent failed ({what})"
        return "internal_error", f"calling the agent failed inside Titan ({what})"
    if status is None:
        return "internal_error", "no HTTP status and no exception for the agent call"
    # An error status is reported without its body: an error page says nothing about the
    # agent's answer, and may say what the master can reach that readers of the run cannot.
    if status in (401, 403):
        return "auth_failed", f"HTTP {status} from the agent endpoint"
    if status in (408, 504):
        return "agent_timeout", f"HTTP {status} from the agent endpoint"
    if status >= 500:
        return "agent_5xx", f"HTTP {status} from the agent endpoint"
    if status >= 400:
        return "agent_4xx", f"HTTP {status} from the agent endpoint"
    snippet = _one_line(_body_text(body), 200)
    said = f": {snippet}" if snippet else ""
    if not 200 <= status < 300:
        return "agent_bad_response", f"unexpected HTTP {status} from the agent endpoint"
    if not isinstance(body, dict):
        return "agent_bad_response", f"the answer is not a JSON object{said}"
    if not isinstance(body.get("final_response"), str):
        got = type(body.get("final_response")).__name__ if "final_response" in body else None
        why = f"final_response must be a string, got {got}" if got else "no final_response"
        return "agent_bad_response", f"{why} in the agent's answer{said}"
    return None, f"HTTP {status}"


def match_failure_rule(rules: list[FailureRule], tool: str, arguments: dict[str, Any],
                       call_number: int, fired: dict[int, int]) -> int | None:
    """Index of the first rule that fires for this call, or None.

    ``call_number`` is the 1-based count of calls to ``tool`` in the run so far, this one
    included; ``fired`` counts firings per rule index. The caller increments
    ``fired[index]`` once it has injected the payload, so a rule that is only consulted (a
    dry run, a call that failed earlier) does not use up its ``times``.
    """
    for index, rule in enumerate(rules):
        if rule.matches(tool, arguments, call_number, fired.get(index, 0)):
            return index
    return None
