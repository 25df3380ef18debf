"""A data dir, database or worker workspace another local user owns is refused, not used:
its owner could have planted an ``admin.token`` of their choosing (it became the live admin
token) or cached scripts, and can replace the database with its signing key at will. As
PostgreSQL refuses a data directory it does not own. Needs root, to give files away."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from titan.errors import ConfigError
from titan.master.app import open_secured_storage
from titan.master.config import MasterConfig
from titan.permissions import secure_tree
from titan.worker.connection import MasterConnection
from titan.worker.workspace import Workspace

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="giving a file away takes root")


def give_away(*paths: Path) -> None:
    for path in paths:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


def test_a_data_dir_another_user_made_is_refused(tmp_path: Path) -> None:
    data = tmp_path / ".titan"
    data.mkdir()
    data.chmod(0o777)
    (data / "admin.token").write_text("tt_planted_by_someone_else")
    give_away(data, data / "admin.token")
    with pytest.raises(ConfigError) as info:
        secure_tree(data)
    message = str(info.value)
    assert f"{data} is owned by nobody (uid {NOBODY})" in message
    assert "not used" in message and f"chown -R root {data}" in message
    assert data.stat().st_mode & 0o777 == 0o777  # nothing of theirs was touched


def test_a_file_another_user_planted_in_our_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "blobs").mkdir()
    (data / "admin.token").write_text("tt_planted")
    give_away(data / "admin.token")
    with pytest.raises(ConfigError, match=r"admin.token is owned by nobody .* this master"):
        secure_tree(data)
    # A link another user left is refused too (its target is theirs to choose).
    (data / "admin.token").unlink()
    (data / "blobs" / "ab").symlink_to("/etc")
    give_away(data / "blobs" / "ab")
    with pytest.raises(ConfigError, match="blobs/ab is owned by nobody"):
        secure_tree(data)


def test_a_database_outside_the_data_dir_that_another_user_owns_is_refused(
        tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "titan.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    give_away(db)
    config = MasterConfig(data_dir=str(tmp_path / "data"), database_url=f"sqlite:///{db}")
    with pytest.raises(ConfigError, match=rf"{db} is owned by nobody"):
        open_secured_storage(config)


def _workspace(workdir: Path) -> Workspace:
    return Workspace(workdir, MasterConnection("http://127.0.0.1:9", None, threading.Event()))


def test_a_worker_refuses_a_workspace_or_a_cached_blob_another_user_made(
        tmp_path: Path) -> None:
    root = tmp_path / "titan_workspace"
    (root / "shared").mkdir(parents=True, mode=0o777)
    give_away(root / "shared")
    with pytest.raises(ConfigError, match=r"shared is owned by nobody .* this worker"):
        _workspace(tmp_path)

    other = tmp_path / "w2"
    ws = _workspace(other)  # its own: fine, and again
    planted = ws.blob_cache / "ab" / ("ab" + "0" * 62)
    planted.parent.mkdir(parents=True)
    planted.write_text("import os; os.system('id')")
    _workspace(other)
    give_away(planted)  # a blob the worker would run without a second look
    with pytest.raises(ConfigError, match=rf"{planted.name} is owned by nobody"):
        _workspace(other)
