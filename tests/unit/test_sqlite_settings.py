"""TITAN_SQLITE_SYNCHRONOUS: NORMAL by default (a commit survives kill -9), FULL or EXTRA
across power loss; OFF is refused (an OS crash could corrupt the database), empty is unset."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan.errors import ConfigError
from titan.storage import open_storage


@pytest.mark.parametrize(("raw", "pragma"), [("", 1), ("  ", 1), ("full", 2), ("EXTRA", 3)])
def test_the_setting_is_applied(raw: str, pragma: int, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_SQLITE_SYNCHRONOUS", raw)
    storage = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    try:
        with storage.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == pragma
    finally:
        storage.close()


@pytest.mark.parametrize("raw", ["OFF", "0", "fast"])
def test_off_and_nonsense_are_refused(raw: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_SQLITE_SYNCHRONOUS", raw)
    with pytest.raises(ConfigError, match="NORMAL, FULL or EXTRA"):
        open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
