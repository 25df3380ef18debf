from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A master and its local worker (`titan up`), 4 slots."""
    c = Cluster(tmp_path)
    try:
        c.up(slots=4)
        yield c
    finally:
        c.stop()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[object]:
    """Build clusters with custom settings; all are stopped at the end."""
    made: list[Cluster] = []

    def make(**kw: object) -> Cluster:
        c = Cluster(tmp_path / f"c{len(made)}", **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.stop()

