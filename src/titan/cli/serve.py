"""``titan up``, ``titan master`` and ``titan worker``: the commands that run Titan itself
rather than talk to it (the rest of the CLI is in :mod:`titan.cli.commands`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from titan.errors import ConfigError, TitanError
from titan.worker import settings as worker_settings


def add_arguments(up: argparse.ArgumentParser, master: argparse.ArgumentParser,
                  worker: argparse.ArgumentParser) -> None:
    cpus = os.cpu_count() or 1
    _serve_options(up)
    up.add_argument("--slots", type=int, default=cpus,
                    help="jobs the local worker runs at once (default: this machine's CPU count)")
    up.add_argument("--capabilities", default="GENERAL",
                    help="local worker capabilities, comma-separated (default GENERAL)")
    _sandbox_option(up)
    up.add_argument("--tls", action="store_true",
                    help="serve HTTPS with a self-signed certificate made in <data-dir>/tls "
                         "(local clients trust it by themselves; see docs/security.md)")

    _serve_options(master)
    master.add_argument("--advertise-url", metavar="URL", default=argparse.SUPPRESS,
                        help="the URL standbys and clients are told to use for this master "
                             "while it leads (default: the address it listens on; env "
                             "TITAN_ADVERTISE_URL)")
    master.add_argument("--no-standby", dest="standby", action="store_false",
                        help="on PostgreSQL, refuse to start when another master leads "
                             "instead of waiting as a standby")

    p = worker
    p.add_argument("--master", metavar="URL", action="append", default=argparse.SUPPRESS,
                   help="the master's URL; repeat it, or separate URLs with commas, to name a "
                        "leader and its standbys: the worker follows whichever leads "
                        "(default: discovered like the SDK does)")
    p.add_argument("--capabilities", default=None,
                   help="capabilities, comma-separated, e.g. GPU,GENERAL (default GENERAL; "
                        "with --executor ray, what the cluster has: GENERAL, GPU, its custom "
                        "resources)")
    p.add_argument("--slots", type=int, default=None,
                   help="jobs run at once (default: this machine's CPU count; with --executor ray, "
                        "the cluster's CPUs, and fewer while other work fills it)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where jobs run: processes on this machine (local, the default) or "
                        "tasks of a Ray cluster (ray; pip install 'titan-agents[ray]')")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="the Ray cluster for --executor ray, e.g. 10.0.0.5:6379 (default: env "
                        "RAY_ADDRESS, else the one `ray start` started on this machine)")
    p.add_argument("--workdir", default=".", help="where workspaces live (default .)")
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    _sandbox_option(p)
    p.add_argument("--run-as", metavar="USER", default=None,
                   help="run jobs as this OS user (the worker must run as root; "
                        "env TITAN_RUN_AS)")
    p.add_argument("--name", default=None,
                   help="a name shown in `titan workers`, unique among live workers: refused "
                        "while a live one has it (default: the host's name, made free with "
                        "-2, -3... when taken)")
    # No default here: TITAN_WORKER_TRANSPORT is read when the command runs, after ./.env is
    # loaded (read as the parser was built, a .env's value never reached `titan worker`).
    p.add_argument("--transport", choices=("channel", "http"), default=None,
                   help="how jobs and results travel: one WebSocket (channel, the default; "
                        "HTTP long-polls when the master offers none) or HTTP long-polls "
                        "(env TITAN_WORKER_TRANSPORT)")


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=argparse.SUPPRESS,
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=argparse.SUPPRESS,
                   help="API port (default 9090)")
    p.add_argument("--dashboard-port", type=int, default=5000,
                   help="dashboard port (default 5000; 0: none, the API port serves the "
                        "dashboard too)")
    p.add_argument("--data-dir", default="./.titan",
                   help="state directory (default ./.titan)")
    p.add_argument("--database-url", default=None,
                   help="sqlite:///path or postgresql://... (default: SQLite in the data dir)")
    p.add_argument("--tls-cert", metavar="PEM", default=argparse.SUPPRESS,
                   help="serve HTTPS (and WSS) with this certificate (env TITAN_TLS_CERT)")
    p.add_argument("--tls-key", metavar="PEM", default=argparse.SUPPRESS,
                   help="the certificate's private key (env TITAN_TLS_KEY)")


def _sandbox_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sandbox", action="store_true",
                   help="run jobs in a Landlock filesystem sandbox that hides the data dir, "
                        "~/.titan and other credentials (Linux 5.13+; env TITAN_SANDBOX=1, true, yes "
                        "or on)")


def _sandbox(args: argparse.Namespace) -> bool:
    """--sandbox, else TITAN_SANDBOX read as a switch (1/true/yes/on, 0/false/no/off; another
    value is a one-line error, with --sandbox too): read when the command runs, after ./.env
    is loaded (a .env's TITAN_SANDBOX reached `titan up`'s worker but not `titan worker`)."""
    from titan.worker.settings import env_switch

    from_env = env_switch("TITAN_SANDBOX", False)
    return bool(args.sandbox) or from_env


def _run_as(args: argparse.Namespace) -> str | None:
    """--run-as, else TITAN_RUN_AS, read when the command runs (after ./.env is loaded, as
    TITAN_SANDBOX is). A user this machine does not have is said under the name it was
    given: TITAN_RUN_AS=nosuch was "--run-as: no such user 'nosuch'" (a QA pass)."""
    import pwd

    user, given = (args.run_as, "--run-as") if args.run_as else (
        os.environ.get("TITAN_RUN_AS") or None, "TITAN_RUN_AS")
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"{given}: no such user {user!r}") from None
    return user


def _capabilities(text: str) -> list[str]:
    caps = [c.strip() for c in text.split(",") if c.strip()]
    if not caps:
        raise TitanError("--capabilities needs at least one name, e.g. GENERAL,GPU")
    return caps


def _master_config(args: argparse.Namespace) -> Any:
    from titan.master.config import MasterConfig

    config = MasterConfig(
        host=args.host or "127.0.0.1",
        port=9090 if args.port is None else int(args.port),
        dashboard_port=args.dashboard_port,
        data_dir=str(args.data_dir),
        database_url=args.database_url,
    )
    if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None):
        config.tls_cert = getattr(args, "tls_cert", None)
        config.tls_key = getattr(args, "tls_key", None)
    elif getattr(args, "tls", False):
        config.check_data_dir()  # before the certificate's folder is made in it
        from titan.client.tls import self_signed
        from titan.permissions import private_dir

        # The data dir first, private: made as the certificate's parent it was 0755 (umask)
        # until the master tightened it, with a warning of a leak at the very first start.
        cert, key = self_signed(private_dir(config.data_path) / "tls", [config.host])
        config.tls_cert, config.tls_key = str(cert), str(key)
    return config


def run_up(args: argparse.Namespace) -> int:
    from titan import envfile
    from titan.master.embedded import run_up as start_up

    envfile.load()  # provider keys in the project's .env reach the local worker's jobs
    # The local worker's settings too, before the master starts: a bad one stopped the worker
    # after the banner had said all was ready, and no line said which .env set it.
    worker_settings.check_environment()
    return int(start_up(_master_config(args), slots=args.slots,
                      capabilities=_capabilities(args.capabilities),
                      sandbox=_sandbox(args)) or 0)


def run_master(args: argparse.Namespace) -> int:
    from titan.master.server import run_master as start_master

    config = _master_config(args)
    config.standby = args.standby
    if getattr(args, "advertise_url", None):
        config.advertise_url = args.advertise_url
    return int(start_master(config) or 0)


def run_worker(args: argparse.Namespace) -> int:
    from titan import envfile
    from titan.client.config import resolve
    from titan.worker import lifeline

    if lifeline.ENV not in os.environ:
        # Provider keys in the project's .env reach the jobs (docs/llm.md). Not for `titan
        # up`'s own worker (handed a lifeline): it has them from `titan up`, which read the
        # same file and said what was wrong with it (each warning was said twice).
        envfile.load()
    sandbox = _sandbox(args)
    run_as = _run_as(args)
    worker_settings.check_environment()

    # Looked up by name: the worker package may be importable before run_worker exists.
    start_worker = importlib.import_module("titan.worker").run_worker
    endpoint = resolve(host=None if args.master else args.host, port=args.port,
                       token=args.token, urls=args.master)
    if not endpoint.token:
        # The environment or the user config first: --token sits in /proc/<pid>/cmdline, which
        # every local user reads (docs/security.md).
        print(f"error: no token for {endpoint.url}: set TITAN_TOKEN to a worker token, "
              "or record it for this master in ~/.titan/config.json "
              f'({{"masters": {{"{endpoint.url}": {{"token": "..."}}}}}}); an admin makes one '
              "with `titan token create --role worker`, and `titan up` writes one to "
              "worker.token in its data dir. (--token works too, but every local user can read "
              "it in the process list.)", file=sys.stderr)
        return 2
    if args.token is not None:
        print("warning: the token given with --token is readable by every user "
              "of this machine (ps, /proc/<pid>/cmdline) while the worker runs; set "
              "TITAN_TOKEN instead", file=sys.stderr)
    return int(start_worker(
        list(endpoint.urls), endpoint.token,
        _capabilities(args.capabilities) if args.capabilities is not None else [], args.slots,
        args.workdir, burst=args.burst, name=args.name, sandbox=sandbox,
        run_as=run_as, transport=worker_settings.transport(args.transport), executor=args.executor,
        ray_address=args.ray_address,
    ) or 0)
