"""A runs export read back run by run (``titan runs verify --export``): JSON Lines streamed,
one run and its actions in memory at a time; a JSON export read whole (one document).

A JSONL export is read twice: once to find where each run's line and each action's line
are (and to refuse a file that is no export before anything is verified), then run by run
from those places. So a 137 MB export verifies in the memory of its largest run rather than
six times the file's size, and an action line moved away from its run (lines sorted, a file
edited) is still filed under the run it names.

Each run line starts an *occurrence*: a run exported twice (two monthly exports
concatenated) is two occurrences of one id, each with the actions that follow it. An action
is filed under the latest occurrence of its run before it, or, for one moved above every
line of its run, the first.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from titan.errors import TitanError

HINT = "verify takes a JSON or JSONL export made with `titan runs export --actions`"


class Occurrence:
    """A run as one place of the file holds it: ``run`` (its line), ``actions`` (read as
    they are asked for) and ``copies``, how many places of the file hold a run of its id."""

    def __init__(self, run: dict[str, Any], actions: Iterator[Any], copies: int,
                 digest: Any) -> None:
        self.run, self.actions, self.copies = run, actions, copies
        self._digest = digest

    def fingerprint(self) -> str:
        """A digest of this copy of the run, its run line and its actions (read to the end
        if they were not): two copies alike have the same."""
        for _ in self.actions:
            pass
        return str(self._digest.hexdigest())


class ExportFile:
    """The runs of the export at ``path``: :meth:`runs` yields each occurrence of a run with
    its actions (consume the actions before asking for the next run); :attr:`occurrences`
    counts the occurrences of each run id (``str`` of the id as the file has it). A file
    that is no export (not there, not text, a CSV export, a JSONL action whose run line is
    not in the file) is a :class:`TitanError` from the constructor, before any run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.occurrences: Counter[str] = Counter()
        self._whole: list[dict[str, Any]] | None = None
        self._places: list[tuple[int, array[int]]] = []
        try:
            with open(path, "rb") as fh:
                self._open(fh)
        except FileNotFoundError:
            raise TitanError(f"no such file: {path}") from None
        except IsADirectoryError:
            raise TitanError(f"{path} is a directory, not an export") from None
        except OSError as exc:
            raise TitanError(f"cannot read {path}: {exc.strerror or exc}") from None

    def runs(self) -> Iterator[Occurrence]:
        if self._whole is not None:
            for run in self._whole:
                digest = hashlib.sha256(json.dumps(run, sort_keys=True).encode())
                yield Occurrence(run, iter(run["actions"]), self._copies(run), digest)
            return
        with open(self.path, "rb") as fh:
            for run_at, actions_at in self._places:
                fh.seek(run_at)
                line = fh.readline()
                run = json.loads(_text(line, self.path))
                digest = hashlib.sha256(line.strip())
                yield Occurrence(run, self._actions(fh, sorted(actions_at), digest),
                                 self._copies(run), digest)

    def _copies(self, run: dict[str, Any]) -> int:
        return self.occurrences[str(run.get("id"))]

    def _actions(self, fh: IO[bytes], offsets: list[int], digest: Any) -> Iterator[Any]:
        for at in offsets:
            fh.seek(at)
            line = fh.readline()
            digest.update(b"\n" + line.strip())
            yield json.loads(_text(line, self.path))

    # -- finding the runs -----------------------------------------------------------------------
    def _open(self, fh: IO[bytes]) -> None:
        first = _first_item(fh, self.path)
        if not (isinstance(first, dict) and "type" in first):
            # Not JSON Lines by its first line: a JSON export, whole (our exports are one
            # line, already read; a pretty-printed one is read again whole), or the line's
            # own error below.
            whole = first if first is not None and not fh.read().strip() else None
            if whole is None:
                fh.seek(0)
                try:
                    whole = json.loads(_text(fh.read(), self.path))
                except ValueError:
                    whole = None  # JSON Lines, or not an export at all (read line by line)
            if whole is not None:
                self._whole = self._document(whole)
                self.occurrences.update(str(run.get("id")) for run in self._whole)
                return
        fh.seek(0)
        self._index(fh)

    def _document(self, whole: Any) -> list[dict[str, Any]]:
        if not isinstance(whole, dict) or not isinstance(whole.get("runs"), list) \
                or not all(isinstance(r, dict) for r in whole["runs"]):
            raise TitanError(f'{self.path} is JSON but not an export ({{"runs": [...]}}): {HINT}')
        for run in whole["runs"]:
            if not isinstance(run.get("actions"), list):
                raise TitanError(f"{self.path} holds no actions: export with --actions")
        runs: list[dict[str, Any]] = whole["runs"]
        return runs

    def _index(self, fh: IO[bytes]) -> None:
        """Where each occurrence's run line and action lines are, checking every line."""
        latest: dict[str, int] = {}
        first: dict[str, int] = {}
        moved: list[tuple[int, int, str | None]] = []  # (line number, offset, run id)
        last: str | None = None
        offset = 0
        for number, raw in enumerate(fh, 1):
            at, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                item = json.loads(_text(raw, self.path))
            except ValueError:
                raise TitanError(f"{self.path}, line {number}: not JSON: {HINT}") from None
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "run":
                last = str(item.get("id"))
                latest[last] = len(self._places)
                first.setdefault(last, len(self._places))
                self._places.append((at, array("q")))
                self.occurrences[last] += 1
            elif kind == "action":
                # Filed under the run it names (an export's lines may have been moved), else
                # the run line before it.
                filed = item.get("run_id", last)
                if not isinstance(filed, str | None):
                    filed = json.dumps(filed)
                if filed in latest:
                    self._places[latest[filed]][1].append(at)
                else:
                    moved.append((number, at, filed))
            else:
                raise TitanError(f"{self.path}, line {number}: neither a run nor an action: "
                                 f"{HINT}")
        for number, at, filed in moved:
            if filed not in first:
                raise TitanError(f"{self.path}, line {number}: an action of run {filed!r}, "
                                 "whose run line is not in the file (the export was cut)")
            self._places[first[filed]][1].append(at)


def _first_item(fh: IO[bytes], path: Path) -> Any:
    """The first line that is not blank, as JSON (None when it is not JSON, or none is)."""
    for raw in fh:
        if raw.strip():
            try:
                return json.loads(_text(raw, path))
            except ValueError:
                return None
    return None


def _text(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TitanError(f"{path} is not UTF-8 text: not an export") from None
