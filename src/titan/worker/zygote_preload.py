"""What the worker's zygote imports before its first fork (:mod:`titan.worker.zygote`), so
that every job forked from it finds those modules warm: the full zygote's list, the lean
zygote's, and ``TITAN_ZYGOTE_PRELOAD``'s."""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys

from titan.worker import child

#: Imported before the first fork so children find them warm. Nothing here may start a
#: thread or touch a GPU at import time.
PRELOAD = (
    "json", "re", "random", "subprocess", "logging", "pathlib", "typing", "dataclasses",
    "datetime", "urllib.parse", "http.client", "argparse", "collections", "hashlib",
    "httpx", "yaml", "titan", "titan.client", "titan_sdk",
    # Recording: a job of an agent run has its titan.llm calls recorded without importing
    # titan.trace itself (loading it hooks titan.llm; its sender thread starts on first use).
    "titan.trace",
)
#: The lean zygote's: what a forked child itself runs on, nothing more. Its address space is
#: a third of the full one's, and fork, copy-on-write faults and exit all cost by the page:
#: a script that imports only what is already here (the worker checks, titan.worker.imports)
#: is forked from it for ~1 ms less CPU. Not ``threading``: every child of a zygote that
#: loaded it runs its after-fork hook (~100 copy-on-write faults, ~0.3 ms of CPU); the
#: child looks for it in ``sys.modules`` only to join a job's own threads.
LEAN_PRELOAD = ("json", "random", "types", "importlib.machinery", "atexit", "io",
                "contextlib", "traceback")


def preload(lean: bool = False) -> None:
    for name in LEAN_PRELOAD if lean else PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    extra = "" if lean else os.environ.get("TITAN_ZYGOTE_PRELOAD", "")
    for name in filter(None, (n.strip() for n in extra.split(","))):
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a bad preload must not stop the worker
            print(f"titan zygote: TITAN_ZYGOTE_PRELOAD: cannot import {name!r} "
                  f"({type(exc).__name__}: {str(exc)[:300]}); jobs still run, and import it "
                  "themselves when they need it", file=sys.stderr)
    child.premake()
    # Every job compiles its script, and the first compile() in a process sets the parser and
    # compiler up: done in each child, that cost ~140 copy-on-write faults and ~1.2 ms of CPU
    # per job wherever Titan's modules load from .pyc files (any installed Titan), since then
    # the zygote never compiled anything itself. Once here, every child inherits it ready.
    compile("x = 1\n", "<titan zygote warm-up>", "exec", dont_inherit=True)
    # Everything imported so far lives as long as the zygote: out of the collector's sight,
    # a child's garbage collections do not touch (and so copy) those pages.
    gc.collect()
    gc.freeze()
    if _thread_count() > 1:
        print("titan zygote: a preloaded module started a thread; forked jobs may deadlock",
              file=sys.stderr)


def _thread_count() -> int:
    """The zygote's threads, C-level ones included, without importing threading (the lean
    zygote does not load it: every child would run its after-fork hook)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        threading = sys.modules.get("threading")
        return threading.active_count() if threading is not None else 1
