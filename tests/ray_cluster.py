"""A real Ray head for the tests that run jobs on Ray: small (2 CPUs), on free ports, in a
private temporary directory, and killed with every process it started.

Ray is an optional extra (``pip install -e '.[ray]'``; ``make test`` installs it with the dev
extra). Without it these tests skip, except in CI (CI=true), where they are mandatory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI, free_port

CPUS = 2
#: The head's custom resource (and so a capability of a worker on it), and its one GPU (a
#: logical one: Ray hands it out without a device behind it).
CUSTOM = "FANCY"
#: For everything that talks to the test head: no token authentication (its token would be
#: written to ~/.ray) and no usage reports.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
START_TIMEOUT = 120.0


def require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        message = ("Ray is not installed (pip install -e '.[ray]'); the Ray executor's tests "
                   "need it")
        if IN_CI:
            pytest.fail(message + " — mandatory in CI")
        pytest.skip(message)


def _session(sid: int) -> list[int]:
    """Every process of session ``sid`` (Ray's workers have process groups of their own)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[3]) == sid:
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return pids


@contextmanager
def ray_head() -> Iterator[str]:
    """Start a Ray head; yields its address (``127.0.0.1:PORT``)."""
    require_ray()
    # Short: Ray's socket paths live under it and must fit in 107 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="tray", dir="/tmp"))
    port = free_port()
    ports = {name: free_port() for name in (
        "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "runtime-env-agent-port", "metrics-export-port")}
    args = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
            f"--port={port}", f"--num-cpus={CPUS}", "--num-gpus=1",
            f"--resources={json.dumps({CUSTOM: 1})}", "--include-dashboard=false",
            f"--temp-dir={tmp}", "--disable-usage-stats",
            # Small: two test processes may each run a head, in the machine's /dev/shm.
            "--object-store-memory=100000000",
            *(f"--{name}={value}" for name, value in ports.items())]
    log = tmp / "head.log"
    # The nodes' workers inherit TMPDIR: jobs' files land in here, not in the real /tmp.
    (tmp / "node").mkdir()
    env = {**os.environ, **RAY_ENV, "TMPDIR": str(tmp / "node")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_started(proc, log, "head")
        yield f"127.0.0.1:{port}"
    finally:
        _kill(proc, tmp)


@contextmanager
def ray_node(address: str, resources: dict[str, int]) -> Iterator[subprocess.Popen[bytes]]:
    """A second node (1 CPU, ``resources``) joined to the head at ``address``; yields its
    ``ray start --block`` process, whose session holds the node's raylet. Killed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="trayn", dir="/tmp"))
    ports = {name: free_port() for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port")}
    args = [str(Path(sys.executable).with_name("ray")), "start", "--block",
            f"--address={address}", "--num-cpus=1", f"--resources={json.dumps(resources)}",
            "--disable-usage-stats", "--object-store-memory=80000000",
            *(f"--{name}={value}" for name, value in ports.items())]
    log = tmp / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env={**os.environ, **RAY_ENV}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_started(proc, log, "node")
        yield proc
    finally:
        _kill(proc, tmp)


def _wait_started(proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Until ``ray start --block`` (``proc``, writing ``log``) says its runtime started."""
    deadline = time.monotonic() + START_TIMEOUT
    while b"Ray runtime started" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Ray {what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _kill(proc: subprocess.Popen[bytes], tmp: Path) -> None:
    """Kill ``proc``'s whole session and remove ``tmp``. SIGTERM takes `ray start --block`
    half a minute; nothing here needs a clean stop."""
    for pid in _session(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)


def raylet_of(node: subprocess.Popen[bytes]) -> int:
    """The pid of the raylet ``node`` (from :func:`ray_node`) started."""
    for pid in _session(node.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().split(b"\0")[0].endswith(b"/raylet"):
                    return pid
        except OSError:
            pass
    raise LookupError("no raylet in the node's session")


def kill_head(address: str) -> None:
    """Kill the head at ``address`` (from :func:`ray_head`) at once, GCS and raylet: its
    whole cluster dies, as with a lost host."""
    port = address.rsplit(":", 1)[1]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/gcs_server") and f"--gcs_server_port={port}".encode() in argv:
            for member in _session(os.getsid(int(pid))):
                try:
                    os.kill(member, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
    raise LookupError(f"no GCS serving port {port}")


@contextmanager
def ray_client_env() -> Iterator[None]:
    """:data:`RAY_ENV` in this process's environment, for a driver of the test head."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():
            mp.setenv(key, value)
        yield
