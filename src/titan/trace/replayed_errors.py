"""A recorded exception raised again in a replay: of the class the agent's code raised, so its
``except`` clauses catch it as they did in the original run."""

from __future__ import annotations

import sys
from typing import Any, Protocol

from titan import errors


class _Failed(Protocol):
    """What of a recorded call this needs (a :class:`titan.trace.replay.Recorded`)."""

    @property
    def error_type(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...


def replayed_error(recorded: _Failed) -> BaseException:
    """The recorded exception, raised again: of the same class, found by its name among
    Titan's, Python's and then the loaded modules' (the script's own ``QuotaError``,
    ``json.JSONDecodeError``), so the agent's ``except`` clauses catch it as they did; else
    :class:`~titan.errors.ReplayedError` naming the original type."""
    message = recorded.error_message or ""
    cls = _exception_class(recorded.error_type or "")
    if cls is not None:
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - a constructor wanting other arguments
            exc = cls.__new__(cls)
            exc.args = (message,)
            return exc
    return errors.ReplayedError(f"{recorded.error_type}: {message}",
                                error_type=recorded.error_type)


def _exception_class(name: str) -> type[Exception] | None:
    """The one exception class of that name: Titan's, a builtin, the script's (``__main__``)
    or, when exactly one loaded module defines it, that module's."""
    import builtins

    def fits(x: Any) -> bool:
        return isinstance(x, type) and issubclass(x, Exception)

    if not name.isidentifier():
        return None
    for home in (errors, builtins, sys.modules.get("__main__")):
        found = getattr(home, name, None)
        if fits(found):
            return found
    candidates = {found for module in list(sys.modules.values())
                  if fits(found := getattr(module, name, None))}
    return candidates.pop() if len(candidates) == 1 else None
