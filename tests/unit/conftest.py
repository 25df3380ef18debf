from __future__ import annotations

from pathlib import Path

import pytest

CLIENT_ENV = ("TITAN_MASTER_URLS", "TITAN_URL", "TITAN_HOST", "TITAN_PORT", "TITAN_TOKEN",
              "TITAN_DATA_DIR", "TITAN_CONFIG_DIR", "TITAN_AGENT_RUN_ID")


@pytest.fixture
def clean_client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No TITAN_* discovery settings, HOME in tmp_path/home, cwd tmp_path: what the SDK's
    discovery sees is only what a test puts there."""
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path

