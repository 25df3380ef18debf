"""How storage hands rows out: plain dicts, JSON columns already decoded."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
