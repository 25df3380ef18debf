"""What Titan says when it closes a data dir that was open to other local users: "rotate
tokens" only when there were tokens to read (titan/permissions.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from titan.permissions import secure_tree


def _said(root: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level("WARNING", logger="titan.permissions"):
        secure_tree(root)
    return [r.getMessage() for r in caplog.records]


def test_an_empty_open_data_dir_is_tightened_without_talk_of_rotating_tokens(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # `mkdir .titan` under umask 000, then `titan up`: the warning told the user to rotate
    # tokens that did not exist yet.
    root = tmp_path / ".titan"
    root.mkdir()
    os.chmod(root, 0o777)
    said = _said(root, caplog)
    assert said == [f"{root} was mode 0777, open to other local users; tightened to 0700. It "
                    "held no tokens yet: nothing to rotate."], said
    assert os.stat(root).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("secret", ["admin.token", "worker.token", "titan.db"])
def test_an_open_data_dir_that_held_secrets_says_rotate(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, secret: str) -> None:
    root = tmp_path / ".titan"
    root.mkdir()
    (root / secret).write_text("x")
    os.chmod(root / secret, 0o600)
    os.chmod(root, 0o755)
    said = _said(root, caplog)
    assert said == [f"{root} was mode 0755, open to other local users; tightened to 0700. "
                    "Anyone who read it may hold its secrets: rotate tokens if in doubt."], said
