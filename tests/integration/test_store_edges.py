"""TitanStore at its edges, against a real master on SQLite and PostgreSQL: keys and members
as large as the rules allow, waits with odd timeouts, counters raced by several processes."""

from __future__ import annotations

import random
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.harness import Cluster
from titan.errors import ValidationFailed, WaitTimeout

MakeCluster = Callable[..., Cluster]


@pytest.fixture(params=["sqlite", "postgres"])
def either(request: pytest.FixtureRequest, make_cluster: MakeCluster) -> Cluster:
    if request.param == "sqlite":
        return make_cluster().start_master()
    return make_cluster(database_url=request.getfixturevalue("postgres_url")).start_master()


def in_time(call: Callable[[], Any], seconds: float = 20) -> Any:
    """``call()``'s result or exception, failing the test if it has neither in ``seconds``."""
    got: list[Any] = []

    def run() -> None:
        try:
            got.append(("ok", call()))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            got.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert got, f"no answer in {seconds}s"
    return got[0]


def test_the_largest_keys_and_members_are_stored_or_refused_never_hang(either: Cluster) -> None:
    # A key of 1,024 CJK characters (3,072 bytes of UTF-8) and a set member of 3,000 random
    # characters are within the rules; PostgreSQL cannot index either (its btree takes about
    # 2,700 bytes that do not compress), and the writer took its refusal for the database
    # being away: it tried again for ever, and every later write of the master queued behind
    # it.
    client = either.client()
    rnd = random.Random(7)
    key = "".join(chr(rnd.randrange(0x4E00, 0x9FFF)) for _ in range(1024))
    member = "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(3000))
    postgres = either.database_url is not None
    for write, read, stored, nothing in (
            (lambda: client.store_put(key, "v"), lambda: client.store_get(key), "v", None),
            (lambda: client.store_sadd("members", member),
             lambda: client.store_smembers("members"), {member}, set())):
        outcome, got = in_time(write)
        if postgres:  # a clear 400 naming the index, nothing stored
            assert outcome == "error" and isinstance(got, ValidationFailed), got
            assert got.code == "unstorable_value" and "index" in str(got), got
        else:
            assert outcome == "ok", got
        assert in_time(read) == ("ok", nothing if postgres else stored)
    # The master writes on.
    assert in_time(lambda: client.store_put("after", "ok")) == ("ok", None)
    assert client.store_get("after") == "ok"
    assert "the database is unavailable" not in either.log()


INCREMENTS = """
import sys
from titan import TitanClient
client = TitanClient()
for i in range({n}):
    client.store_incr("race", by=1 if i % 4 else 3)
    client.store_incr("race/down", by=-1)
"""


def test_counters_raced_by_processes_lose_nothing(either: Cluster) -> None:
    env = dict(either.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(either.port),
               TITAN_TOKEN=either.admin_token)
    n, procs = 120, 6
    racers = [subprocess.Popen([sys.executable, "-c", INCREMENTS.format(n=n)], env=env,
                               stderr=subprocess.PIPE, text=True) for _ in range(procs)]
    for p in racers:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    client = either.client()
    per_process = sum(1 if i % 4 else 3 for i in range(n))
    assert client.store_get("race") == str(procs * per_process)
    assert client.store_get("race/down") == str(-procs * n)


def test_waits_with_odd_timeouts_and_keys_that_come_and_go(make_cluster: MakeCluster) -> None:
    c = make_cluster().start_master()
    client = c.client()
    client.store_put("there", "")
    assert client.store_wait("there", timeout=0) == ""  # an empty value is a value
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        client.store_wait("absent", timeout=0)  # "is it there?": one ask, no wait
    assert time.monotonic() - started < 5
    for bad in (-1, -0.5, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ValidationFailed, match="timeout must be a number of seconds"):
            client.store_wait("absent", timeout=bad)  # type: ignore[arg-type]
    # A huge timeout (past the master's 300 s hold) is asked for in slices: answered when set.
    outcome: list[Any] = []
    waiter = threading.Thread(target=lambda: outcome.append(
        in_time(lambda: client.store_wait("later", timeout=10**9), 60)))
    waiter.start()
    time.sleep(0.5)
    # Deleting a key nobody wrote ends no wait; a value put and deleted at once is still
    # handed to the wait parked for it.
    assert c.client().store_delete("later") is False
    time.sleep(0.3)
    assert waiter.is_alive()
    other = c.client()
    other.store_put("later", "once")
    other.store_delete("later")
    waiter.join(30)
    assert outcome == [("ok", "once")]
    # Keys with slashes, dots and URL characters are keys like any other, end to end.
    for key in ("/lead", "trail/", "a//b", "a/../b", "%2F", "?q=1&r", "#frag", " ", "ключ/🔑"):
        client.store_put(key, key)
        assert client.store_get(key) == key and client.store_wait(key, timeout=0) == key
        assert key in client.store_keys(key[:1]), key
