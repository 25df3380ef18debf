"""A runs export downloaded (``titan runs export``, ``titan runs prune --export-to``): its
format, and the master's stream written to stdout, or to a file whole or not at all."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from titan.atomic import atomic_file
from titan.errors import TitanError

#: What ``titan runs export`` writes, and the file extensions that pick each when
#: ``--format`` is left out: ``-o runs.csv`` wrote JSON lines into runs.csv.
EXPORT_FORMATS = ("csv", "json", "jsonl")
_FORMAT_OF_SUFFIX = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def download(client: Any, params: dict[str, Any], output: str) -> int:
    """The export ``params`` ask the master for, written to ``output`` (``-``: stdout); the
    bytes written. A stream cut short is a :class:`TitanError` saying what was left."""
    return _write(_stream(client, params), output)


def _stream(client: Any, params: dict[str, Any]) -> Iterator[bytes]:
    response = client._transport.send("GET", "/runs/export", params=params, stream=True,
                                      read_timeout=600.0)
    try:
        yield from response.iter_bytes()
    finally:
        response.close()


def _write(chunks: Iterator[bytes], output: str) -> int:
    import httpx

    size = 0
    out: IO[bytes]
    if output == "-":
        out = sys.stdout.buffer
        try:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
        except httpx.TransportError as exc:
            raise TitanError(f"{_cut(exc)}: what was written above is cut short") from None
        out.flush()
        return size
    path = Path(output)
    if not path.parent.is_dir():
        raise TitanError(f"cannot write {output}: no directory {path.parent}")
    if path.is_dir():
        raise TitanError(f"cannot write {output}: it is a directory (name a file)")
    device = path.exists() and not path.is_file()  # -o /dev/stdout: written into
    try:
        # All at once or not at all (an export cut short leaves no half file behind), and a
        # device or pipe (-o /dev/stdout) written into, never replaced: titan.atomic.
        with atomic_file(path) as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
    except OSError as exc:
        raise TitanError(f"cannot write {output}: {exc.strerror or exc}") from None
    except httpx.TransportError as exc:
        written = "what was written to it is cut short" if device else "nothing written to it"
        raise TitanError(f"{_cut(exc)}: {output} is not the export; {written}") from None
    return size


def _cut(exc: Exception) -> str:
    """An export's stream that ended early, in words (a master killed or restarted, a
    network cut, a master silent past the read timeout)."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "the master sent nothing for 10 minutes mid-export"
    return "the master closed the connection mid-export"


def export_format(given: str | None, output: str) -> str:
    """The format an export is written in: the one given, else the output file's extension
    (any case), else JSONL."""
    if given is not None:
        return given
    return _FORMAT_OF_SUFFIX.get(Path(output).suffix.lower(), "jsonl") if output != "-" \
        else "jsonl"
