"""An attempt's sink for tests that drive a worker's executor directly: it records every log
line and result of the attempt and lets the test wait for them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from titan.worker.attempt import Attempt

WAIT = 30.0


class Collector:
    """An attempt's sink that records everything and lets a test wait for it."""

    def __init__(self, wait: float = WAIT) -> None:
        self.wait = wait  # how long wait_line and outcome wait
        self.lines: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.done = threading.Event()
        self._cond = threading.Condition()

    def log(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self.lines.append(entry)
            self._cond.notify_all()

    def result(self, entry: dict[str, Any]) -> None:
        self.results.append(entry)

    def finished(self, _attempt: Attempt) -> None:
        self.done.set()

    def wait_line(self, pred: Callable[[str], bool], timeout: float | None = None) -> str:
        with self._cond:
            assert self._cond.wait_for(
                lambda: any(pred(e["line"]) for e in self.lines), timeout or self.wait
            ), f"no such line in {self.text()}"
            return next(e["line"] for e in self.lines if pred(e["line"]))

    def stream(self, name: str) -> list[str]:
        return [e["line"] for e in self.lines if e["stream"] == name]

    def text(self) -> str:
        return "\n".join(f"{e['stream']}: {e['line']}" for e in self.lines)

    @property
    def outcome(self) -> dict[str, Any]:
        """The attempt's one result, once it finished."""
        assert self.done.wait(self.wait), f"the job did not finish; output so far:\n{self.text()}"
        assert len(self.results) == 1
        return self.results[0]
