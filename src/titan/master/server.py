"""Serving the master: `titan master` and the server half of `titan up`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from titan.errors import ConfigError, MasterAlreadyRunning
from titan.hangup import detach_hung_up_outputs, hangup_stops
from titan.log_format import log_to_stderr
from titan.master import preflight
from titan.master.app import create_app, open_secured_storage
from titan.master.config import MasterConfig
from titan.master.standby import EXIT_REPLACED, LeaderGate
from titan.permissions import use_private_umask
from titan.storage import cancelled_at_start

log = logging.getLogger("titan.master")


def bind(host: str, port: int, option: str = "--port") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that say they are TCP; without it every response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror} "
                          f"({_bind_hint(exc, host, port, option)})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _bind_hint(exc: OSError, host: str, port: int, option: str) -> str:
    """What to do about a failed bind. Every one said "is another Titan master running? pick
    another --port", a host that does not resolve or is not this machine's too (a QA pass)."""
    if isinstance(exc, socket.gaierror):
        return (f"--host {host} cannot be resolved: give an address of this machine, e.g. "
                "127.0.0.1, or 0.0.0.0 for all of them")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"--host {host} is not an address of this machine: give one of its own, e.g. "
                "127.0.0.1, or 0.0.0.0 for all of them")
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return f"ports below 1024 need privileges: pick another {option}"
    if exc.errno == errno.EADDRINUSE:
        return f"is another Titan master running? pick another {option}"
    return f"check --host and {option}"


def record(config: MasterConfig) -> None:
    """Let clients find this master: <data-dir>/master.json and the user's config."""
    from titan.client.master_record import record_master

    token = (config.data_path / "admin.token").read_text().strip()
    try:
        from titan.client.tls import fingerprint

        pin = fingerprint(Path(config.tls_cert)) if config.tls_cert else None
        record_master(config.api_url, token, str(config.data_path), fingerprint=pin,
                      dashboard_port=config.dashboard_port)
    except Exception as exc:  # a broken user config must not stop the master
        log.warning("could not record the master in the user config: %s", exc)


def standby_file(config: MasterConfig, leader: str | None, *, standing: bool = True) -> None:
    """A standby that has not led says so in its data dir (``leader``: the leader it knows,
    if any), for `titan token create` run there; ``standing=False`` removes the file (it
    leads, or stops)."""
    from titan.client.master_record import forget_standby, record_standby

    try:
        if standing:
            record_standby(config.data_path, config.public_url, leader)
        else:
            forget_standby(config.data_path)
    except (OSError, ConfigError) as exc:  # a hint for clients must not stop the master
        log.warning("could not write the standby file: %s", exc)


def forget(config: MasterConfig) -> None:
    """A master that stops cleanly leaves the user's config as the one before it found it,
    and its data dir without the ``master.json`` that named it: clients look for one from
    their directory up, and found the stopped master there before a running one elsewhere
    (`make demo-stop`, then any `titan up` and a script in the checkout)."""
    from titan.client.data_dirs import MASTER_FILE
    from titan.client.master_record import forget_master
    from titan.client.urls import parse_url

    try:
        token = (config.data_path / "admin.token").read_text().strip()
        forget_master(config.api_url, token)
    except Exception as exc:  # a broken user config must not keep the master from stopping
        log.warning("could not remove the master from the user config: %s", exc)
    path = config.data_path / MASTER_FILE
    try:
        if json.loads(path.read_text()).get("url") == parse_url(config.api_url)[0]:
            path.unlink()
    except (OSError, ValueError, AttributeError, ConfigError):
        pass  # gone, another master's since, or not ours to judge


#: How long a stopping master lets open requests finish before it cuts them.
GRACEFUL_SECONDS = 3


def uvicorn_config(app: Any, config: MasterConfig) -> uvicorn.Config:
    """How uvicorn serves the master's ASGI ``app``."""
    # log_config=None: uvicorn's own loggers go through Titan's handler (log_format.py), so
    # what they say (a traceback holding a client's header) is escaped like every line; its
    # default config gave them handlers of their own that wrote control characters raw.
    return uvicorn.Config(app, lifespan="on", log_level="warning", log_config=None,
                          access_log=False, timeout_keep_alive=75, ws="websockets-sansio",
                          # A worker's report frame holds up to 2 MiB of lines (6x that when
                          # every byte is a control character JSON escapes): well past uvicorn's
                          # 16 MiB default, which closed the channel on it, and the worker sent
                          # it again for ever. A frame is a request body: the same limit.
                          ws_max_size=max(config.max_body_bytes, 32 << 20),
                          ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key,
                          # Long-polls (a worker's, `titan logs -f`, a wait) held the exit for
                          # up to their whole wait: their clients retry on the next master.
                          timeout_graceful_shutdown=GRACEFUL_SECONDS)


class Server(uvicorn.Server):
    """uvicorn's server, telling us when it is up, and letting `titan up` stop its worker
    before the API goes away."""

    on_started: Any = None
    #: Called (on the event loop) at the first stop signal, before connections drain.
    on_stopping: Any = None
    before_exit: Any = None
    #: Called on the next signal while ``before_exit`` is still at work (a second Ctrl-C).
    again: Any = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's Ctrl-C and SIGTERM, and SIGHUP: a closed terminal or a dropped SSH
        session killed the master with 129 before it drained or forgot itself, and clients
        were left pointed at it (master.json, the user config's default)."""
        with super().capture_signals():
            if threading.current_thread() is not threading.main_thread() or not hangup_stops():
                yield
                return
            previous = signal.signal(signal.SIGHUP, self.handle_exit)
            try:
                yield
            finally:  # before uvicorn raises the signal again, into serve()'s handler
                signal.signal(signal.SIGHUP, previous)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    def _stopping(self) -> None:
        if self.on_stopping is not None and not self.should_exit:
            hook, self.on_stopping = self.on_stopping, None
            with contextlib.suppress(RuntimeError):  # no loop yet: nothing runs to quiesce
                asyncio.get_running_loop().call_soon_threadsafe(hook)

    def stop_now(self) -> None:
        """Stop serving without a signal, from the event loop (this master was replaced):
        as at a first SIGTERM, open long-polls are answered ``503 master_stopping`` first,
        which clients retry on the next master. Only ``should_exit`` set, they waited out
        the graceful shutdown and were cancelled: a 500 to every waiting client."""
        self._stopping()
        self.should_exit = True

    def handle_exit(self, sig: int, frame: Any) -> None:
        if sig == signal.SIGHUP:
            detach_hung_up_outputs()
        self._stopping()
        if self.before_exit is not None and not self.should_exit:
            hook, self.before_exit = self.before_exit, None
            hook(lambda: super(Server, self).handle_exit(sig, frame))
            return
        if self.again is not None and not self.should_exit:
            hook, self.again = self.again, None
            hook()
            return
        super().handle_exit(sig, frame)


def make_server(config: MasterConfig, *, standby: bool | None = None,
                ) -> tuple[Server, list[socket.socket], LeaderGate | None]:
    """The server, its bound sockets, and on a PostgreSQL database shared by several masters
    the gate that keeps this one a standby until it leads, heartbeats while it leads and
    stops it once replaced (None on SQLite, which one master owns)."""
    # Everything the master writes (database, -wal/-shm, blobs, tokens) is its own alone.
    use_private_umask()
    config.check()
    storage = open_secured_storage(config)
    leadership = getattr(storage, "leadership", None)
    may_wait = config.standby if standby is None else standby
    sockets: list[socket.socket] = []
    try:
        if leadership is not None:
            leadership.url = config.public_url  # what standbys and clients are told
            leadership.timeout = config.leader_timeout
        waits = False
        if leadership is not None and may_wait:
            # A standby when another leads: the gate waits for it.
            waits = not leadership.try_lead()
        else:
            storage.claim_scheduler()
        preflight.check(config, storage, standby=waits)
        sockets.append(bind(config.host, config.port))
        if config.dashboard_port and config.dashboard_port != config.port:
            sockets.append(bind(config.host, config.dashboard_port, "--dashboard-port"))
    except BaseException as exc:
        for sock in sockets:
            sock.close()
        storage.close()
        # A statement cancelled past opening (the leader's claim, the blob store's mark): as
        # open_storage says it, not SQLAlchemy's traceback.
        said = cancelled_at_start(exc)
        if said is not None:
            raise ConfigError(f"the master cannot start on its database: {said}") from None
        if isinstance(exc, MasterAlreadyRunning):
            raise MasterAlreadyRunning(exc.pid, exc.database, running_at(config, exc.database),
                                       data_dir=config.data_dir) from None
        raise
    app: Any = create_app(config, storage)
    api = app
    gate = None
    if leadership is not None:
        # A master that would not wait (`titan up`, --no-standby) leads from the start, and
        # still heartbeats and stops once replaced: without the gate it beat nothing, a
        # standby took it for dead after the leader timeout, and both said they led.
        gate = app = LeaderGate(app, leadership, heartbeat=config.leader_timeout / 5)
    uv = uvicorn_config(app, config)
    server = Server(uv)

    def quiesce() -> None:
        ctx = getattr(api.state, "ctx", None)  # None: not started (or a standby)
        if ctx is not None:
            ctx.engine.quiesce()

    server.on_stopping = quiesce
    return server, sockets, gate


def running_at(config: MasterConfig, database: str) -> str:
    """Where the master that holds ``database`` answers (", at URL (dashboard URL)"), from the
    master.json beside it, which that master wrote as it started; "" when unknown. A second
    `titan up` in a directory said only the pid and database file of the one running there,
    not the address the user was after (a lifecycle QA pass)."""
    from titan.client.data_dirs import MASTER_FILE, read_json

    if Path(database).parent != config.data_path:
        return ""  # another data dir's database: this dir's master.json is not that master's
    try:
        record = read_json(config.data_path / MASTER_FILE)
    except ConfigError:
        return ""
    url = record.get("url") if isinstance(record, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return ""
    dashboard = record.get("dashboard_port")
    if isinstance(dashboard, int) and not isinstance(dashboard, bool) and 0 < dashboard < 65536:
        return f", at {url} (dashboard {url.rsplit(':', 1)[0]}:{dashboard}/)"
    return f", at {url}"


class _Terminated(Exception):
    """SIGTERM or SIGHUP, raised once uvicorn has stopped (it re-raises the signals it
    handled)."""


def _terminated(_sig: int, _frame: Any) -> None:
    raise _Terminated


def serve(server: Server, sockets: list[socket.socket]) -> None:
    """Run ``server`` until it is stopped. A stop by Ctrl-C, SIGTERM or SIGHUP is a clean exit
    (0): uvicorn re-raises the signal it handled, and SIGTERM's default action ended the
    process with 143 (SIGHUP's with 129) before anything after this ran."""
    stops = (signal.SIGTERM, signal.SIGHUP) if hangup_stops() else (signal.SIGTERM,)
    previous = {sig: signal.signal(sig, _terminated) for sig in stops}
    try:
        server.run(sockets=sockets)
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def banner(config: MasterConfig) -> None:
    # The URL clients are given (--master, TITAN_URL, TitanClient(url=)): the root; its
    # API's base, /api/v1, printed here once, was refused by them (they take it now too).
    print(f"Titan master  {config.api_url}   (data: {config.data_path})", flush=True)
    if config.dashboard_port and sys.stdout.isatty():
        print(f"Dashboard     {sign_in_link(config)}", flush=True)
        print("              (one-click sign-in: the link carries the admin token; keep it to "
              "yourself)", flush=True)
    elif config.dashboard_port:
        # Not a terminal: a service's journal or `docker logs`, which other people read. The
        # link would put the admin token there, kept 0600 on disk everywhere else.
        link = sign_in_link(config).split("/login?")[0] + "/"
        print(f"Dashboard     {link}   (sign in: `titan dashboard` prints a one-click link, "
              "as the master's user)", flush=True)
    admin = config.data_path / "admin.token"
    if "admin.token" in config.revoked_files:  # pointed at, it opened nothing (a QA pass)
        print(f"Admin token   {admin} holds a REVOKED token: delete the file and restart to "
              "get a new one", flush=True)
    else:
        print(f"Admin token   {admin}", flush=True)
    if config.listens_everywhere and not config.advertise_url:
        # Its URL above is this machine's own (127.0.0.1): other machines need another.
        print(f"Other hosts   this master listens on every interface; set --advertise-url "
              f"{config.scheme}://<an address of this machine they reach>:{config.port} "
              "(TITAN_ADVERTISE_URL) so the dashboard's worker command and standbys name it",
              flush=True)
    if config.tls_cert:
        from titan.client.tls import fingerprint

        print(f"TLS           {config.tls_cert} ({fingerprint(Path(config.tls_cert))}); clients "
              f"elsewhere: TITAN_CA_FILE=<a copy of it> or TITAN_TLS_FINGERPRINT=<that sha256> "
              "(with standby masters: every master's, comma-separated)", flush=True)


def sign_in_link(config: MasterConfig, next_page: str = "/") -> str:
    """The dashboard URL that signs the browser in with the admin token (as Jupyter's does)."""
    from urllib.parse import urlencode

    host = config.api_url.split("//")[1].rsplit(":", 1)[0]
    token = (config.data_path / "admin.token").read_text().strip()
    query = urlencode({"token": token, "next": next_page})
    return f"{config.scheme}://{host}:{config.dashboard_port or config.port}/login?{query}"


def run_master(config: MasterConfig) -> int:
    log_to_stderr(logging.INFO, "%(asctime)s %(name)s %(levelname)s %(message)s")
    server, sockets, gate = make_server(config)
    announced = False

    def announce() -> None:
        nonlocal announced
        if announced or not server.started:
            return
        announced = True
        standby_file(config, None, standing=False)
        record(config)
        banner(config)

    def started() -> None:
        if gate is None or gate.leading:
            announce()
        else:
            standby_file(config, gate.known_leader)
            print(f"Titan master  {config.public_url}   standby: another master leads; "
                  "this one takes over when it goes", flush=True)

    server.on_started = started
    if gate is not None:
        gate.on_leading = announce
        gate.stop_serving = server.stop_now
    try:
        serve(server, sockets)
    finally:
        if announced:
            forget(config)
        elif gate is not None:
            standby_file(config, None, standing=False)
    if gate is not None and gate.replaced is not None:
        return EXIT_REPLACED
    return 0 if server.started else 1
