"""Job scripts the zygote has compiled, kept by the blob they came from, so that its children
run them without reading or compiling them again.

A forked child used to read its script from the worker's blob cache and ``compile()`` it,
every job: for the trivial script of ``bench/side_by_side.py`` ~40 copy-on-write faults, and
for a stage script of a few hundred lines a millisecond or more of CPU, paid again by each
step of an agent loop that runs the same stages over and over. The zygote now compiles a
script once, after the first job that ran it has been handed off and when no request waits
(never on a job's path: a large script's compile would hold up the forks behind it), and
every child forked after that finds the code object in memory it shares with the zygote.

What makes this safe is the key. A request names its source as a blob of the worker's cache,
a file named by the SHA-256 of its content (``titan.worker.workspace``); the zygote reads it,
checks that the content has that hash, and only then compiles it, so a cached code object is
the compilation of exactly those bytes whatever later happens to that path. The script's own
path goes into the key too (it is the code's ``co_filename``, what tracebacks and
``__file__``-relative code see), and only an absolute one is cached: a relative path would
name different files from different working directories.

Bounded: at most :data:`MAX_SCRIPTS` scripts and :data:`MAX_BYTES` of their source, the least
recently used dropped first; a script over :data:`MAX_SCRIPT_BYTES` is never cached (its
child reads and compiles it, as before). One that does not compile is not cached either: its
child compiles it and reports the error the way ``python script.py`` would, nor one whose
compilation warns (an invalid escape sequence): its child compiles it and the warning is in
the job's log, not the zygote's.
"""

from __future__ import annotations

import gc
import os
import re
import warnings
from types import CodeType
from typing import Any

MAX_SCRIPTS = 128
MAX_BYTES = 8 << 20
MAX_SCRIPT_BYTES = 512 << 10

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: (blob path, script path) → (source, code), least recently used first.
_cache: dict[tuple[str, str], tuple[bytes, CodeType]] = {}
_held = 0  # bytes of source in _cache


def _key(request: dict[str, Any]) -> tuple[str, str] | None:
    source, script = request.get("source"), request.get("script")
    if not isinstance(source, str) or not isinstance(script, str) or not os.path.isabs(script) \
            or not _SHA256.fullmatch(os.path.basename(source)):
        return None
    return source, os.path.normpath(script)


def _touch(key: tuple[str, str]) -> bool:
    """Whether ``key`` is held; if it is, it is now the most recently used (last)."""
    if key not in _cache:
        return False
    _cache[key] = _cache.pop(key)
    return True


def lookup(request: dict[str, Any]) -> tuple[bytes, CodeType] | None:
    """The request's script as the zygote compiled it — ``(source, code)`` — or None. Called
    in a spare child, which learns its job after the fork: it neither reorders nor changes the
    cache (that would only copy its pages)."""
    key = _key(request)
    return None if key is None else _cache.get(key)


def take(request: dict[str, Any]) -> tuple[tuple[bytes, CodeType] | None, bool]:
    """In the zygote, before it forks the request's child: its script as compiled already
    (``(source, code)``, now the most recently used) or None, and whether :func:`remember`
    could add it (not held, and cacheable). The child finds the answer made: looked up in the
    child, the key (a pattern match, a path normalised) cost it ~40 copy-on-write faults, a
    ninth of a trivial job's; the zygote works the key out once for both questions."""
    key = _key(request)
    if key is None:
        return None, False
    held = _cache.get(key)
    if held is None:
        return None, True
    _cache[key] = _cache.pop(key)
    return held, False


def remember(request: dict[str, Any]) -> bool:
    """In the zygote, once the request's job is on its way: compile its script for the children
    that come after; whether it is cached now. Never raises: a script that cannot be cached
    is read and compiled by each child, as it always was."""
    global _held
    key = _key(request)
    if key is None:
        return False
    if _touch(key):
        return True
    import hashlib  # the zygote's alone: not loaded into the lean zygote before it is needed

    blob, script = key
    try:
        with open(blob, "rb") as fh:
            source = fh.read(MAX_SCRIPT_BYTES + 1)
        if len(source) > MAX_SCRIPT_BYTES or hashlib.sha256(source).hexdigest() != \
                os.path.basename(blob):
            return False
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            code = compile(source, script, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    if said:  # compiling it warns: its child compiles it, so the warning is in the job's log
        return False
    _cache[key] = (source, code)
    _held += len(source)
    while len(_cache) > MAX_SCRIPTS or _held > MAX_BYTES:
        dropped, _code = _cache.pop(next(iter(_cache)))
        _held -= len(dropped)
    # The new code's constants out of the collector's sight, as the zygote's start-up modules
    # are (zygote.preload): a child's collections would otherwise walk, and so copy, them.
    gc.collect()
    gc.freeze()
    return True


def clear() -> None:
    """Forget every script (tests)."""
    global _held
    _cache.clear()
    _held = 0
