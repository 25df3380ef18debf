"""Real Titan processes on loopback for integration tests: a master (or `titan up`) and
workers as subprocesses, free ports, a private data dir, everything killed afterwards."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from titan.client import TitanClient


class Cluster:
    def __init__(self, root: Path, *, lease_seconds: float = 15.0, database_url: str | None = None,
                 env: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.scripts = root / "scripts"
        self.scripts.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.dashboard_port = free_port()
        #: (certificate, key) the master serves HTTPS with; the test's own probes do not
        #: verify it (the clients under test do: the master records its pin for them).
        self.tls = tls
        self._context = ssl._create_unverified_context() if tls else None
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.env = {**os.environ, "TITAN_LEASE_SECONDS": str(lease_seconds),
                    "TITAN_RETRY_BACKOFF": "0.05", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._clients: list[TitanClient] = []

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, args: list[str], log_name: str, **kw: Any) -> subprocess.Popen[bytes]:
        log = open(self.root / log_name, "ab")  # noqa: SIM115 - closed with the process
        python = kw.pop("python", None) or sys.executable
        return subprocess.Popen([python, "-m", "titan", *args], stdout=log,
                                stderr=subprocess.STDOUT, env=kw.pop("env", self.env),
                                cwd=kw.pop("cwd", self.root), start_new_session=True, **kw)

    def _master_args(self) -> list[str]:
        if self.master is not None:
            # A restart keeps the API's port (workers and clients know it) but takes a fresh
            # dashboard port: the old one, free while the master was down, may have been
            # handed to another test meanwhile (a restart failed on it once in a full run).
            self.dashboard_port = free_port()
        args = ["--port", str(self.port), "--dashboard-port", str(self.dashboard_port),
                "--data-dir", str(self.data)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        return args

    def up(self, slots: int = 4, capabilities: str = "GENERAL") -> Cluster:
        """`titan up`: master plus the local worker."""
        self._launch("up", ["--slots", str(slots), "--capabilities", capabilities])
        self.wait_workers(1)
        return self

    def start_master(self, extra: list[str] | None = None) -> Cluster:
        """`titan master` (``extra``: more of its options, e.g. ``["--host", "0.0.0.0"]``)."""
        self._launch("master", extra or [])
        return self

    def _launch(self, command: str, extra: list[str]) -> None:
        """Start the master, on other ports when one it was given was taken meanwhile: a
        free port is picked before the master binds it, and in a full run another test's
        process took one in between (a whole module's cluster failed to start). The API's
        port changes only on a first start, when nobody knows it yet."""
        first = self.master is None
        for attempt in range(3):
            log = self.root / "master.log"
            seen = log.stat().st_size if log.exists() else 0
            self.master = self._spawn([command, *self._master_args(), *extra], "master.log")
            try:
                self.wait_healthy()
                return
            except RuntimeError:
                said = log.read_bytes()[seen:].decode(errors="replace")
                if "Address already in use" not in said or attempt == 2:
                    raise
            if first:
                self.port = free_port()
                self.url = f"{self.scheme}://127.0.0.1:{self.port}"

    def add_worker(self, capabilities: str | None = "GENERAL", slots: int | None = 4,
                   name: str | None = None,
                   wait: bool = True, extra: list[str] | None = None,
                   master_url: str | None = None,
                   env: dict[str, str] | None = None,
                   python: str | None = None) -> subprocess.Popen[bytes]:
        """A `titan worker` (``master_url``: another way to the master, e.g. a proxy;
        ``capabilities`` or ``slots`` None: the worker's defaults; ``python``: the interpreter
        it runs on, and its jobs, default this one: tests/integration/nobody_python.py)."""
        before = len(self.live_workers())
        token = (env or {}).get("TITAN_TOKEN") or (self.data / "worker.token").read_text().strip()
        wd = self.root / f"worker-{len(self.workers)}"
        wd.mkdir(exist_ok=True)
        args = ["worker", "--master", master_url or self.url, "--workdir", str(wd)]
        if capabilities is not None:
            args += ["--capabilities", capabilities]
        if slots is not None:
            args += ["--slots", str(slots)]
        if name:
            args += ["--name", name]
        proc = self._spawn(args + (extra or []), f"worker-{len(self.workers)}.log",
                           env={**self.env, **(env or {}), "TITAN_TOKEN": token}, python=python)
        self.workers.append(proc)
        if wait:
            self.wait_workers(before + 1)
        return proc

    def kill_master(self) -> None:
        assert self.master is not None
        self.master.kill()
        self.master.wait()

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.master is not None and self.master.poll() is not None:
                raise RuntimeError(f"master exited with {self.master.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=1,
                                            context=self._context) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"master not healthy after {timeout}s:\n{self.log()}")

    def live_workers(self) -> list[dict[str, Any]]:
        return [w for w in self.api("GET", "/workers")["workers"] if w["state"] == "live"]

    def wait_workers(self, n: int, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.live_workers()) >= n:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{n} worker(s) not live after {timeout}s:\n{self.log()}")

    def log(self, name: str = "master.log") -> str:
        path = self.root / name
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        for proc in [*self.workers, self.master]:
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    # -- talking to it ------------------------------------------------------------------------
    @property
    def admin_token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def client(self, token: str | None = None) -> TitanClient:
        c = TitanClient(url=self.url, token=token or self.admin_token) if self.tls else \
            TitanClient(host="127.0.0.1", port=self.port, token=token or self.admin_token)
        self._clients.append(c)
        return c

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.url}/api/v1{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token or self.admin_token}",
                     "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30, context=self._context) as r:
            return json.loads(r.read())

    def script(self, name: str, source: str) -> str:
        """Write a job script; returns its absolute path (submitted under its basename)."""
        path = self.scripts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return str(path)


def isolated_cluster(root: Path, env: dict[str, str] | None = None, **up: Any) -> Cluster:
    """`titan up` for a module-scoped fixture. Those are built before the root conftest's
    per-test isolation, so the cluster gets a clean environment of its own here (no TITAN_*
    from the developer's shell, a private user config)."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("TITAN_") and key != "TITAN_TEST_POSTGRES_URL":
                mp.delenv(key)
        mp.setenv("TITAN_CONFIG_DIR", str(root / "user-config"))
        c = Cluster(root, env=env)
    try:
        c.up(**up)
    except BaseException:
        c.stop()
        raise
    return c


def shared_cluster(slots: int = 4, env: dict[str, str] | None = None) -> Any:
    """A module-scoped ``cluster`` fixture: one `titan up` for all of a module's tests
    (``env``: variables for its processes, e.g. ``TITAN_EGRESS_ALLOW``).

    Starting a cluster costs seconds; most tests only submit work under names of their own,
    so a module assigns ``cluster = shared_cluster()`` unless its tests restart, kill or
    reconfigure the cluster (those keep the per-test ``cluster`` or ``make_cluster``)."""

    import pytest

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
        c = isolated_cluster(tmp_path_factory.mktemp("shared-cluster"), env=env, slots=slots)
        try:
            yield c
        finally:
            c.stop()

    return cluster



#: The session's write key, which only the page a sign-in answers carries
#: (dashboard/templates/signed_in.html).
_WRITE_KEY = re.compile(r'<meta name="titan-write-key" content="([0-9a-f]+)">')


def signed_in_reply(reply: Any) -> str:
    """The write key of a sign-in's reply (an httpx response), after checking it is one: a
    200 page that sets the cookie and goes on to ``next``."""
    assert reply.status_code == 200, (reply.status_code, reply.text[:300])
    assert "titan_session=" in reply.headers.get("set-cookie", ""), reply.headers
    found = _WRITE_KEY.search(reply.text)
    assert found is not None, reply.text[:300]
    return found.group(1)


def next_of(reply: Any) -> str:
    """Where a sign-in's reply sends the browser on (its Continue link)."""
    found = re.search(r'<a id="signed-in-next" href="([^"]*)">', reply.text)
    assert found is not None, reply.text[:300]
    return html.unescape(found.group(1))


def sign_in(http: Any, token: str, next_: str = "/") -> str:
    """Sign an httpx client in to the dashboard with ``token`` as the one-click link does;
    returns the session's write key (what a browser keeps in its storage)."""
    return signed_in_reply(http.get("/login", params={"token": token, "next": next_}))
