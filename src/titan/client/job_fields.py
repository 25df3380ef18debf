"""The checks a job's fields pass as a :class:`~titan.client.job.TitanJob` is built: each
bad value refused with a :class:`ValidationFailed` naming its field and quoting the value, by
the master's own rules where it has them (:mod:`titan.formats`), so a job is refused before it
is sent."""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from titan.errors import ValidationFailed
from titan.formats import args_problem, env_problem, name_problem

#: Makes the error for a bad field: ``bad(field, message)``.
Bad = Callable[[str, str], ValidationFailed]


def check_name(value: Any, what: str, field: str) -> str:
    """A job id or DAG name, by the master's own rule (:func:`titan.formats.name_problem`)."""
    why = name_problem(value, what)
    if why is not None:
        raise invalid(field, why)
    return str(value)


def invalid(field: str, message: str, job_id: Any = None) -> ValidationFailed:
    details: dict[str, Any] = {"field": field}
    if isinstance(job_id, str):
        details["job_id"] = job_id
    return ValidationFailed(message, details=details)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_seconds(value: Any) -> bool:
    """A number of seconds: finite (NaN passes every comparison, and JSON cannot carry it)."""
    return is_number(value) and math.isfinite(value)


def shown(value: object) -> str:
    """A bad value as an error message quotes it: its repr, cut at 200 characters (a value
    can be megabytes, and the message goes back to whoever sent it)."""
    text = repr(value)
    if isinstance(value, str) and len(value) < 50:
        try:
            float(value)
        except ValueError:
            pass
        else:  # YAML 1.1 (PyYAML) reads 1e3 as text; 1.0e+3 is a number there
            return f"the text {text} (a number in quotes, or YAML's 1e3: write 1000 or 1.0e+3)"
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text):,} characters)"


def checked_args(args: Any, bad: Bad) -> list[str]:
    """A job's ``args``: a list of strings (numbers taken as text) or one string, split as a
    shell would split it."""
    if args is None:
        return []
    if isinstance(args, str):
        try:
            out = shlex.split(args)
        except ValueError as exc:
            raise bad("args", f"args {args!r} cannot be split: {exc}") from None
    elif isinstance(args, bytes | bytearray | memoryview):
        # A Sequence of ints: b"--x 1" ran with the arguments 45 45 120 32 49. Refused,
        # as bytes are for filename and env: which encoding they hold is the caller's to say.
        raise bad("args", f"args must be a list of strings or one string, got "
                  f"{type(args).__name__} {shown(args)}: decode it first "
                  "(args=data.decode())")
    elif isinstance(args, Sequence):
        out = []
        for item in args:
            if isinstance(item, str):
                out.append(item)
            elif is_number(item):
                out.append(str(item))
            else:
                raise bad("args", f"args must be strings or numbers, got {shown(item)}")
    else:
        raise bad("args", f"args must be a list of strings or a string, got {shown(args)}")
    if (why := args_problem(out)) is not None:  # the master's rule, said before sending
        raise bad("args", why)
    return out


def checked_parents(parents: Any, bad: Bad) -> list[str]:
    """A job's ``parents``: a list of job ids (a string is refused, not read letter by letter)."""
    if parents is None:
        return []
    if isinstance(parents, str) or not isinstance(parents, Sequence):
        raise bad("parents", f"parents must be a list of job ids, e.g. ['extract'], "
                  f"got {shown(parents)}")
    out = []
    for parent in parents:
        if not isinstance(parent, str) or not parent:
            raise bad("parents", f"parents must be job id strings, got {shown(parent)}")
        out.append(parent)
    return out


def checked_env(env: Any, bad: Bad) -> dict[str, str]:
    """A job's ``env``: names to strings (numbers taken as text)."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise bad("env", f"env must be a mapping of names to strings, got {shown(env)}")
    out = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key:
            raise bad("env", f"env names must be non-empty strings, got {shown(key)}")
        if isinstance(value, str):
            out[key] = value
        elif is_number(value):
            out[key] = str(value)
        else:
            raise bad("env", f"env value of {key} must be a string, got {shown(value)}")
    if (why := env_problem(out)) is not None:  # the master's rule, said before sending
        raise bad("env", why)
    return out
