"""Opt-in isolation of jobs from the worker's credentials and the master's files.

Two independent layers, both applied in a job's own process between fork and its code
(the zygote's child, or a subprocess's pre-exec), both decided once per worker:

* ``--sandbox``: a Landlock ruleset (:mod:`titan.worker.landlock`) that lets a job read the
  system and Python directories, write its workspace (``shared/``, ``tmp/``) and its own
  ``/proc/<pid>``, and reach nothing else: not the master's data dir, not ``~/.titan``, not
  other users' homes, not another process's ``/proc/<pid>/environ``. No root needed.
* ``--run-as USER`` (worker running as root): the job drops to USER's uid, gid and groups,
  so ordinary Unix permissions keep it from the data dir (0700) and the worker's files. Its
  jobs then share a uid, so each also enters a Landlock domain of its own
  (:func:`titan.worker.landlock.separate`): no job reads another's ``/proc/<pid>/environ``
  or memory, where a job the worker started by exec keeps its job token.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titan import errors

log = logging.getLogger("titan.worker")

#: Read + execute for every job under --sandbox: the system and the interpreter.
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
#: What of /etc a job may read: what the C library, Python's standard library, OpenSSL and
#: locales look up. Not /etc itself: it is where a service's environment file (with a worker
#: token) or a database password tends to live — nor /etc/default (Debian's home for those
#: files: /etc/default/titan-worker) or pip.conf (an index URL with its password).
#: TITAN_SANDBOX_READ adds paths.
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "ssl",
               "pki", "ca-certificates", "ca-certificates.conf", "resolv.conf", "hosts",
               "nsswitch.conf", "gai.conf", "host.conf", "services", "protocols", "passwd",
               "group", "mime.types", "os-release", "lsb-release", "debian_version",
               "alternatives", "locale.alias", "locale.conf", "locale.gen",
               "fonts", "magic", "mailcap", "hostname", "machine-id", "shells", "crypto-policies",
               "python3", "matplotlibrc")
#: Read + write for every job under --sandbox: the devices programs expect, and GPUs. Not /dev
#: as a whole: a job could read the keystrokes of the terminals in /dev/pts (so no pseudo-
#: terminals for sandboxed jobs). The job's own /proc/<pid> is added in its child, never /proc
#: itself (see :mod:`titan.worker.landlock`); /dev/stdin and /dev/fd lead there.
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm",
           "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
           "/dev/dri", "/dev/kfd")
#: GPU device files numbered per card.
DEVICE_GLOBS = ("nvidia[0-9]*",)
#: System-wide /proc files that say nothing about other processes (CPU count, memory, load).
PROC_FILES = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg", "/proc/uptime",
              "/proc/version", "/proc/filesystems", "/proc/sys/kernel", "/proc/sys/vm")


@dataclass(frozen=True)
class Isolation:
    """What the child of each job does to itself before the job's code runs."""

    #: Under --sandbox: what a job may read, and read and write (Landlock); None without.
    read: tuple[str, ...] | None = None
    write: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    #: Each job in a Landlock domain of its own, out of reach of the worker's other jobs
    #: (--run-as without --sandbox: a sandbox is a domain of its own already).
    separate: bool = False
    #: Variables every job's environment gets (TMPDIR inside the workspace; HOME of USER).
    env: dict[str, str] = field(default_factory=dict)
    _plan: Any = field(default=None, compare=False, repr=False)

    @property
    def active(self) -> bool:
        return self.read is not None or self.uid is not None

    @property
    def sandboxed(self) -> bool:
        return self.read is not None

    @property
    def in_domain(self) -> bool:
        """Whether each job enters a Landlock domain (the sandbox, or one of its own)."""
        return self.read is not None or self.separate

    def to_json(self) -> dict[str, Any]:
        return {"read": None if self.read is None else list(self.read),
                "write": list(self.write), "uid": self.uid, "gid": self.gid,
                "groups": list(self.groups), "separate": self.separate}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Isolation:
        read = data.get("read")
        return cls(read=None if read is None else tuple(read), write=tuple(data.get("write") or ()),
                   uid=data.get("uid"), gid=data.get("gid"),
                   groups=tuple(data.get("groups") or ()),
                   separate=bool(data.get("separate")))

    def apply(self) -> None:
        """In the job's child, before its code: drop to the user, then enter the sandbox.
        Raises on failure: a job must never run less isolated than asked."""
        if self.uid is not None and self.gid is not None:
            os.setgroups(list(self.groups))
            os.setgid(self.gid)
            os.setuid(self.uid)
        self.restrict_only()

    def warm(self) -> None:
        """Plan the sandbox's rules now, in the process that forks the jobs (the zygote, the
        worker), so each child only makes the syscalls: planning and importing ctypes in
        every child cost ~4 ms a job."""
        if self.separate:
            from titan.worker import landlock  # loaded before any fork

            landlock.separate_scopes()  # asked once: the children inherit the answer
        if self.read is not None and self._plan is None:
            from titan.worker import landlock

            object.__setattr__(self, "_plan", landlock.plan(
                [Path(p) for p in (*self.read, *PROC_FILES)], [Path(p) for p in self.write]))

    def restrict_only(self) -> None:
        """The sandbox half, also the pre-exec hook of subprocesses (Popen drops the user
        itself, in C). Run in the job's own process: it names its own /proc/<pid>."""
        if self.read is not None:
            from titan.worker import landlock

            self.warm()
            assert self._plan is not None
            landlock.enter(self._plan, [f"/proc/{os.getpid()}".encode()])
        elif self.separate:
            from titan.worker import landlock

            landlock.separate()


def _resolve(path: str | os.PathLike[str]) -> Path | None:
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError):
        return None


def protected_paths(extra: Iterable[Path] = ()) -> list[Path]:
    """Paths no sandboxed job may reach: the user config dir, the master's data dir (named
    by ``TITAN_DATA_DIR``, as `titan up` does for its worker), ``./.titan``."""
    from titan.client.config import config_dir

    found = [config_dir(), Path.cwd() / ".titan", *extra]
    if os.environ.get("TITAN_DATA_DIR"):
        found.append(Path(os.environ["TITAN_DATA_DIR"]))
    return [p for p in (_resolve(x) for x in found) if p is not None]


def _overlaps(path: Path, protected: list[Path]) -> Path | None:
    for secret in protected:
        if path == secret or path in secret.parents or secret in path.parents:
            return secret
    return None


def sandbox_rules(workspace_root: Path, protected: list[Path]) -> tuple[list[Path], list[Path]]:
    """(read, write) path lists of the sandbox; nothing that is, holds or lies inside a
    protected path (e.g. a project dir on ``sys.path`` that holds ``.titan/``)."""
    # sys.path holds the interpreter's and the installed packages' directories (editable
    # installs included), which jobs import from; not the worker's working directory, which
    # `python -m` puts first and which may hold anything (a data dir, a .env).
    cwd = _resolve(os.getcwd())
    extra = [p.strip() for p in os.environ.get("TITAN_SANDBOX_READ", "").split(",") if p.strip()]
    candidates = [*SYSTEM_DIRS, *(f"/etc/{name}" for name in ETC_ENTRIES), sys.prefix,
                  sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.realpath(sys.executable)),
                  *(p for p in sys.path if p and _resolve(p) != cwd), *extra]
    read: list[Path] = []
    asked = set(extra)
    for raw in candidates:
        path = _resolve(raw)
        if path is None or not path.exists():
            if raw in asked:  # the operator's own: a typo would leave jobs failing unsaid
                log.warning("--sandbox: TITAN_SANDBOX_READ names %s, which does not exist: "
                            "sandboxed jobs cannot read it (fix the path, or create it before "
                            "the worker starts)", raw)
            continue
        if path in read:
            continue
        secret = _overlaps(path, protected)
        if secret is not None:
            (log.warning if raw in asked else log.info)(
                "sandbox: not allowing %s%s (it overlaps %s, which jobs must not read)", path,
                " from TITAN_SANDBOX_READ" if raw in asked else "", secret)
            continue
        read.append(path)
    ca = job_ca_file()
    if ca is not None:
        # Passed on to every job, whose SDK opens it to verify the master: outside the rules,
        # TitanClient() died in every job with a PermissionError.
        secret = _overlaps(ca, protected)
        if secret is None:
            read.append(ca)
        else:
            log.warning("--sandbox: TITAN_CA_FILE=%s lies in %s, which sandboxed jobs may not "
                        "read: a job's SDK cannot verify the master with it. Copy it out of "
                        "there (e.g. under /etc/ssl/), or pin the master's certificate with "
                        "TITAN_TLS_FINGERPRINT instead", ca, secret)
    write = [workspace_root / "shared", workspace_root / "tmp",
             *(Path(d) for d in DEVICES),
             *(p for pattern in DEVICE_GLOBS for p in Path("/dev").glob(pattern))]
    read.append(workspace_root / "projects")
    for path in write:
        secret = _overlaps(path.resolve(), protected)
        if secret is not None:
            raise errors.ConfigError(
                f"--sandbox: the job workspace {path} overlaps {secret}, which jobs must not "
                "reach; choose another --workdir")
    return read, write


def job_ca_file() -> Path | None:
    """The CA file the worker passes on to its jobs (``TITAN_CA_FILE``), resolved, when
    their SDK will open it: None when none is set, none is there, or a pin wins over it."""
    from titan.client.tls import CA_FILE_ENV, FINGERPRINT_ENV

    raw = os.environ.get(CA_FILE_ENV, "").strip()
    if not raw or os.environ.get(FINGERPRINT_ENV, "").strip():
        return None
    path = _resolve(raw)
    return path if path is not None and path.is_file() else None


def ca_file_unreadable(user: str, uid: int, groups: tuple[int, ...]) -> str | None:
    """What to say at start when ``user`` (``--run-as``) cannot read the CA file its jobs
    are handed; None when it can, or none is handed."""
    ca = job_ca_file()
    blocked = None if ca is None else _reachable(ca, uid, groups)
    if ca is None or blocked is None:
        return None
    return (f"--run-as {user}: {user} cannot read TITAN_CA_FILE={ca} ({blocked} is mode "
            f"{stat.S_IMODE(blocked.stat().st_mode):04o}), which jobs are handed to verify "
            f"the master: every job that uses the SDK will fail. Put a copy where {user} may "
            "read it, or pin the master's certificate with TITAN_TLS_FINGERPRINT instead")


def _reachable(path: Path, uid: int, groups: tuple[int, ...]) -> Path | None:
    """The first directory on the way to ``path`` (itself included, which must also be
    readable; a file only readable) that ``uid`` may not traverse."""
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if directory != path:
            want = stat.S_IXOTH
        else:
            want = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)
        if st.st_uid == uid:
            shift = 6
        elif st.st_gid in groups:
            shift = 3
        else:
            shift = 0
        if (st.st_mode >> shift) & want != want:
            return directory
    return None


def _group_members(gid: int) -> set[str]:
    """The users in group ``gid``: its listed members and those whose primary group it is."""
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        members = set()
    return members | {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid}


def _python_dirs() -> list[Path]:
    """The standard library and the directory Titan is imported from."""
    import titan

    found = [Path(os.__file__).resolve().parent, Path(titan.__file__).resolve().parent.parent]
    return list(dict.fromkeys(found))


def _run_as(user: str, workspace_root: Path) -> Isolation:
    if os.geteuid() != 0:
        raise errors.ConfigError(
            f"--run-as {user} needs the worker to run as root (it runs as uid {os.geteuid()})")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise errors.ConfigError(f"--run-as: no such user {user!r}") from None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    # Jobs must reach shared/ and tmp/; other local users must not read every job's scripts,
    # archives and outputs (0755 let them): the workspace is root's and USER's group's.
    os.chown(workspace_root, 0, entry.pw_gid)
    workspace_root.chmod(0o750)
    others = _group_members(entry.pw_gid) - {entry.pw_name}
    if others:
        log.warning("--run-as %s: the workspace %s is readable by %s's group, which %s share "
                    "too: give %s a group of its own", user, workspace_root, user,
                    ", ".join(sorted(others)[:5]) + ("…" if len(others) > 5 else ""), user)
    blocked = _reachable(workspace_root, entry.pw_uid, groups)
    if blocked is not None:
        raise errors.ConfigError(
            f"--run-as {user}: {user} cannot reach the workspace {workspace_root} "
            f"({blocked} is mode {stat.S_IMODE(blocked.stat().st_mode):04o}); choose a "
            "--workdir under a directory it may enter")
    # Its jobs import from the interpreter's library and from Titan (the zygote preloads
    # some, not all): a user who cannot read them would see jobs fail on their first import.
    for needed in _python_dirs():
        blocked = _reachable(needed, entry.pw_uid, groups)
        if blocked is not None:
            raise errors.ConfigError(
                f"--run-as {user}: {user} cannot read the Python installation {needed} "
                f"({blocked} is mode {stat.S_IMODE(blocked.stat().st_mode):04o}); install "
                f"Python and Titan where {user} may read them (e.g. a venv under /opt)")
    unreadable = ca_file_unreadable(user, entry.pw_uid, groups)
    if unreadable is not None:  # said, not refused: jobs that do not call the master still run
        log.warning("%s", unreadable)
    # Jobs write their shared directory and their tmp; scripts and archives stay root's.
    for name in ("shared", "tmp"):
        os.chown(workspace_root / name, entry.pw_uid, entry.pw_gid)
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    log.info("jobs run as %s (uid %d, group %s)", user, entry.pw_uid, group)
    from titan.worker import landlock

    abi = landlock.abi_version()
    gaps = unprotected_between_jobs(user, abi)
    if gaps is not None:
        # Said, not refused: --run-as worked on such kernels before, and still keeps jobs
        # from the worker's and the master's files.
        log.warning("%s", gaps)
    separate = abi >= 1
    from titan.worker import shared_imports

    # First on the path of every interpreter a job starts itself: its sitecustomize keeps
    # that interpreter from importing what another job left in the shared folder it starts
    # in (python -c / -m put that folder first), as a plain script's import path does.
    path = os.pathsep.join(filter(None, [shared_imports.site_dir(),
                                         os.environ.get("PYTHONPATH")]))
    return Isolation(uid=entry.pw_uid, gid=entry.pw_gid, groups=groups, separate=separate,
                     env={"HOME": entry.pw_dir, "USER": entry.pw_name,
                          "LOGNAME": entry.pw_name, "PYTHONPATH": path})


def unprotected_between_jobs(user: str, abi: int) -> str | None:
    """What a ``--run-as`` worker on a kernel of Landlock ABI ``abi`` (0: none) cannot keep
    its jobs, all of one uid, from doing to each other; None when nothing it knows of."""
    if abi < 1:
        return (f"--run-as {user}: this kernel has no Landlock, so the worker cannot keep its "
                "jobs from each other: a job can read the job token of any other job this "
                "worker starts by exec (runner=\"subprocess\", shell scripts, binaries) from "
                "its /proc/<pid>/environ, and signal (kill) any other job. Run one job at a "
                "time (--slots 1) or use a kernel with Landlock (5.13+; 6.12+ for signals)")
    if abi < 6:
        return (f"--run-as {user}: this kernel's Landlock (ABI {abi}) has no signal scope, so "
                "a job can signal (kill) any other job of this worker; their /proc entries "
                "and tokens are kept from it. Use Linux 6.12+ (Landlock ABI 6) to stop that, or "
                "run one job at a time (--slots 1)")
    return None


def prepare(workspace_root: Path, *, sandbox: bool = False,
            run_as: str | None = None) -> Isolation:
    """The isolation every job of this worker gets; raises ConfigError when it cannot be
    had (never a silent downgrade)."""
    tmp = workspace_root / "tmp"
    tmp.mkdir(mode=0o700, exist_ok=True)
    iso = _run_as(run_as, workspace_root) if run_as else Isolation()
    if not sandbox:
        if os.environ.get("TITAN_SANDBOX_READ", "").strip():
            # Set to widen a sandbox this worker does not have: an operator who meant to
            # confine jobs would otherwise believe they were.
            log.warning("TITAN_SANDBOX_READ is set but this worker does not sandbox its jobs "
                        "(start it with --sandbox): it changes nothing, and jobs read whatever "
                        "the worker's user can")
        return iso
    from titan.worker import landlock

    read, write = sandbox_rules(workspace_root, protected_paths())
    # Built once here only to fail now, with the reason, if the kernel cannot do it.
    os.close(landlock.build_ruleset(landlock.plan(read, write)))
    log.info("jobs run in a Landlock sandbox (ABI %d): read %s; write %s",
             landlock.abi_version(), ", ".join(map(str, read)), ", ".join(map(str, write)))
    return Isolation(read=tuple(map(str, read)), write=tuple(map(str, write)), uid=iso.uid,
                     gid=iso.gid, groups=iso.groups, env={**iso.env, "TMPDIR": str(tmp)})
