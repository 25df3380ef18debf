"""The systems `make bench` puts beside Titan, each driving the same four workloads.

* the naive runner: ``subprocess.run([python, script])`` from two threads, what a user writes
  without an engine (a fresh interpreter per job, like Titan's jobs);
* Celery (prefork, 2 processes, Redis as broker and result backend, keys under a prefix of
  this run's own) and Ray (local, ``num_cpus=2``): each calls a trivial function in a warm
  worker process, which is cheaper than starting a script; the table says so.

Every peer answers the same calls: ``latency(n)`` (ms per submit -> result, one at a time),
``independent(n)`` (seconds for n jobs at once), ``loop(iterations, width)`` (ms per
iteration of "submit ``width`` jobs, wait for all") and ``layered(layers, width)`` (seconds
for a DAG where each layer waits for the whole layer before it).
"""

from __future__ import annotations

import gc
import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REDIS_URL = os.environ.get("TITAN_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def timed_ms(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


class NaiveRunner:
    name = "subprocess.run, 2 threads"

    def __init__(self, script: str) -> None:
        self.argv = [sys.executable, script]
        self.pool = ThreadPoolExecutor(2)

    def _run(self, _: object = None) -> None:
        subprocess.run(self.argv, check=True, stdin=subprocess.DEVNULL)

    def latency(self, n: int) -> list[float]:
        return [timed_ms(self._run) for _ in range(n)]

    def independent(self, n: int) -> float:
        t0 = time.perf_counter()
        list(self.pool.map(self._run, range(n)))
        return time.perf_counter() - t0

    def loop(self, iterations: int, width: int) -> float:
        t0 = time.perf_counter()
        for _ in range(iterations):
            list(self.pool.map(self._run, range(width)))
        return (time.perf_counter() - t0) * 1000 / iterations

    def layered(self, layers: int, width: int) -> float:
        t0 = time.perf_counter()
        for _ in range(layers):
            list(self.pool.map(self._run, range(width)))
        return time.perf_counter() - t0

    def close(self) -> None:
        self.pool.shutdown()


CELERY_APP = '''
import os
from celery import Celery

prefix = os.environ["TITAN_BENCH_PREFIX"]
app = Celery("titan_bench", broker=os.environ["TITAN_BENCH_REDIS"],
             backend=os.environ["TITAN_BENCH_REDIS"])
app.conf.update(broker_transport_options={"global_keyprefix": prefix},
                result_backend_transport_options={"global_keyprefix": prefix},
                broker_connection_retry_on_startup=True, result_expires=600,
                worker_hijack_root_logger=False)


@app.task
def noop(*args):
    return None
'''


class CeleryPeer:
    """Celery 5 with a prefork pool of two processes, Redis as broker and result backend."""

    name = "Celery + Redis, prefork x2"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="titan-bench-celery-"))
        (self.root / "titan_bench_app.py").write_text(CELERY_APP)
        prefix = f"titan-bench-{secrets.token_hex(4)}:"
        os.environ.update(TITAN_BENCH_PREFIX=prefix, TITAN_BENCH_REDIS=REDIS_URL)
        sys.path.insert(0, str(self.root))
        import titan_bench_app  # type: ignore[import-not-found]

        self.app, self.noop = titan_bench_app.app, titan_bench_app.noop
        self.log = open(self.root / "worker.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "titan_bench_app", "worker", "--pool",
             "prefork", "--concurrency", "2", "--loglevel", "WARNING", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=self.root, env=dict(os.environ, PYTHONPATH=str(self.root)),
            stdout=self.log, stderr=subprocess.STDOUT)
        self.noop.delay().get(timeout=60)  # the worker is up and answering

    def latency(self, n: int) -> list[float]:
        return [timed_ms(lambda: self.noop.delay().get(timeout=60)) for _ in range(n)]

    def _group(self, n: int) -> Any:
        from celery import group

        return group(self.noop.si() for _ in range(n))

    # A group's results are polled, every 0.5 s by default: 1 ms gives Celery its best figure.
    POLL = 0.001

    def independent(self, n: int) -> float:
        t0 = time.perf_counter()
        self._group(n).apply_async().get(timeout=600, interval=self.POLL)
        return time.perf_counter() - t0

    def loop(self, iterations: int, width: int) -> float:
        t0 = time.perf_counter()
        for _ in range(iterations):
            self._group(width).apply_async().get(timeout=60, interval=self.POLL)
        return (time.perf_counter() - t0) * 1000 / iterations

    def layered(self, layers: int, width: int) -> float:
        from celery import chain, chord

        # Celery's DAG: a chain of chords, each layer's group joined (natively, on Redis) into
        # a barrier task the next layer follows, without the client waiting in between. (A
        # bare chain of groups took ~15x as long here.)
        t0 = time.perf_counter()
        layer = [chord(self._group(width), self.noop.si()) for _ in range(layers)]
        chain(*layer).apply_async().get(timeout=600, interval=self.POLL)
        return time.perf_counter() - t0

    def close(self) -> None:
        gc.collect()  # results let go of their Redis subscriptions while Python still can
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        prefix = os.environ["TITAN_BENCH_PREFIX"]
        with self.app.connection_for_write() as conn:
            client = conn.default_channel.client
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)


class RayPeer:
    """Ray on this machine (``ray.init`` starts it), two CPUs."""

    name = "Ray, local, 2 CPUs"

    def __init__(self) -> None:
        import ray

        self.ray = ray
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local throwaway cluster
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)

        @ray.remote
        def noop(*args: Any) -> None:
            return None

        self.noop = noop
        ray.get([noop.remote() for _ in range(4)])  # both workers started

    def latency(self, n: int) -> list[float]:
        return [timed_ms(lambda: self.ray.get(self.noop.remote())) for _ in range(n)]

    def independent(self, n: int) -> float:
        t0 = time.perf_counter()
        self.ray.get([self.noop.remote() for _ in range(n)])
        return time.perf_counter() - t0

    def loop(self, iterations: int, width: int) -> float:
        t0 = time.perf_counter()
        for _ in range(iterations):
            self.ray.get([self.noop.remote() for _ in range(width)])
        return (time.perf_counter() - t0) * 1000 / iterations

    def layered(self, layers: int, width: int) -> float:
        # Each task of a layer takes the whole previous layer's results as arguments, so Ray
        # starts it only when they are all done: the same edges as Titan's DAG.
        t0 = time.perf_counter()
        previous: list[Any] = []
        for _ in range(layers):
            previous = [self.noop.remote(*previous) for _ in range(width)]
        self.ray.get(previous)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.ray.shutdown()
