"""Titan's own log on stderr (the master's, ``titan up``'s, the worker's), safe to read.

A log message carries values others chose: a worker's name, a job's error, a client's key.
Written raw, a newline in one forges a whole log line ("... ERROR this master was replaced")
and an escape sequence acts on the terminal of whoever tails the log (sets its title, writes
its clipboard). The formatter here writes every control character of a record's message as
its escape (:func:`titan.formats.shown`), whoever logged it, so no call site has to remember;
a traceback keeps its own line breaks. A leaf: the master and the worker install it.
"""

from __future__ import annotations

import logging
from types import TracebackType

from titan.formats import shown

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class EscapingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose message is one line of shown text."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        # ``record.message`` is set afresh by each formatter's format(), so changing it here
        # does not reach another handler of the same record.
        record.message = shown(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: _ExcInfo) -> str:  # noqa: N802
        return shown(super().formatException(ei), keep="\n")

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return shown(super().formatStack(stack_info), keep="\n")


def log_to_stderr(level: int | str, fmt: str) -> None:
    """``logging.basicConfig(level=level, format=fmt)`` with :class:`EscapingFormatter`: as
    basicConfig, nothing is changed when the root logger already has a handler (an embedding
    program's, or a test runner's). The handler too shows nothing below ``level``, as
    Python's last-resort handler does: a library that turns its own logger up (websockets at
    INFO) is not heard below it."""
    quiet_request_logs()
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(fmt))
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(level)


def quiet_request_logs() -> None:
    """httpx logs each request at INFO with its whole URL, which may carry credentials (a
    collector's ``user:pw@`` or ``?api_key=``, a provider's ``?key=``): one line a request
    drowns a process's own and leaks what the URL holds. Only its warnings are heard, unless
    its level was set already (by an embedding program, or ``logging`` configuration)."""
    httpx_log = logging.getLogger("httpx")
    if httpx_log.level == logging.NOTSET:
        httpx_log.setLevel(logging.WARNING)
