"""Threads started inside a run record into it: its run, actor path and parent action follow.

Python 3.11 starts a thread with an empty context (contextvars), so a tool called from a
``threading.Thread`` or a ``ThreadPoolExecutor`` inside ``titan.trace.run`` was recorded
nowhere, and one inside a job lost its sub-agent and parent. :func:`install` (run when
``titan.trace`` loads) makes both carry the caller's context as ``asyncio.to_thread`` does:

- ``Thread.start`` runs the thread in a copy of the starter's context;
- ``ThreadPoolExecutor.submit`` runs each task in a copy of the submitter's context — per
  task, since a pool's threads are reused by tasks of other runs (so a pool's own threads
  keep the empty context they would have had).

Only when the starter is inside a run, an actor or an action (one of :mod:`.context`'s
variables is set): elsewhere threads start exactly as before.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.thread
import contextvars
import functools
import threading
from typing import Any

from titan.trace import context

_installed = False
#: What a ThreadPoolExecutor's threads run: they take context per task, never at start.
_POOL_WORKER = getattr(concurrent.futures.thread, "_worker", None)


def install() -> None:
    """Patch ``Thread.start`` and ``ThreadPoolExecutor.submit`` once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    start = threading.Thread.start
    submit: Any = concurrent.futures.ThreadPoolExecutor.submit

    @functools.wraps(start)
    def start_in_context(self: threading.Thread) -> None:
        if context.in_scope() and getattr(self, "_target", None) is not _POOL_WORKER:
            # On the instance, so a subclass's own run() is the one wrapped.
            self.run = functools.partial(contextvars.copy_context().run, self.run)  # type: ignore[method-assign]
        start(self)

    @functools.wraps(submit)
    def submit_in_context(self: concurrent.futures.ThreadPoolExecutor, fn: Any, /,
                          *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if context.in_scope():
            fn, args = contextvars.copy_context().run, (fn, *args)
        future: concurrent.futures.Future[Any] = submit(self, fn, *args, **kwargs)
        return future

    threading.Thread.start = start_in_context  # type: ignore[method-assign]
    concurrent.futures.ThreadPoolExecutor.submit = submit_in_context  # type: ignore[method-assign,assignment]
