"""docs/dashboard.md names every page and its JSON twin."""

from __future__ import annotations

import re
from pathlib import Path

from titan.dashboard import pages

DOC = (Path(__file__).resolve().parents[2] / "docs" / "dashboard.md").read_text()


def test_every_dashboard_route_is_documented() -> None:
    # Route parameters are named differently in prose ({name} vs DAG-<name>): compare the
    # fixed part before the first parameter.
    missing = []
    for route in pages.router.routes:
        path = getattr(route, "path", "")
        if path == "/static":
            continue
        fixed = re.split(r"\{", path)[0]
        if f"`{fixed}" not in DOC and f" {fixed}" not in DOC:
            missing.append(path)
    assert not missing, f"dashboard routes missing from docs/dashboard.md: {missing}"
