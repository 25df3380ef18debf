"""A master whose database fails in ways other than "away": what it logs and answers.

Real `titan master` processes on SQLite: a write the database refuses with an error of its
own (a trigger stands in for any constraint or internal error) must not carry the values it
was writing into the master's log or the 500's message — SQLAlchemy's exception text lists
a statement's bound parameters unless its engine hides them, and those were a job's env
(API keys) and store values.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from typing import Any

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
