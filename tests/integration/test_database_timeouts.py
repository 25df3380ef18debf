"""A master on a PostgreSQL whose DBA set timeouts on Titan's role or database.

``statement_timeout`` and ``lock_timeout`` cancel a statement (SQLSTATE 57014, 55P03); the
writer took that for the database being away and tried the batch again for ever — a statement
cancelled for running too long is cancelled again — so the request never got an answer and
every later write queued behind it. Now a cancelled statement is tried a few times (a lock
held for a moment is let go), then its request gets 503 ``statement_cancelled`` naming the
setting, and the writes after it go on. ``idle_in_transaction_session_timeout`` ends the
connection of a session idle inside a transaction: that is the connection lost, tried again
on a new one, so the master works on as before.

Real `titan master` processes on a database of each test's own; the slow statement is a
trigger that sleeps on one value (a stand-in for a big table), the held lock another session's.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import fresh_postgres_database
from tests.integration.harness import Cluster
from titan import TitanJob, errors

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def database(postgres_template: str) -> Iterator[tuple[str, sa.Engine]]:
    """A database of the test's own (latest schema) and an engine of the DBA's on it."""
    with fresh_postgres_database("titan_timeouts", template=postgres_template) as url:
        dba = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            yield url, dba
        finally:
            dba.dispose()


def _set(dba: sa.Engine, url: str, setting: str, value: str) -> None:
    """ALTER DATABASE ... SET, as a DBA would: what connections opened after it get."""
    with dba.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" '
                             f"SET {setting} = '{value}'"))


def _slow_on(dba: sa.Engine, value: str, seconds: float) -> None:
    """Writing ``value`` to the store takes ``seconds`` (a trigger that sleeps)."""
    with dba.connect() as conn:
        conn.execute(sa.text(f"""CREATE FUNCTION slow_store() RETURNS trigger AS $$
            BEGIN IF NEW.value = '{value}' THEN PERFORM pg_sleep({seconds}); END IF;
            RETURN NEW; END $$ LANGUAGE plpgsql"""))
        conn.execute(sa.text("CREATE TRIGGER slow_store BEFORE INSERT OR UPDATE ON store_values "
                             "FOR EACH ROW EXECUTE FUNCTION slow_store()"))


def call(c: Cluster, method: str, path: str, body: Any = None,
         timeout: float = 60) -> tuple[int, Any, float]:
    req = urllib.request.Request(
        f"{c.url}/api/v1{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {c.admin_token}", "Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), time.monotonic() - started


def put(c: Cluster, key: str, value: str) -> tuple[int, Any, float]:
    return call(c, "PUT", f"/store/values/{key}", {"value": value})


@pytest.mark.timeout(180)
def test_a_write_past_statement_timeout_is_answered_and_the_writes_after_it_go_on(
        make_cluster: MakeCluster, database: tuple[str, sa.Engine]) -> None:
    url, dba = database
    _slow_on(dba, "slow", 3)
    _set(dba, url, "statement_timeout", "500ms")
    c = make_cluster(database_url=url).start_master()
    assert put(c, "before", "1")[0] == 200
    after: list[tuple[int, Any, float]] = []
    # Queued behind the slow write, in the same or the next batch: never stuck behind it.
    behind = threading.Thread(target=lambda: (time.sleep(0.2), after.append(put(c, "k", "2"))))
    behind.start()
    status, body, took = put(c, "slow-key", "slow")
    behind.join(timeout=60)
    assert status == 503, body
    error = body["error"]
    assert error["code"] == "statement_cancelled", error
    assert "statement_timeout" in error["message"], error
    assert "docs/troubleshooting.md" in error["message"], error
    assert took < 30, took  # a few tries, not for ever
    assert after and after[0][0] == 200, after
    # Nothing of the cancelled write is stored; later writes and reads work.
    assert call(c, "GET", "/store/values/slow-key")[1]["value"] is None
    assert call(c, "GET", "/store/values/k")[1]["value"] == "2"
    assert put(c, "later", "3")[0] == 200
    health = call(c, "GET", "/health")
    assert health[0] == 200 and health[1]["status"] == "ok", health
    log = c.log()
    assert "statement_timeout" in log, log  # the operator is told what to change
    assert "Traceback" not in log, log
    # The SDK raises it as what it is, not as "a bug in the master".
    with pytest.raises(errors.StatementCancelled) as raised:
        c.client().store_put("slow-again", "slow")
    assert "statement_timeout" in raised.value.message


@contextlib.contextmanager
def _locked(dba: sa.Engine, table: str) -> Iterator[Callable[[], None]]:
    """Another session holds ``table`` locked (ACCESS EXCLUSIVE: a DBA's VACUUM FULL, a
    migration) until the callable it yields is called, or the block ends."""
    conn = dba.connect().execution_options(isolation_level="READ COMMITTED")
    tx = conn.begin()
    conn.execute(sa.text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            tx.rollback()

    try:
        yield release
    finally:
        release()
        conn.close()


@pytest.mark.timeout(180)
def test_a_write_past_lock_timeout_is_answered_and_a_lock_let_go_soon_is_waited_for(
        make_cluster: MakeCluster, database: tuple[str, sa.Engine]) -> None:
    url, dba = database
    _set(dba, url, "lock_timeout", "200ms")
    c = make_cluster(database_url=url).start_master()
    assert put(c, "before", "1")[0] == 200
    with _locked(dba, "store_values"):  # held past every try
        status, body, took = put(c, "held", "x")
    assert status == 503, body
    error = body["error"]
    assert error["code"] == "statement_cancelled", error
    assert "lock_timeout" in error["message"], error
    assert took < 30, took
    assert call(c, "GET", "/store/values/held")[1]["value"] is None
    assert put(c, "after", "2")[0] == 200
    # A lock let go within the tries: the write waits for it and succeeds.
    with _locked(dba, "store_values") as release:
        threading.Timer(0.5, release).start()
        status, body, _ = put(c, "brief", "3")
    assert status == 200, body
    assert call(c, "GET", "/store/values/brief")[1]["value"] == "3"


@pytest.mark.timeout(180)
def test_a_read_past_statement_timeout_is_answered_as_such_not_as_the_database_away(
        make_cluster: MakeCluster, database: tuple[str, sa.Engine]) -> None:
    """A read cancelled by statement_timeout was 503 database_unavailable, and the master took
    its database for away for a lease's length (workers' heartbeats refused meanwhile)."""
    url, dba = database
    _set(dba, url, "statement_timeout", "300ms")
    c = make_cluster(database_url=url).start_master()
    assert put(c, "k", "1")[0] == 200
    with _locked(dba, "store_values"):  # the read waits on the lock past statement_timeout
        status, body, took = call(c, "GET", "/store/values/k")
    assert status == 503, body
    assert body["error"]["code"] == "statement_cancelled", body
    assert "statement_timeout" in body["error"]["message"], body
    assert took < 30, took
    assert call(c, "GET", "/store/values/k")[1]["value"] == "1"
    health = call(c, "GET", "/health")
    assert health[0] == 200 and health[1]["status"] == "ok", health


@pytest.mark.timeout(180)
def test_idle_in_transaction_session_timeout_ends_no_connection_of_the_master(
        make_cluster: MakeCluster, database: tuple[str, sa.Engine]) -> None:
    """The server ends a session idle inside a transaction past the setting. The master leaves
    none open for long (reads run in autocommit, the leadership's connection commits each
    statement), and a write transaction whose connection was ended under it (a busy host
    paused the writer between two statements past an extreme setting, as here) is the
    database away for a moment: tried again on a new connection, a lost COMMIT looked up, so
    jobs run and writes commit as ever."""
    url, dba = database
    _set(dba, url, "idle_in_transaction_session_timeout", "100ms")
    c = make_cluster(database_url=url).start_master()
    c.add_worker(slots=2)
    client = c.client()
    script = c.script("echo.py", "print('hello')\n")
    for round_ in range(2):
        dag = client.submit_dag(f"idle{round_}", [TitanJob(job_id=f"j{i}", filename=script)
                                                  for i in range(4)])
        assert client.wait(dag["ref"], timeout=60)["status"] == "COMPLETED", dag
        assert put(c, f"k{round_}", "v")[0] == 200
        time.sleep(1.5)  # every connection idle past the setting
    with dba.connect() as conn:  # the leader's lock connection is still the one it took
        assert conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")).scalar() == 1
    assert "Traceback" not in c.log(), c.log()


@pytest.mark.timeout(120)
def test_a_master_started_where_statement_timeout_is_too_short_says_which_setting(
        make_cluster: MakeCluster, database: tuple[str, sa.Engine]) -> None:
    # The master stopped at start with the database's words alone ("canceling statement due
    # to statement timeout"): not the setting, nor what to do. Now it names both, at once.
    url, dba = database
    # The master's first statements wait on a lock another session holds, so they run past
    # 1 ms whatever the machine: on a fast one they all took less, and the master started.
    holder = dba.connect().execution_options(isolation_level="READ COMMITTED")
    holder.begin()
    holder.execute(sa.text("LOCK TABLE meta, leader IN ACCESS EXCLUSIVE MODE"))
    try:
        _set(dba, url, "statement_timeout", "1ms")
        c = make_cluster(database_url=url)
        started = time.monotonic()
        with pytest.raises(RuntimeError) as failed:
            c.start_master()
        assert time.monotonic() - started < 30  # it stops; it does not hang
    finally:
        holder.rollback()
        holder.close()
    said = str(failed.value)
    assert "canceling statement due to statement timeout" in said, said
    assert "statement_timeout" in said and "ALTER ROLE" in said, said
    assert "docs/troubleshooting.md" in said, said


@pytest.mark.timeout(180)
def test_a_result_whose_statement_is_cancelled_commits_once_the_database_lets_it(
        make_cluster: MakeCluster, database: tuple[str, sa.Engine], tmp_path: Any) -> None:
    # The scheduler applies a result in memory, then commits it. Failed after three tries
    # for a statement the database cancelled, the commit left memory (COMPLETED) and the
    # database (RUNNING) disagreeing for good: the worker's report sent again was refused as
    # stale, and after a restart the job would have run again. A scheduler's write is now
    # tried until it commits (said on the log): the job completes once the database lets the
    # write through, and runs once.
    url, dba = database
    with dba.connect() as conn:
        conn.execute(sa.text("CREATE TABLE slow_results (on_ boolean)"))
        conn.execute(sa.text("INSERT INTO slow_results VALUES (true)"))
        conn.execute(sa.text("""CREATE FUNCTION slow_result() RETURNS trigger AS $$
            BEGIN IF NEW.state = 'COMPLETED' AND EXISTS (SELECT 1 FROM slow_results WHERE on_)
            THEN PERFORM pg_sleep(3); END IF; RETURN NEW; END $$ LANGUAGE plpgsql"""))
        conn.execute(sa.text("CREATE TRIGGER slow_result BEFORE UPDATE ON jobs FOR EACH ROW "
                             "EXECUTE FUNCTION slow_result()"))
    _set(dba, url, "statement_timeout", "500ms")
    c = make_cluster(database_url=url, lease_seconds=3).start_master()
    c.add_worker(slots=1)
    runs = tmp_path / "runs.txt"
    script = c.script("once.py", f"open({str(runs)!r}, 'a').write('ran\\n')\n")
    c.client().submit_dag("once", [TitanJob(job_id="j", filename=script)])
    deadline = time.monotonic() + 60
    while "keeps cancelling a write of the scheduler's" not in c.log():
        assert time.monotonic() < deadline, (c.log(), c.log("worker-0.log"))
        time.sleep(0.1)
    # Longer than the lease: a worker that dropped the result stopped renewing it by now.
    time.sleep(5)
    with dba.connect() as conn:
        conn.execute(sa.text("UPDATE slow_results SET on_ = false"))
    deadline = time.monotonic() + 60
    while (job := c.client().get_job("once#1/j"))["state"] != "COMPLETED":
        assert time.monotonic() < deadline, (job, c.log("worker-0.log"))
        time.sleep(0.1)
    assert job["attempt"] == 1, job
    time.sleep(1)
    assert runs.read_text() == "ran\n"  # once, never a second attempt
    assert "Traceback" not in c.log("worker-0.log"), c.log("worker-0.log")
