"""``titan down``: stop the ``titan up`` (or ``titan master``) of a data dir running elsewhere,
in the background or another terminal, as Ctrl-C where it runs would.

It is found by the pid its SQLite lock file names (``<data-dir>/titan.db.lock``), and,
for one started with ``--database-url``, by the command line of this user's Titan masters. A
pid is signalled only once it is shown to be that master: it holds the lock file open, or its
command line is ``titan up``/``titan master`` with this very data dir. A lock file whose pid
has exited, or was reused by an unrelated process, is said and left alone; another user's
master is refused. Linux ``/proc`` only (where ``titan up`` runs).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from titan.cli.options import seconds
from titan.errors import ConfigError

#: The lock ``titan up`` on the data dir's default SQLite database holds (storage/dialects.py).
LOCK_FILE = "titan.db.lock"
#: How often the wait says it still waits, in seconds.
PROGRESS_EVERY = 5.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="./.titan",
                   help="the data dir of the `titan up` to stop (default ./.titan)")
    p.add_argument("--timeout", type=seconds(7 * 86400), default=60.0, metavar="SECONDS",
                   help="how long to wait for it to drain and exit (default 60); then say "
                        "what still runs and exit 1")
    p.add_argument("--force", action="store_true",
                   help="after --timeout, SIGKILL it and every process it started (its "
                        "worker, zygotes and jobs) instead of giving up")


@dataclass
class Proc:
    """A process as seen once: its pid, start time (a pid reused later is another one)."""
    pid: int
    start: str
    argv: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``titan up``, ``titan worker``, ``titan zygote``..., else its command line,
        shortened, any control character in it (a job names its own processes) shown as
        ``?``."""
        for i, arg in enumerate(self.argv):
            following = self.argv[i + 1] if i + 1 < len(self.argv) else ""
            if os.path.basename(arg) == "titan" and following:
                said = f"titan {following}"
                break
            if arg == "-m" and following.startswith("titan."):  # -m titan.worker.zygote
                said = f"titan {following.rsplit('.', 1)[1]}"
                break
        else:
            said = " ".join(self.argv)[:60] or "?"
        return "".join(c if c.isprintable() else "?" for c in said)


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of ``pid``, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], fields[19]


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _proc(pid: int) -> Proc | None:
    st = _stat(pid)
    if st is None or st[1] == "Z":  # a zombie has exited; only its parent's wait is left
        return None
    return Proc(pid, st[2], _argv(pid))


def alive(proc: Proc) -> bool:
    """Whether ``proc`` still runs (not a zombie, not its pid reused since)."""
    st = _stat(proc.pid)
    return st is not None and st[1] != "Z" and st[2] == proc.start


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _master_data_dir(pid: int, argv: list[str]) -> Path | None:
    """The data dir of a ``titan up``/``titan master`` command line, resolved from its working
    directory; None for any other command (``titan worker``, a ``sleep``)."""
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "titan":
            if argv[i + 1:i + 2] not in (["up"], ["master"]):
                return None
            rest = argv[i + 2:]
            break
    else:
        return None
    given = "./.titan"
    for j, arg in enumerate(rest):
        if arg == "--data-dir" and j + 1 < len(rest):
            given = rest[j + 1]
        elif arg.startswith("--data-dir="):
            given = arg.split("=", 1)[1]
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    return Path(os.path.realpath(os.path.join(cwd, given)))


def _holds(pid: int, path: Path) -> bool:
    """Whether ``pid`` has ``path`` open (the master keeps its lock file open while it runs)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def _lock_pid(lock: Path) -> int | None:
    try:
        text = lock.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _user(uid: int | None) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name if uid is not None else "?"
    except KeyError:
        return str(uid)


@dataclass
class Found:
    """What a data dir's search found: the masters to stop and what was left alone, said."""
    masters: list[Proc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find(data_dir: Path) -> Found:
    """The Titan masters running on ``data_dir``; a stale lock or another user's master is a
    note (another user's raises :class:`ConfigError`), never a master to signal."""
    found = Found()
    me = os.geteuid()
    lock = data_dir / LOCK_FILE
    owner = data_dir.stat().st_uid
    if owner != me and not os.access(data_dir, os.R_OK | os.X_OK):
        raise ConfigError(f"{data_dir} belongs to user {_user(owner)}, and only they can look "
                          "inside: run `titan down` as that user")
    pid = _lock_pid(lock)
    if pid is not None and pid != os.getpid():
        proc = _proc(pid)
        if proc is None:
            found.notes.append(f"its lock file {lock} names pid {pid}, which has exited")
        elif _owner(pid) != me and _master_data_dir(pid, proc.argv) in (data_dir, None) \
                and proc.name in ("titan up", "titan master"):
            raise ConfigError(
                f"the {proc.name} on {data_dir} (pid {pid}) belongs to user "
                f"{_user(_owner(pid))}: not stopping another user's master; run `titan down` "
                "as that user")
        elif _holds(pid, lock) or _master_data_dir(pid, proc.argv) == data_dir:
            found.masters.append(proc)
        else:
            found.notes.append(
                f"its lock file {lock} names pid {pid}, now another program "
                f"({proc.name!r}), not a Titan master: left alone")
    # A master on another database (--database-url) names no pid in the data dir's lock file.
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (os.getpid(), pid):
            continue
        argv = _argv(int(entry))
        if not any(os.path.basename(a) == "titan" for a in argv):
            continue
        if _master_data_dir(int(entry), argv) != data_dir:
            continue
        uid = _owner(int(entry))
        proc = _proc(int(entry))
        if proc is None:
            continue
        if uid != me:
            raise ConfigError(
                f"the {proc.name} on {data_dir} (pid {proc.pid}) belongs to user "
                f"{_user(uid)}: not stopping another user's master; run `titan down` as "
                "that user")
        found.masters.append(proc)
    return found


def descendants(pid: int) -> list[Proc]:
    """The processes ``pid`` started, and theirs (its worker, the zygotes, running jobs)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry))
    out: list[Proc] = []
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        proc = _proc(child)
        if proc is not None:
            out.append(proc)
        todo.extend(parents.get(child, []))
    return out


def _reaped(procs: list[Proc], within: float = 2.0) -> None:
    """Until the exited ``procs`` are reaped too, for at most ``within`` seconds: a zombie
    still answers ``kill -0``, and a script that checks right after us would think it runs
    (its parent, a shell that started it with ``&``, may never reap it: hence the bound)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(
            (st := _stat(p.pid)) is not None and st[2] == p.start for p in procs):
        time.sleep(0.05)


#: How many processes a line names before it counts the rest.
NAMED = 6


def _describe(procs: list[Proc]) -> str:
    said = ", ".join(f"{p.name} (pid {p.pid})" for p in procs[:NAMED])
    return said + (f" and {len(procs) - NAMED} more" if len(procs) > NAMED else "")


def stop(data_dir: Path, timeout: float, *, force: bool = False,
         tell: Callable[[str], None] = print) -> int:
    """Stop the master(s) on ``data_dir``: 0 when stopped or none ran, 1 when one still runs
    after ``timeout`` (killed instead with ``force``). ``tell`` says what happens."""
    shown = os.path.relpath(data_dir) if not str(os.path.relpath(data_dir)).startswith("..") \
        else str(data_dir)
    found = find(data_dir) if data_dir.is_dir() else Found()
    for note in found.notes:
        tell(f"{shown}: {note}")
    if not found.masters:
        tell(f"no Titan master is running on {shown}: nothing to stop")
        return 0
    tree: list[Proc] = []
    for master in found.masters:
        below = descendants(master.pid)
        tree += [master, *below]
        tell(f"stopping {master.name} (pid {master.pid}) on {shown}"
             + (f" and what it started: {_describe(below)}" if below else "")
             + ": draining (running jobs finish) ...")
        try:
            os.kill(master.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise ConfigError(f"not allowed to signal pid {master.pid}") from None
    began = time.monotonic()
    said = began
    while True:
        left = [p for p in tree if alive(p)]
        if not left:
            _reaped(tree)
            tell(f"stopped: {_describe(tree)}")
            return 0
        now = time.monotonic()
        if now - began >= timeout:
            break
        if now - said >= PROGRESS_EVERY:
            said = now
            tell(f"  waiting ({now - began:.0f} s of {timeout:g}): {_describe(left)} still "
                 "running")
        time.sleep(0.1)
    if not force:
        tell(f"still running after {timeout:g} s: {_describe(left)}; its jobs may still be "
             "finishing: wait longer (--timeout), or stop them now with `titan down --force`")
        return 1
    tell(f"still running after {timeout:g} s: {_describe(left)}; killing them (SIGKILL)")
    # Each process by its own pid, never a process group: `titan up &` in a script shares
    # the script's group, and killing that group would end the script too.
    for p in left:
        if alive(p):
            try:
                os.kill(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in left):
        time.sleep(0.1)
    left = [p for p in left if alive(p)]
    if left:
        tell(f"could not kill {_describe(left)}")
        return 1
    _reaped(tree)
    tell(f"killed: {_describe(tree)} (running jobs run again at the next `titan up`)")
    return 0


def run(args: argparse.Namespace) -> int:
    if sys.platform != "linux":  # pragma: no cover - /proc
        raise ConfigError("titan down needs Linux (/proc); stop `titan up` with Ctrl-C or kill")
    data_dir = Path(os.path.realpath(args.data_dir))
    return stop(data_dir, args.timeout, force=args.force)
