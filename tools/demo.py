"""`make demo` and `make demo-stop`: the research agent on an embedded cluster, local model.

    python tools/demo.py run ["query"] [--max-iter N]   start (or reuse) the cluster, run the agent
    python tools/demo.py stop                           stop the cluster

The cluster is a `titan up` in the background with its state in ``./.titan`` (so
``.venv/bin/titan status`` from this directory finds it), on ports 9090/5000 when they are
free and on free ports otherwise. It keeps running after the demo, so the dashboard and the
CLI can look at what the agent did; a second `make demo` reuses it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from titan.client import TitanClient
from titan.errors import TitanError
from titan.permissions import private_dir

ROOT = Path(__file__).resolve().parents[1]
# Overridable so the demo's own test never touches a developer's ./.titan.
DATA = Path(os.environ.get("TITAN_DEMO_DIR") or ROOT / ".titan")
PID_FILE = DATA / "demo.pid"
LOG_FILE = DATA / "demo-up.log"
AGENT = ROOT / "examples" / "research_agent" / "research_agent.py"
TITAN = [sys.executable, "-m", "titan"]


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else a free port."""
    with socket.socket() as s:
        # As the master binds: a port left in TIME_WAIT by the last run is free to use.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running() -> dict[str, object] | None:
    """The demo cluster's master.json if its `titan up` is alive and answering."""
    try:
        pid = int(PID_FILE.read_text().strip())
        info = json.loads((DATA / "master.json").read_text())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    try:
        with urllib.request.urlopen(f"{info['url']}/api/v1/health", timeout=2) as r:
            return dict(info, pid=pid) if r.status == 200 else None
    except (OSError, ValueError):
        return None


def _answering() -> dict[str, object] | None:
    """The master.json of whatever master answers on the demo's data dir (started by hand
    with `titan up`), else None."""
    try:
        info = json.loads((DATA / "master.json").read_text())
        with urllib.request.urlopen(f"{info['url']}/api/v1/health", timeout=2) as r:
            return dict(info) if r.status == 200 else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _recorded_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _wait_up(proc: subprocess.Popen[bytes] | None, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"[demo] `titan up` exited with code {proc.returncode}:\n"
                             f"{_tail(LOG_FILE)}\n[demo] full log: {LOG_FILE}")
        info = _running()
        if info is not None and _workers(info):
            return info
        time.sleep(0.2)
    raise SystemExit(f"[demo] the cluster did not come up within {timeout:.0f} s:\n"
                     f"{_tail(LOG_FILE)}\n[demo] stop it with `make demo-stop` and try again")


def start() -> dict[str, object]:
    info = _running()
    if info is not None:
        say(f"reusing the cluster already running at {info['url']} (pid {info['pid']})")
        return info
    pid = _recorded_pid()
    if pid is not None:  # started but not answering yet (or stuck): never start a second one
        say(f"waiting for the demo cluster already started (pid {pid}) ...")
        return _wait_up(None)
    info = _answering()
    if info is not None:
        # A `titan up` the user started on the same ./.titan (as the README suggests): its
        # master.json was deleted below, and the demo failed against its lock.
        deadline = time.monotonic() + 30  # a `titan up` just started: its worker comes
        while not _workers(info):
            if time.monotonic() > deadline:
                raise SystemExit(f"[demo] a Titan master already runs on {DATA} at "
                                 f"{info['url']} with no live worker: start one, or stop "
                                 "that master first")
            time.sleep(0.2)
        say(f"reusing the Titan master already running on {DATA} at {info['url']}")
        return dict(info, by_hand=True)
    # Private from the start, as `titan up` keeps it: made with the umask's modes, the log
    # was open to other users until the master tightened it (and warned to rotate tokens).
    private_dir(DATA)
    try:  # the ports of the last run, so the links printed before still work
        last = json.loads((DATA / "master.json").read_text())
    except (OSError, ValueError):
        last = {}
    port = _port(int(last.get("port") or 9090))
    dashboard = _port(int(last.get("dashboard_port") or 5000))
    (DATA / "master.json").unlink(missing_ok=True)  # the new master writes its own
    say(f"starting `titan up` on 127.0.0.1:{port} (dashboard :{dashboard}), state in {DATA}")
    with open(os.open(LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as log:
        proc = subprocess.Popen(
            [*TITAN, "up", "--port", str(port), "--dashboard-port", str(dashboard),
             "--data-dir", str(DATA)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    with open(os.open(PID_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as pid:
        pid.write(f"{proc.pid}\n")
    info = _wait_up(proc)
    say(f"cluster up: master {info['url']}, local worker live")
    return info


def _keeps_running(info: dict[str, object]) -> str:
    """How to stop the cluster the demo ran on: `make demo-stop` stops only the `titan up` the
    demo started (its demo.pid); one the user started by hand is theirs to stop."""
    if info.get("by_hand"):
        return ("The cluster keeps running: it is the `titan up` you started on "
                f"{DATA}; stop it where it runs (Ctrl-C)")
    return "The cluster keeps running. Stop it with: make demo-stop"


def _token() -> str:
    return (DATA / "admin.token").read_text().strip()


def _client(info: dict[str, object]) -> TitanClient:
    return TitanClient(host=str(info["url"]), token=_token())


def _workers(info: dict[str, object]) -> int:
    try:
        with _client(info) as client:
            return sum(1 for w in client.list_workers() if w.get("state") == "live")
    except TitanError:
        return 0


def run(query: str | None, max_iter: int) -> int:
    info = start()
    env = dict(os.environ, TITAN_URL=str(info["url"]), TITAN_TOKEN=_token(),
               PYTHONUNBUFFERED="1")
    # The agent takes its settings on its command line, recorded with the run: the model
    # the demo was started with goes there rather than through the agent's environment.
    model = os.environ.get("TITAN_LLM_MODEL")
    # Its run named here: other agents may run on this cluster (a second `make demo`, the
    # user's own), and the newest run on it need not be this one.
    run_id = f"RESEARCH_{secrets.token_hex(3)}"
    args = [sys.executable, str(AGENT), *([query] if query else []), "--max-iter", str(max_iter),
            "--run-id", run_id, *(["--model", model] if model else [])]
    say("running the research agent (local model, no API keys): " + " ".join(args[1:]))
    code = subprocess.call(args, cwd=ROOT, env=env)
    dashboard = (f"http://127.0.0.1:{info.get('dashboard_port') or info['port']}/login?"
                 + urllib.parse.urlencode({"token": _token(), "next": "/agents"}))
    print()
    if code == 0:
        with _client(info) as client:
            ours = client.agent_run(run_id)
            report = client.store_get(f"research:{run_id}:report_path")
        say(f"Report     {report}")
        say(f"Agent run  {run_id}: " + " → ".join(
            f"{s['label']} {s['status']}" for s in ours.get("stages", [])))
    elif _running() is not None:
        say(f"the research agent failed (exit code {code}); the cluster keeps running "
            "so you can look at what happened:")
        say(f"  .venv/bin/titan status        # recent DAGs and their states ({run_id})")
    else:
        say(f"the research agent failed (exit code {code}) and the cluster is no longer "
            f"running: its log is {LOG_FILE}; `make demo` starts it again")
        return code
    say(f"Dashboard  {dashboard}")
    say("           (opens Agent Runs, signed in: the link carries the admin token)")
    say(f"CLI        .venv/bin/titan status   (state in {DATA}/)")
    say(_keeps_running(info))
    return code


def stop() -> int:
    """Stop the `titan up` that `make demo` started, as `titan down` does (titan/cli/down.py):
    only once it is shown to be that master, so a pid reused since by another program is
    never signalled (the pid file's pid was killed, group and all, unchecked)."""
    from titan.cli.down import find
    from titan.cli.down import stop as stop_masters

    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        info = _answering()
        if info is not None:  # a `titan up` the user started on ./.titan: not ours to stop
            say(f"the Titan master at {info['url']} on {DATA} was not started by `make demo`:"
                f" stop it where it runs (Ctrl-C), or with `titan down --data-dir {DATA}`; "
                "nothing stopped")
        else:
            say("no demo cluster is recorded here; nothing to stop")
        return 0
    try:
        ours = DATA.is_dir() and any(m.pid == pid for m in find(DATA).masters)
    except TitanError as exc:
        say(f"not stopped: {exc}")
        return 1
    if not ours:
        say(f"the demo cluster (pid {pid}) is not running")
        PID_FILE.unlink(missing_ok=True)
        return 0
    # SIGTERM drains the local worker, as Ctrl-C does; killed after 30 s.
    code = stop_masters(DATA, 30.0, force=True, tell=say)
    PID_FILE.unlink(missing_ok=True)
    if code == 0:
        say("stopped (state kept in .titan/; `make demo` starts it again)")
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start (or reuse) the cluster and run the research agent")
    r.add_argument("query", nargs="?", default=None)
    r.add_argument("--max-iter", type=int, default=2)
    sub.add_parser("start", help="start (or reuse) the cluster only")
    sub.add_parser("stop", help="stop the cluster")
    args = p.parse_args(argv)
    if args.command == "run":
        return run(args.query, args.max_iter)
    if args.command == "start":
        say(_keeps_running(start()))
        return 0
    return stop()


if __name__ == "__main__":
    sys.exit(main())
