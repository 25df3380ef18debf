"""A worker's Titan version outlives a master restart. It says it when it registers; the master
kept it in memory only, so after a restart every worker that had not come back yet (one that
died meanwhile, one still reconnecting) read as of no version, and a worker on another version
than the master's was no longer flagged on the Cluster page, in ``GET /workers`` or in
``titan workers``. On SQLite and PostgreSQL (the column is migration 28's)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgres_database
from tests.integration.test_cli import titan


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_restarted_master_still_says_each_known_workers_version(
        make_cluster: Any, tmp_path: Path, db: str) -> None:
    with (fresh_postgres_database("titan_worker_versions") if db == "postgres"
          else contextlib.nullcontext(None)) as url:
        c = make_cluster(database_url=url)
        try:
            _restart_and_look(c, tmp_path)
        finally:
            c.stop()  # before its database is dropped


def _restart_and_look(c: Any, tmp_path: Path) -> None:
    c.start_master()
    old = tmp_path / "old"
    old.mkdir()
    (old / "sitecustomize.py").write_text(
        "import titan.version\ntitan.version.__version__ = '0.0.9'\n")
    path = os.pathsep.join(p for p in (str(old), os.environ.get("PYTHONPATH")) if p)
    c.add_worker(capabilities="OLDV", slots=1, name="old", env={"PYTHONPATH": path})
    c.add_worker(capabilities="NEWV", slots=1, name="current")
    master = c.api("GET", "/workers")["version"]
    assert master != "0.0.9"
    # Both workers die, then the master restarts: neither comes back to say its version.
    for proc in c.workers:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    c.kill_master()
    c.start_master()

    info = c.api("GET", "/workers")
    by_name = {w["name"]: w for w in info["workers"]}
    assert by_name["old"]["version"] == "0.0.9", info
    assert by_name["current"]["version"] == master, info
    assert {w["state"] for w in info["workers"]} <= {"unknown", "lost"}, info
    out = titan(c, "workers").stdout
    (old_row,) = [line for line in out.splitlines() if "OLDV" in line]
    assert " 0.0.9 * " in old_row, out
    (new_row,) = [line for line in out.splitlines() if "NEWV" in line]
    assert f" {master} " in new_row and "*" not in new_row, out
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {c.admin_token}"}) as s:
        page = s.get(f"http://127.0.0.1:{c.dashboard_port}/workers").text
    assert f'warn-text" title="this master runs Titan {master}' in page
    assert "Titan 0.0.9</span>" in page and f"Titan {master}</span>" in page

