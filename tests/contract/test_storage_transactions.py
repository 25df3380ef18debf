"""How the master's transactions use the database: reads that cannot write, and on
PostgreSQL reads without BEGIN/COMMIT, and the leader's fence sent with its BEGIN, its writes
and its COMMIT in one query."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.contract.test_storage import empty_tables
from titan.errors import NotLeader
from titan.storage import Storage, open_storage


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path) -> Iterator[Storage]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        s = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    else:
        s = open_storage(request.getfixturevalue("postgres_url"))
        empty_tables(s)
    yield s
    s.close()


def test_a_read_sees_what_committed_and_leaves_its_connection_writable(storage: Storage) -> None:
    with storage.write_transaction() as tx:
        tx.store_put("k", "v", 1.0)
    for _ in range(3):  # the pool hands the same connections back to writes
        with storage.read_transaction() as tx:
            assert tx.store_get("k") == "v"
        with storage.write_transaction() as tx:
            tx.store_put("k", "v", 2.0)
    with storage.write_transaction() as tx:
        tx.store_put("k", "w", 3.0)
    with storage.read_transaction() as tx:
        assert tx.store_get("k") == "w"


def test_a_write_inside_a_read_is_refused_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The test suite runs on SQLite: a read that writes fails there, before PostgreSQL (whose
    # reads are not transactions) could half-commit it.
    s = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    try:
        with pytest.raises(sa.exc.OperationalError, match="readonly"), \
                s.read_transaction() as tx:
            tx.store_put("k", "v", 1.0)
        with s.write_transaction() as tx:  # the connection is writable again
            tx.store_put("k", "w", 1.0)
        with s.read_transaction() as tx:
            assert tx.store_get("k") == "w"
    finally:
        s.close()


def test_sqlite_writes_keep_their_connection_and_a_second_writer_still_commits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    try:
        with contextlib.ExitStack() as reading:  # readers at once: the pool holds several
            for _ in range(3):
                reading.enter_context(s.read_transaction()).get_meta("k")
        used = set()
        for i in range(4):
            with s.write_transaction() as tx:
                tx.store_put(f"k{i}", "v", 1.0)
                used.add(id(tx.conn.connection.dbapi_connection))  # type: ignore[attr-defined]
        assert len(used) == 1  # its page cache stays warm: no other connection wrote since
        # A second thread writing meanwhile gets a connection of the pool; SQLite's own lock
        # has it wait for the first transaction's commit, and both commit.
        second: list[BaseException | None] = []

        def write() -> None:
            try:
                with s.write_transaction() as tx:
                    tx.store_put("second", "v", 2.0)
                second.append(None)
            except BaseException as exc:  # noqa: BLE001 - reported by the assert below
                second.append(exc)

        with s.write_transaction() as tx:
            tx.store_put("first", "v", 2.0)
            thread = threading.Thread(target=write)
            thread.start()
            thread.join(0.2)  # it waits for this transaction's lock
        thread.join(30)
        assert second == [None]
        # A failed transaction gives its connection up; the next one writes on a fresh one.
        with pytest.raises(sa.exc.IntegrityError), s.write_transaction() as tx:
            tx.store_put("lost", "v", 3.0)
            tx.record_idempotent("key-0123456789abcdef", "POST /x", "[1]", 1.0)
            tx.record_idempotent("key-0123456789abcdef", "POST /y", "[2]", 2.0)
        with s.write_transaction() as tx:
            tx.store_put("after", "v", 4.0)
        with s.read_transaction() as tx:
            assert [tx.store_get(k) for k in ("k3", "first", "second", "lost", "after")] \
                == ["v", "v", "v", None, "v"]
    finally:
        s.close()


def test_postgres_reads_run_statement_by_statement(postgres_url: str) -> None:
    s = open_storage(postgres_url)
    try:
        with s.read_transaction() as tx:
            conn = tx.conn  # type: ignore[attr-defined]
            # No transaction around the read: each statement starts its own.
            same = "SELECT transaction_timestamp() = statement_timestamp()"
            assert conn.execute(sa.text(same)).scalar()
            conn.execute(sa.text("SELECT pg_sleep(0.01)"))
            assert conn.execute(sa.text(same)).scalar()
        with s.transaction() as tx:
            conn = tx.conn  # type: ignore[attr-defined]
            conn.execute(sa.text("SELECT pg_sleep(0.01)"))
            assert not conn.execute(sa.text(
                "SELECT transaction_timestamp() = statement_timestamp()")).scalar()
    finally:
        s.close()


def test_the_fence_sent_with_the_writes_still_fences(postgres_url: str) -> None:
    s = open_storage(postgres_url)
    s.migrate()
    s.claim_scheduler()  # leads: every write transaction now proves it
    other = sa.create_engine(postgres_url)
    try:
        with s.write_transaction(mark=12345) as tx:
            tx.store_put("k", "led", 1.0)
        assert s.committed(12345)  # the mark went in with the fence
        with other.connect() as conn:
            assert conn.execute(sa.text("SELECT commit_mark FROM leader")).scalar() == 12345
            # Another master was promoted: the epoch moved on.
            conn.execute(sa.text("UPDATE leader SET epoch = epoch + 1"))
            conn.commit()
        with pytest.raises(NotLeader, match="was replaced"), s.write_transaction(mark=7) as tx:
            tx.store_put("k", "stale", 2.0)
        with s.read_transaction() as tx:
            assert tx.store_get("k") == "led"
        with pytest.raises(NotLeader):  # and it knows it no longer leads
            with s.write_transaction(mark=8):
                pass
    finally:
        other.dispose()
        s.close()


@pytest.fixture
def leading(postgres_url: str) -> Iterator[Storage]:
    s = open_storage(postgres_url)
    s.migrate()
    empty_tables(s)
    s.claim_scheduler()
    yield s
    s.close()


def _statements(s: Storage) -> list[str]:
    sent: list[str] = []
    sa.event.listen(s.engine, "before_cursor_execute",  # type: ignore[attr-defined]
                    lambda _c, _cur, statement, *_a: sent.append(statement))
    return sent


def test_a_leaders_step_that_reads_nothing_is_one_query(leading: Storage) -> None:
    sent = _statements(leading)
    with leading.write_transaction(mark=41) as tx:
        tx.store_put("a", "1", 1.0)
        tx.store_put("b", "2", 1.0)
    # BEGIN, the fence, both writes and the COMMIT went below SQLAlchemy, as one query.
    assert sent == []
    assert leading.committed(41)
    with leading.read_transaction() as tx:
        assert (tx.store_get("a"), tx.store_get("b")) == ("1", "2")
    with leading.write_transaction(mark=42):
        pass  # nothing written: the fence still goes (a heartbeat relies on it)
    assert leading.committed(42)


def test_a_replaced_leader_reads_nothing_in_a_write_transaction(leading: Storage,
                                                                postgres_url: str) -> None:
    with leading.write_transaction() as tx:
        tx.store_put("k", "led", 1.0)
        assert tx.store_get("k") == "led"  # the fence and the write went ahead of the read
    other = sa.create_engine(postgres_url)
    try:
        with other.begin() as conn:
            conn.execute(sa.text("UPDATE leader SET epoch = epoch + 1, url = 'http://b:1'"))
        with pytest.raises(NotLeader, match=r"replaced by the leader at http://b:1"), \
                leading.write_transaction() as tx:
            tx.store_get("k")  # refused before the read: the fence goes first
        with leading.read_transaction() as tx:
            assert tx.store_get("k") == "led"
    finally:
        other.dispose()


def test_a_leaders_failed_write_is_its_own_error_and_leaves_it_leading(leading: Storage) -> None:
    with leading.write_transaction() as tx:
        tx.record_idempotent("key-0123456789abcdef", "POST /x", "[1]", 1.0)
    # The one query fails on the write, not the fence: sent again the usual way, the write's
    # own error is raised, and nothing of the transaction is kept.
    with pytest.raises(sa.exc.IntegrityError), leading.write_transaction(mark=5) as tx:
        tx.store_put("lost", "v", 1.0)
        tx.record_idempotent("key-0123456789abcdef", "POST /y", "[2]", 2.0)
    assert not leading.committed(5)
    with leading.write_transaction(mark=6) as tx:
        tx.store_put("after", "v", 3.0)
    assert leading.committed(6)
    with leading.read_transaction() as tx:
        assert (tx.store_get("lost"), tx.store_get("after")) == (None, "v")


def test_a_promotion_waits_for_the_leaders_open_write(leading: Storage,
                                                      postgres_url: str) -> None:
    # The row lock orders them: a write that fenced first commits before the promotion,
    # which then finds it in the database.
    import threading

    other = sa.create_engine(postgres_url)
    promoted = threading.Event()
    try:
        with leading.write_transaction() as tx:
            tx.store_put("first", "v", 1.0)
            tx.store_get("first")  # the fence has gone: the row is locked until the COMMIT

            def promote() -> None:
                with other.begin() as conn:
                    conn.execute(sa.text("UPDATE leader SET epoch = epoch + 1"))
                promoted.set()

            t = threading.Thread(target=promote)
            t.start()
            assert not promoted.wait(0.3)
        t.join(5)
        assert promoted.is_set()
        with leading.read_transaction() as tx:
            assert tx.store_get("first") == "v"
        with pytest.raises(NotLeader), leading.write_transaction() as tx:
            tx.store_put("second", "v", 2.0)
    finally:
        other.dispose()


#: Values a client may send that the client-side binding of deferred writes must keep as they
#: are: placeholders, quotes, backslashes, a dollar quote, newlines, and text beyond ASCII.
AWKWARD = ["100%", "%s %(k)s %%", "it's", "back\\slash\\'", "$$ x $$", "a\nb\r\nc", "日本語 🚀",
           "'); DROP TABLE store_values; --", ""]


def test_writes_nobody_reads_keep_their_values_and_order(storage: Storage) -> None:
    with storage.write_transaction() as tx:
        for i, value in enumerate(AWKWARD):
            tx.store_put(f"k{i}", value, 1.0)
        tx.record_idempotent("key-0123456789abcdef", "POST /x", "[1, 2]", 1.0)
        # Read back inside the same transaction: what was queued is there first.
        assert tx.store_get("k0") == "100%"
        tx.store_put("k0", "second", 2.0)
    with storage.read_transaction() as tx:
        assert [tx.store_get(f"k{i}") for i in range(len(AWKWARD))] == ["second", *AWKWARD[1:]]
        assert tx.idempotent_result("key-0123456789abcdef") == ("POST /x", "[1, 2]")


def test_on_postgres_writes_nobody_reads_go_with_the_commit(postgres_url: str) -> None:
    s = open_storage(postgres_url)
    empty_tables(s)
    sent: list[str] = []
    sa.event.listen(s.engine, "before_cursor_execute",  # type: ignore[attr-defined]
                    lambda _c, _cur, statement, *_a: sent.append(statement))
    try:
        with s.write_transaction() as tx:
            for i in range(3):
                tx.store_put(f"k{i}", f"v{i}", 1.0)
            tx.record_idempotent("key-0123456789abcdef", "POST /x", "[1]", 1.0)
        # One round trip: the four writes and the COMMIT in one query.
        assert len(sent) == 1 and sent[0].endswith("COMMIT"), sent
        sent.clear()
        with s.write_transaction() as tx:
            tx.store_put("k0", "w0", 2.0)
            assert tx.store_get("k0") == "w0"  # the write went first, on the read's way
        # The queued write went ahead of the read on the read's cursor (below SQLAlchemy),
        # and the COMMIT, with nothing left to send along, went on its own.
        assert len(sent) == 1 and sent[0].startswith("SELECT"), sent
        with s.read_transaction() as tx:
            assert [tx.store_get(f"k{i}") for i in range(3)] == ["w0", "v1", "v2"]
    finally:
        s.close()


def test_a_deferred_write_that_fails_fails_its_whole_transaction(storage: Storage) -> None:
    with storage.write_transaction() as tx:
        tx.record_idempotent("key-0123456789abcdef", "POST /x", "[1]", 1.0)
    with pytest.raises(sa.exc.IntegrityError), storage.write_transaction() as tx:
        tx.store_put("lost", "v", 1.0)
        tx.record_idempotent("key-0123456789abcdef", "POST /y", "[2]", 2.0)  # the key is taken
    with storage.read_transaction() as tx:
        assert tx.store_get("lost") is None
        assert tx.idempotent_result("key-0123456789abcdef") == ("POST /x", "[1]")
    with storage.write_transaction() as tx:  # the connection is usable again
        tx.store_put("after", "v", 3.0)
    with storage.read_transaction() as tx:
        assert tx.store_get("after") == "v"


def test_a_large_write_goes_after_the_small_ones_queued_before_it(storage: Storage) -> None:
    from titan.storage import compiled, deferred

    with storage.write_transaction() as tx:
        tx.store_put("k5", "small, queued first", 1.0)
        conn = tx.conn  # type: ignore[attr-defined]
        rows = [{"k": f"k{i}", "v": f"large {i}", "now": 2.0}
                for i in range(deferred.MAX_ROWS + 3)]
        compiled.write(conn, "store_put", lambda: None, rows)  # compiled by store_put above
    with storage.read_transaction() as tx:
        assert tx.store_get("k5") == "large 5"  # not overwritten by the earlier small write
        assert tx.store_get(f"k{deferred.MAX_ROWS + 2}") == f"large {deferred.MAX_ROWS + 2}"


def test_a_read_after_commit_sees_the_transaction_and_cannot_fail_it(storage: Storage) -> None:
    seen: list[object] = []

    def boom(_tx: object) -> None:
        raise RuntimeError("a view that cannot be read")

    with storage.write_transaction() as tx:
        tx.store_put("k", "v", 1.0)
        tx.after_commit(lambda rtx: seen.append(rtx.store_get("k")))
        tx.after_commit(boom)  # logged and dropped: the writes stand
        tx.after_commit(lambda rtx: seen.append(rtx.store_get("k")))
    assert seen == ["v", "v"]
    with storage.read_transaction() as tx:
        assert tx.store_get("k") == "v"


def test_on_postgres_a_read_after_commit_leaves_the_writes_one_query(leading: Storage) -> None:
    sent = _statements(leading)
    seen: list[object] = []
    with leading.write_transaction(mark=77) as tx:
        tx.store_put("k", "v", 1.0)
        tx.after_commit(lambda rtx: seen.append(rtx.store_get("k")))
        assert seen == []  # not inside the transaction: its writes are still queued
    # BEGIN, fence, write and COMMIT as one query below SQLAlchemy; then the read alone.
    assert seen == ["v"] and len(sent) == 1 and sent[0].startswith("SELECT"), sent
    assert leading.committed(77)


def test_a_put_off_read_sees_its_own_operation_not_a_later_one(storage: Storage) -> None:
    # A job's wait was answered with the job RUNNING again: its retry, the next operation of
    # the same group transaction, had changed it before the read (a QA pass).
    seen: list[object] = []
    with storage.write_transaction() as tx:
        tx.store_put("k", "finished", 1.0)
        tx.after_commit(lambda rtx: seen.append(rtx.store_get("k")))
        tx.reads_due()  # the writer, before the next operation
        tx.store_put("k", "running again", 2.0)
    assert seen == ["finished"]


def test_a_leaders_first_read_goes_with_its_begin_and_fence(leading: Storage) -> None:
    # A submission's idempotency lookup was a round trip of its own after BEGIN and fence.
    sent = _statements(leading)
    with leading.write_transaction(mark=91) as tx:
        tx.store_put("a", "1", 1.0)
        assert tx.idempotent_result("key-0123456789abcdef") is None
        assert tx.store_get("a") == "1"  # the queued write went ahead of the first read
        tx.record_idempotent("key-0123456789abcdef", "POST /x", "[7]", 1.0)
    # BEGIN, fence, the write and the first read as one query below SQLAlchemy; the second
    # read alone, then the last write with the COMMIT.
    assert len(sent) == 2 and sent[0].startswith("SELECT store_values"), sent
    assert sent[1].startswith("INSERT INTO idempotency_keys") and sent[1].endswith("COMMIT")
    assert leading.committed(91)
    sent.clear()
    with leading.write_transaction(mark=92) as tx:
        # Read back typed as the driver's cursor reads them.
        assert tx.idempotent_result("key-0123456789abcdef") == ("POST /x", "[7]")
        assert tx.get_dag(12345) is None
    assert leading.committed(92)


def test_a_leaders_first_statement_that_fails_raises_its_own_error(leading: Storage) -> None:
    # The one query fails on the read, not the fence: sent again the usual way, the read's
    # own error is raised, and nothing of the transaction is kept.
    with pytest.raises(sa.exc.DataError), leading.write_transaction(mark=93) as tx:
        tx.store_put("lost", "v", 1.0)
        tx.get_dag("not a number")  # type: ignore[arg-type]
    assert not leading.committed(93)
    with leading.write_transaction(mark=95) as tx:
        tx.store_put("after", "v", 3.0)
        assert tx.get_dag(1) is None
    assert leading.committed(95)
    with leading.read_transaction() as tx:
        assert (tx.store_get("lost"), tx.store_get("after")) == (None, "v")


def test_a_leader_writes_jobs_with_ids_taken_ahead(leading: Storage) -> None:
    # Their inserts then need no answer: they go with the COMMIT, no SELECT of the new ids.
    from tests.contract.test_storage import dag_row, job_row

    with leading.write_transaction() as tx:
        dag, _run = tx.insert_next_dag(dag_row("d", 1))
    sent = _statements(leading)
    with leading.write_transaction(mark=94) as tx:
        first = tx.insert_jobs([job_row(dag, f"j{i}", i) for i in range(3)])
        one = tx.insert_jobs([job_row(dag, "k", 3)])
    assert first == sorted(first) and one[0] > first[-1] and len({*first, *one}) == 4
    # Two round trips: the block of ids with BEGIN and fence (below SQLAlchemy), then the
    # inserts with the COMMIT.
    assert len(sent) == 1 and sent[0].startswith("INSERT INTO jobs (id,"), sent
    assert sent[0].endswith("COMMIT") and sent[0].count("INSERT INTO jobs") == 4
    # A job written without its id (another writer) takes the sequence's next: no clash.
    with leading.transaction() as tx:
        other = tx.insert_jobs([job_row(dag, "other", 4)])
    with leading.write_transaction() as tx:
        later = tx.insert_jobs([job_row(dag, f"m{i}", 5 + i) for i in range(40)])
    assert len({*first, *one, *other, *later}) == 45
    with leading.write_transaction() as tx:  # a large DAG: the sequence's own, one SELECT
        large = tx.insert_jobs([job_row(dag, f"x{i}", 100 + i) for i in range(300)])
        after = tx.insert_jobs([job_row(dag, "y", 400)])
    assert len({*first, *one, *other, *later, *large, *after}) == 346
    with leading.read_transaction() as tx:
        assert tx.get_job(one[0])["job_id"] == "k"
        assert tx.get_job(later[-1])["job_id"] == "m39"


def test_a_leader_numbers_the_runs_of_names_it_wrote_without_asking(leading: Storage) -> None:
    from tests.contract.test_storage import dag_row

    with leading.write_transaction() as tx:
        first, run = tx.insert_next_dag(dag_row("PLAN", 9))
    assert run == 1
    sent = _statements(leading)
    with leading.write_transaction(mark=96) as tx:
        second, run2 = tx.insert_next_dag(dag_row("PLAN", 1))
        third, run3 = tx.insert_next_dag(dag_row("PLAN", 1))
    assert (run2, run3) == (2, 3) and first < second < third
    # The DAG ids' block with BEGIN and fence, then both inserts with the COMMIT.
    assert len(sent) == 1 and sent[0].count("INSERT INTO dags") == 2, sent
    # A failed transaction's numbers are forgotten: the next run is the database's next.
    with pytest.raises(RuntimeError), leading.write_transaction() as tx:
        assert tx.insert_next_dag(dag_row("PLAN", 1))[1] == 4
        raise RuntimeError("the step failed")
    with leading.write_transaction() as tx:
        assert tx.insert_next_dag(dag_row("PLAN", 1))[1] == 4
    with leading.transaction() as tx:  # outside the writer, the same numbers
        assert tx.insert_next_dag(dag_row("PLAN", 1))[1] == 5
    with leading.write_transaction() as tx:
        assert tx.insert_next_dag(dag_row("PLAN", 1))[1] == 6
    with leading.read_transaction() as tx:
        assert tx.find_dag("PLAN")["run"] == 6 and tx.find_dag("PLAN", 2)["id"] == second


def test_a_submissions_key_and_its_names_last_run_are_one_statement(leading: Storage,
                                                                     postgres_url: str) -> None:
    # A new name's run number came back from its own INSERT ... RETURNING, a round trip after
    # the key's lookup: both are read in the transaction's first statement now.
    from tests.contract.test_storage import dag_row

    with leading.transaction() as tx:
        tx.insert_next_dag(dag_row("fresh", 1))
        tx.insert_next_dag(dag_row("fresh", 1))
    leading.close()
    other = open_storage(postgres_url)  # as a new leader finds it: nothing known
    other.claim_scheduler()
    try:
        sent = _statements(other)
        with other.write_transaction(mark=97) as tx:
            assert tx.idempotent_result("key-0123456789abcdef", next_run_of="fresh") is None
            dag, run = tx.insert_next_dag(dag_row("fresh", 1))
            tx.record_idempotent("key-0123456789abcdef", "POST /x", "[1]", 1.0)
        assert run == 3
        # BEGIN, fence and the lookup as one query; the DAG ids' block (once per 16 and more
        # DAGs); the rest with the COMMIT: no INSERT ... RETURNING, no lookup of its own.
        assert len(sent) == 2 and "nextval" in sent[0], sent
        assert sent[1].startswith("INSERT INTO dags") and sent[1].endswith("COMMIT"), sent
        sent.clear()
        with other.write_transaction() as tx:  # another new name, the block held: one query
            assert tx.idempotent_result("key-fedcba9876543210", next_run_of="newer") is None
            assert tx.insert_next_dag(dag_row("newer", 1))[1] == 1
        assert len(sent) == 1 and sent[0].startswith("INSERT INTO dags"), sent
        with other.write_transaction() as tx:  # a replay: the recorded answer, as before
            assert tx.idempotent_result("key-0123456789abcdef", next_run_of="fresh") == (
                "POST /x", "[1]")
        with other.read_transaction() as tx:
            assert tx.find_dag("fresh")["id"] == dag
    finally:
        other.close()
