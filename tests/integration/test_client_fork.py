"""A TitanClient made before a fork (a module-level client, then ``multiprocessing`` with the
fork start method) works in the children and in the parent: each process on connections of
its own. Sharing the parent's keep-alive sockets, processes read each other's replies (a
store_get answered with another process's value, or "a reply that is not JSON")."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster
from titan.client import TitanClient

pytestmark = pytest.mark.slow


def hammer(client: TitanClient, prefix: str, children: int = 4, calls: int = 150) -> None:
    """``children`` forked processes each put and get ``calls`` values of their own through
    ``client`` (made and used by the parent before the fork), all while the parent goes on
    using it; every value read must be the one written."""
    client.store_put(f"{prefix}:parent", "p")  # the parent's connection, now idle in the pool
    ctx = multiprocessing.get_context("fork")
    results: Any = ctx.Queue()
    go = ctx.Event()  # all at once: each process's first call on the socket it inherited

    def work(n: int) -> None:
        wrong: list[str] = []
        go.wait(30)
        for i in range(calls):
            key = f"{prefix}:{n}:{i}"
            try:
                client.store_put(key, key)
                got = client.store_get(key)
                if got != key:
                    wrong.append(f"asked {key!r}, got {got!r}")
            except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
                wrong.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        results.put((n, wrong[:3], len(wrong)))

    procs = [ctx.Process(target=work, args=(n,)) for n in range(children)]
    try:
        for p in procs:
            p.start()
        parent = []
        go.set()
        for i in range(calls):  # the parent meanwhile, on the same client
            client.store_put(f"{prefix}:parent", str(i))
            got = client.store_get(f"{prefix}:parent")
            if got != str(i):
                parent.append(f"asked {i}, got {got!r}")
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    assert parent == []
    assert [o for o in outcomes if o[2]] == [], outcomes
    assert client.store_get(f"{prefix}:{children - 1}:{calls - 1}") == \
        f"{prefix}:{children - 1}:{calls - 1}"


def test_forked_children_use_connections_of_their_own(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        cluster.start_master()
        hammer(cluster.client(), "fork")
    finally:
        cluster.stop()


def test_a_fork_while_another_thread_holds_the_pool_s_lock_does_not_hang_the_child(
        tmp_path: Path) -> None:
    """The lock a thread of the parent held at the fork would never be released in the
    child (that thread is not there): the child's pool has a lock of its own."""
    cluster = Cluster(tmp_path)
    try:
        cluster.start_master()
        client = cluster.client()
        client.store_put("locked", "v")
        # The socket pool of the PlainHTTPTransport under httpx.
        pool = client._transport._http._transport._pool  # type: ignore[attr-defined]
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with pool._lock:  # type: ignore[attr-defined]
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: a call within 20 s, or exit 1
            code = 1
            try:
                timer = threading.Timer(20, lambda: os._exit(3))
                timer.start()
                code = 0 if client.store_get("locked") == "v" else 2
            finally:
                os._exit(code)
        release.set()
        holder.join()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.store_get("locked") == "v"
    finally:
        cluster.stop()
