"""``.env`` in the working directory: where hosted-model keys live (seed 001's prerequisites).

``GEMINI_API_KEY=...`` in a project's ``.env`` reaches the process that calls the model: the
SDK loads it before its first hosted call, and ``titan up`` / ``titan worker`` load it when
they start, so their jobs inherit the keys they may have (``TITAN_JOB_ENV_PASS``; the
providers' keys are passed by default). A variable already in the environment wins; values
are never logged, printed or recorded (a model call records its messages and parameters,
never the environment).

The format is the common one: ``KEY=value`` lines, an optional ``export`` in front, values in
single or double quotes (double-quoted ones may hold ``\\n``), ``#`` comments on their own line
or after an unquoted value. A line that is none of these is skipped, named by its line number
only (it may hold a secret).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger("titan")

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_loaded: set[Path] = set()


def parse(text: str) -> tuple[dict[str, str], list[int]]:
    """The variables of a ``.env`` text, and the numbers of the lines that were not one."""
    values: dict[str, str] = {}
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            bad.append(number)
            continue
        key, raw = m.group(1), m.group(2)
        if raw[:1] in ("'", '"') and len(raw) >= 2 and raw.endswith(raw[0]):
            value = raw[1:-1]
            if raw[0] == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif raw[:1] in ("'", '"'):
            bad.append(number)  # an opening quote that never closes
            continue
        else:
            value = re.split(r"\s+#", raw, maxsplit=1)[0]
        values[key] = value
    return values, bad


def load(directory: str | os.PathLike[str] | None = None,
         environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Add the variables of ``<directory>/.env`` (default: the working directory) that the
    environment does not set yet; returns their names. Each file is read once per process."""
    env = os.environ if environ is None else environ
    path = Path(directory if directory is not None else Path.cwd()) / ".env"
    try:
        resolved = path.resolve()
        if environ is None and resolved in _loaded:
            return []
        text = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if environ is None:
        _loaded.add(resolved)
    values, bad = parse(text)
    if bad:
        log.warning("%s: lines %s are not KEY=value and were skipped", path,
                    ", ".join(map(str, bad[:10])))
    added = [k for k in values if k not in env]
    for key in added:
        env[key] = values[key]
    if added:
        log.debug("%s: set %s", path, ", ".join(added))  # names only, never values
    return added
