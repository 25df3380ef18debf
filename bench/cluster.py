"""Start a throwaway `titan up` for a benchmark (free ports, a temp data dir, killed at exit),
and throwaway PostgreSQL databases."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from titan.client import TitanClient

PG_ADMIN_URL = os.environ.get("TITAN_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_compiled = False


def as_installed() -> None:
    """Titan's modules loaded as an installed Titan loads them, from bytecode: a checkout run
    with PYTHONDONTWRITEBYTECODE compiles them from source, which changes what a forked job
    costs (titan.worker.zygote.preload says why). Once per benchmark process."""
    global _compiled
    if not _compiled:
        import compileall

        import titan

        compileall.compile_dir(os.path.dirname(titan.__file__), quiet=1)
        _compiled = True


class BenchCluster:
    """`titan up` (master + a local worker with ``slots``), or with ``worker=False`` a bare
    `titan master` (for figures that need no job to run)."""

    def __init__(self, slots: int = 1, env: dict[str, str] | None = None,
                 worker: bool = True) -> None:
        as_installed()
        self.root = Path(tempfile.mkdtemp(prefix="titan-bench-"))
        self.port, self.dashboard_port = _free_port(), _free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
        env = dict(base, TITAN_CONFIG_DIR=str(self.root / "user"), **(env or {}))
        self.log = open(self.root / "up.log", "wb")  # noqa: SIM115
        command = ["up", "--slots", str(slots)] if worker else ["master"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "titan", *command, "--port", str(self.port),
             "--dashboard-port", str(self.dashboard_port), "--data-dir", str(self.root / "data")],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=1)
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the master did not start:\n"
                                       + (self.root / "up.log").read_text()[-3000:]) from None
                time.sleep(0.05)
        self.token = (self.root / "data" / "admin.token").read_text().strip()
        self.client = TitanClient(host="127.0.0.1", port=self.port, token=self.token)
        self.base = f"http://127.0.0.1:{self.dashboard_port}"  # the dashboard
        while worker and time.time() < deadline:
            workers = self.client.api("GET", "/workers")["workers"]
            if any(w["state"] == "live" for w in workers):
                return
            time.sleep(0.05)
        if worker:
            raise RuntimeError("the local worker did not register")

    def script(self, name: str, source: str) -> str:
        path = self.root / name
        path.write_text(source)
        return str(path)

    def close(self) -> None:
        self.client.close()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        # the local worker runs in its own session; it exits once the master is gone
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres() -> Iterator[Callable[[], str]]:
    """``create()`` makes a fresh database on the PostgreSQL server and returns its URL (or
    raises); every one is dropped on exit."""
    import sqlalchemy as sa

    admin, names = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT"), []

    def create() -> str:
        name = f"titan_bench_{os.getpid()}_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"

    try:
        yield create
    finally:
        if names:
            with admin.connect() as conn:
                for name in names:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
