"""A master whose database fails in ways other than "away": what it logs and answers.

Real `titan master` processes on SQLite: a write the database refuses with an error of its
own (a trigger stands in for any constraint or internal error) must not carry the values it
was writing into the master's log or the 500's message — SQLAlchemy's exception text lists
a statement's bound parameters unless its engine hides them, and those were a job's env
(API keys) and store values. A damaged database says so, and what to do, instead of "a bug in
the master".
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.conftest import free_port
from titan import errors

SECRET = "sk-NEVER-LOGGED-0123456789"


def _put(c: Any, key: str, value: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{c.url}/api/v1/store/values/{key}", method="PUT",
        data=json.dumps({"value": value}).encode(),
        headers={"Authorization": f"Bearer {c.admin_token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_a_failed_write_logs_no_value_it_carried(make_cluster: Any) -> None:
    c = make_cluster()
    c.start_master()
    assert _put(c, "before", "1")[0] == 200
    with sqlite3.connect(c.data / "titan.db") as db:  # the master's next write fails on it
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON store_values "
                   "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END")
    status, body = _put(c, "apikey", SECRET)
    log = (c.root / "master.log").read_text(errors="replace")
    assert status == 500, body
    assert "refused by a test trigger" in log, log[-3000:]  # the error itself is said
    assert SECRET not in log, log[-3000:]
    assert SECRET not in json.dumps(body), body


def test_a_corrupt_database_is_said_to_be_corrupt_not_a_bug(make_cluster: Any) -> None:
    """Pages of a SQLite database overwritten (a disk fault, a bad copy): each request was
    "HTTP 500 (a bug in the master): database disk image is malformed" with a traceback in
    the log. It is 500 database_corrupt saying to restore a backup, logged as one error line."""
    c = make_cluster()
    c.start_master()
    client = c.client()
    for i in range(30):
        client.store_put(f"k{i}", "v" * 3000)
    c.stop()
    path = c.data / "titan.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file, none in the WAL
    size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = [r[0] for r in db.execute(
        "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'store_values' AND rootpage > 0")]
    db.close()
    with open(path, "r+b") as f:  # the table's and its indexes' root pages: garbage
        for page in pages:
            f.seek((page - 1) * size)
            f.write(bytes(range(256)) * (size // 256))
    c.start_master()
    client = c.client()
    for _ in range(3):
        with pytest.raises(errors.DatabaseCorrupt) as said:
            client.store_get("k1")
    assert "restore the database from a backup" in said.value.message, said.value.message
    assert "deployment.md#backup-and-restore" in said.value.message
    assert "a bug" not in str(said.value)
    log = (c.root / "master.log").read_text(errors="replace")
    assert log.count("the database is corrupt") == 1, log[-3000:]
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_a_restore_without_its_blobs_is_said_on_the_start_that_serves(make_cluster: Any) -> None:
    """A database restored into a fresh data dir without its blobs directory: the warning
    that the blob store is not this database's was said once, on the first start, and the
    mark that silences it recorded then — a first start that failed (its port in use) took
    it, and the start that served said nothing while every file was gone."""
    old = make_cluster()
    old.start_master()
    old.client().store_put("k", "v")
    old.stop()
    new = make_cluster()
    new.data.mkdir(mode=0o700)
    source = sqlite3.connect(old.data / "titan.db")
    with sqlite3.connect(new.data / "titan.db") as target:  # the documented .backup
        source.backup(target)
    source.close()
    said = "is not the one this database's blobs were written to"
    with socket.socket() as busy:  # the first start fails: its port is taken
        busy.bind(("127.0.0.1", new.port))
        busy.listen()
        first = subprocess.run(
            [sys.executable, "-m", "titan", "master", "--port", str(new.port),
             "--dashboard-port", str(free_port()), "--data-dir", str(new.data)],
            env=new.env, cwd=new.root, capture_output=True, timeout=60)
    assert first.returncode != 0, first.stdout[-2000:]
    new.start_master()
    log = (new.root / "master.log").read_text(errors="replace")
    assert said in log, log[-3000:]
