"""Titan's own log (the master's, the worker's) shows what others wrote, never acts on it."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = r"""
import logging
from titan.log_format import log_to_stderr
log_to_stderr(logging.INFO, "%(levelname)s %(message)s")
log = logging.getLogger("titan.master")
log.warning("worker %s is lost", "w1\n2026-11-28 ERROR forged\x1b]0;PWNED\x07\u202e")
try:
    raise ValueError("bad\x1b[2J value")
except ValueError:
    log.exception("request failed for %r", "k\r")
"""


def test_the_log_escapes_controls_in_messages_and_keeps_a_tracebacks_lines() -> None:
    # A real process writing to its real stderr, as `titan master` and `titan worker` do.
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                         check=True, timeout=60).stderr
    lines = out.splitlines()
    assert lines[0] == "WARNING worker w1\\n2026-11-28 ERROR forged\\e]0;PWNED\\x07\\u202e is lost"
    assert lines[1] == "ERROR request failed for 'k\\r'"
    assert lines[2] == "Traceback (most recent call last):"  # its own newlines kept
    assert lines[-1] == "ValueError: bad\\e[2J value"
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out


UVICORN = r"""
import logging, types
from titan.log_format import log_to_stderr
from titan.master.server import uvicorn_config
log_to_stderr(logging.INFO, "%(name)s %(levelname)s %(message)s")
config = types.SimpleNamespace(max_body_bytes=1 << 20, tls_cert=None, tls_key=None)
uvicorn_config(lambda scope, receive, send: None, config).load()  # sets up uvicorn's logging
logging.getLogger("uvicorn.error").warning("bad header %s", "x\n2026-11-28 ERROR forged\x1b[2J")
logging.getLogger("uvicorn.error").info("not shown: the master's uvicorn says warnings only")
"""


def test_uvicorn_s_own_lines_go_through_the_same_escaping() -> None:
    # Its default logging config gave its loggers handlers of their own, writing raw.
    out = subprocess.run([sys.executable, "-c", UVICORN], capture_output=True, text=True,
                         check=True, timeout=60).stderr
    assert out.splitlines() == ["uvicorn.error WARNING bad header x\\n2026-11-28 ERROR forged"
                                "\\e[2J"], out
