"""`titan up`: the master and a local worker in one command."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from titan.client.tls import fingerprint
from titan.errors import ConfigError
from titan.log_format import log_to_stderr
from titan.master.config import MasterConfig
from titan.master.server import banner, forget, make_server, record, serve
from titan.master.standby import EXIT_REPLACED
from titan.permissions import private_dir, require_owned, use_private_umask
from titan.worker import lifeline

log = logging.getLogger("titan.up")


def workspace_root(data_dir: Path) -> Path:
    """Where the local worker's jobs run: ``<data-dir>-workspace``, beside the data dir and
    never inside it, so no relative path from a job's cwd lands on the master's secrets."""
    return data_dir.with_name(data_dir.name + "-workspace")


class LocalWorker:
    """The worker subprocess of `titan up`, in its own session so Ctrl-C reaches only us."""

    def __init__(self, config: MasterConfig, slots: int, capabilities: list[str], *,
                 sandbox: bool = False) -> None:
        self.config = config
        self.slots = slots
        self.capabilities = capabilities
        self.sandbox = sandbox
        self.umask = 0o022
        self.proc: subprocess.Popen[bytes] | None = None
        # Held open while we live: if we die without stopping the worker, it stops itself.
        self._lifeline: int | None = None

    def start(self) -> None:
        data = self.config.data_path
        # TITAN_DATA_DIR tells the worker's sandbox what to hide (it never reaches a job).
        env = dict(os.environ, TITAN_TOKEN=(data / "worker.token").read_text().strip(),
                   TITAN_DATA_DIR=str(data))
        if self.config.tls_cert:  # the worker, and through it its jobs, trust our certificate
            # By its fingerprint: a CA-issued certificate is no CA file (client/tls.py).
            env["TITAN_TLS_FINGERPRINT"] = fingerprint(Path(self.config.tls_cert))
        cmd = [sys.executable, "-m", "titan", "worker", "--master", self.config.api_url,
               "--slots", str(self.slots), "--capabilities", ",".join(self.capabilities),
               "--workdir", str(workspace_root(data)), "--name", "local"]
        if self.sandbox:
            cmd.append("--sandbox")
        if self._lifeline is not None:  # a worker started again: the old one's is done
            with contextlib.suppress(OSError):
                os.close(self._lifeline)
        read_fd, self._lifeline = lifeline.open_for_child(env)
        try:
            self.proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                         pass_fds=(read_fd,), umask=self.umask)
        finally:
            os.close(read_fd)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the worker (a first SIGTERM drains it, a second kills its jobs)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def wait(self) -> None:
        """Until the worker has exited (a drain ends when its last running job does)."""
        if self.proc is not None:
            self.proc.wait()

    def stop(self, grace: float = 5.0) -> None:
        """Drain (SIGTERM), then kill running jobs (second SIGTERM), then SIGKILL."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
            try:
                proc.send_signal(sig)
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return


#: A local worker that exits sooner than this after its start could not start.
START_GRACE = 10.0
#: Restarts of a worker that keeps dying wait 2, 4, ... up to this many seconds.
RESTART_PAUSE_MAX = 60.0


def run_up(config: MasterConfig, slots: int | None = None,
           capabilities: list[str] | None = None, *, sandbox: bool = False) -> int:
    log_to_stderr(logging.INFO, "%(asctime)s %(name)s %(levelname)s %(message)s")
    if slots is not None and slots < 1:  # 0 became the CPU count; `titan worker` refuses it
        raise ConfigError(f"--slots must be at least 1, got {slots}")
    config.started_by = "titan up"  # the tokens it makes say so
    worker = LocalWorker(config, slots or os.cpu_count() or 2, capabilities or ["GENERAL"],
                         sandbox=sandbox)
    # The master's files are private; jobs create files with the umask the user chose.
    worker.umask = use_private_umask()
    # One machine's cluster: on a shared PostgreSQL database it refuses rather than wait as a
    # standby (its local worker would have no master to work for).
    server, sockets, gate = make_server(config, standby=False)
    # The local worker's folder is Titan's alone, as the data dir is: under umask 000 it was
    # 0777, and any local user could put a workspace of their own in place of the worker's.
    workspace = private_dir(workspace_root(config.data_path))
    require_owned([workspace], "titan up")
    workspace.chmod(0o700)

    stopping = threading.Event()
    failed: list[str] = []

    def watch() -> None:
        # `titan up` went on serving with no worker when its worker could not start (a bad
        # TITAN_* setting): every job then waited for ever. A first worker that ends at once
        # stops `titan up` with its reason above; a worker that dies later (an OOM kill, a
        # crash) is started again, waiting longer each time it dies soon after a start.
        began, first, pause = time.monotonic(), True, 1.0
        while True:
            worker.wait()
            if stopping.is_set():
                return
            code = worker.proc.returncode if worker.proc is not None else None
            lived = time.monotonic() - began
            if code == lifeline.EXIT_REFUSED:
                # Its token was revoked: every start is refused the same way. It was started
                # again for ever (2, 4, 8 ... s), saying only "unknown or revoked token" (a QA
                # pass); said once, with the way out, and left stopped (revoked before this
                # start, it is not started at all: started() below).
                print(f"titan up: the master refuses the local worker's token "
                      f"({config.data_path / 'worker.token'}: revoked, or not a worker's); "
                      "it is not started again: delete that file and restart `titan up` to "
                      "get a new one (jobs wait for a worker meanwhile)",
                      file=sys.stderr, flush=True)
                return
            # Killed by a signal (the OOM killer, a kill -9) is not "could not start": a worker
            # that cannot start says why and exits with a code. That one stopped the cluster
            # when it came within the grace, jobs running and all (a QA pass).
            if first and lived < START_GRACE and (code is None or code >= 0):
                failed.append(f"the local worker exited at start (exit code {code})")
                print(f"titan up: {failed[0]}; stopping", file=sys.stderr, flush=True)
                server.should_exit = True
                return
            first = False
            pause = 1.0 if lived > RESTART_PAUSE_MAX else min(2 * pause, RESTART_PAUSE_MAX)
            print(f"titan up: the local worker exited (exit code {code}); starting it again "
                  f"in {pause:g} s", file=sys.stderr, flush=True)
            if stopping.wait(pause):
                return
            began = time.monotonic()
            worker.start()

    def started() -> None:
        if "worker.token" in config.revoked_files:
            # Revoked before this start: the worker could never start. It was started, its
            # refusal said after a banner that read like a cluster ready for work (a QA pass).
            failed.append("the local worker's token is revoked")
            files = [config.data_path / f for f in ("worker.token", "admin.token")
                     if f in config.revoked_files]
            print(f"titan up: the master refuses the local worker's token; "
                  f"{' and '.join(map(str, files))} hold{'s' if len(files) == 1 else ''} a "
                  "REVOKED token: delete them and run `titan up` again to get new ones; "
                  "stopping", file=sys.stderr, flush=True)
            server.should_exit = True
            return
        record(config)
        worker.start()
        threading.Thread(target=watch, name="titan-up-worker", daemon=True).start()
        banner(config)
        print(f"Worker        local, {worker.slots} slot(s), capabilities "
              f"{','.join(worker.capabilities)}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)

    def before_exit(then: Callable[[], None]) -> None:
        # Stop the worker while the API still answers, so it can hand back its results. A
        # drain lets running jobs finish, however long they take (it killed them after 5 s,
        # while it said "draining"); a second Ctrl-C stops them at once.
        stopping.set()

        def stop() -> None:
            print("Stopping: draining the local worker (running jobs finish; press Ctrl-C "
                  "again to stop them now) ...", flush=True)
            worker.signal(signal.SIGTERM)
            worker.wait()
            then()
        threading.Thread(target=stop, name="titan-up-stop", daemon=True).start()

    def again() -> None:
        print("Stopping the running jobs (they start again at the next `titan up`) ...",
              flush=True)
        worker.signal(signal.SIGTERM)  # the worker's second: it kills its jobs and exits

    def replaced() -> None:
        # Another master took this database over: this one's memory is not to be trusted and
        # its worker's results would go nowhere. Stop both now (no drain).
        stopping.set()
        server.stop_now()

    server.on_started = started
    server.before_exit = before_exit
    server.again = again
    if gate is not None:  # on PostgreSQL: it leads from the start, and beats while it does
        gate.stop_serving = replaced
    try:
        serve(server, sockets)
    finally:
        stopping.set()
        worker.stop(grace=2.0)
        if server.started:
            forget(config)
    if gate is not None and gate.replaced is not None:
        return EXIT_REPLACED
    return 0 if server.started and not failed else 1
