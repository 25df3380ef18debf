"""Landlock, the Linux filesystem sandbox an unprivileged process can put itself in.

A *ruleset* lists the directories a process may still reach (and how: read, write,
execute); once a process restricts itself with it, every path outside is refused with
EACCES, for it and all its descendants, with no way back. Landlock also stops a sandboxed
process from ptrace-ing a process outside its sandbox (the worker, the zygote, the master),
and from ABI 6 (Linux 6.12) it is *scoped*: a sandboxed process can neither signal a process
outside its sandbox (``kill -9`` the master, another job) nor connect to an abstract Unix
socket made outside it.

The rules are planned once per worker (:func:`plan`: which paths, with which rights); each
job's child builds its ruleset from the plan between fork and the job's code (:func:`enter`,
three syscalls per rule), naming the child's own ``/proc/<pid>``, which no ruleset built in
advance could. (Landlock's ptrace rule refuses ``/proc/<pid>/mem`` of a
process outside the sandbox, but on the kernels we tried not ``/proc/<pid>/environ``: the
sandbox must not list ``/proc`` itself, or a job reads the worker's token from its
environment.)
Bindings through ctypes, with the x86-64/arm64 generic syscall numbers (444-446).
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from titan import errors

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
_ABI1_ALL = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
#: ABI 6 scopes: no signals to, and no abstract Unix sockets of, processes outside.
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1
#: Rights that apply to a file (the others only make sense beneath a directory).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

READ = EXECUTE | READ_FILE | READ_DIR
#: The one right a domain of its own (:func:`separate`) handles: making block devices, which
#: only CAP_MKNOD may do anyway, so it takes nothing from a job.
MAKE_BLOCK = 1 << 11

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl


class Unavailable(errors.ConfigError):
    """The kernel offers no Landlock (too old, or disabled at boot)."""


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when it has none."""
    version = _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(version))


def handled_rights(abi: int) -> int:
    """Every filesystem right this ABI can restrict: unlisted paths get none of them."""
    rights = _ABI1_ALL
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


#: What :func:`enter` needs, worked out once in the parent: (handled rights, [(path, rights)],
#: scopes).
Plan = tuple[int, list[tuple[bytes, int]], int]


def scopes(abi: int) -> int:
    """The scopes this ABI can restrict (none before ABI 6)."""
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def plan(read: Iterable[Path], write: Iterable[Path]) -> Plan:
    """The rules allowing ``read`` (read + execute) and ``write`` (everything) beneath those
    paths, nothing else; missing paths are skipped. The stat calls happen here, once, so a
    job's child only makes the syscalls. Raises :class:`Unavailable`."""
    abi = abi_version()
    if abi < 1:
        raise Unavailable(
            "the Landlock filesystem sandbox is not available on this kernel (Linux 5.13+ "
            "with 'landlock' in the lsm= boot list); run without --sandbox, or use --run-as")
    handled = handled_rights(abi)
    rules: list[tuple[bytes, int]] = []
    for paths, rights in ((read, READ), (write, handled)):
        for path in paths:
            if not path.exists():
                continue
            allowed = rights & handled
            if not path.is_dir():
                allowed &= _FILE_RIGHTS
            rules.append((os.fsencode(path), allowed))
    return handled, rules, scopes(abi)


def build_ruleset(planned: Plan) -> int:
    """A ruleset fd holding the planned rules."""
    handled, rules, scoped = planned
    # struct landlock_ruleset_attr: handled_access_fs, handled_access_net (ABI 4), scoped
    # (ABI 6); the shortest form the kernel accepts for what is asked.
    attr = struct.pack("=QQQ", handled, 0, scoped) if scoped else struct.pack("=Q", handled)
    fd = _syscall(_SYS_CREATE_RULESET, ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)),
                  ctypes.c_uint32(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise Unavailable(f"cannot create a Landlock ruleset: {os.strerror(err)}")
    try:
        for path, rights in rules:
            _add_path(int(fd), path, rights)
    except BaseException:
        os.close(int(fd))
        raise
    return int(fd)


def _add_path(ruleset: int, path: bytes, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        rule = struct.pack("=Qi", rights, fd)
        if _syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                    ctypes.c_char_p(rule), ctypes.c_uint32(0)) < 0:
            err = ctypes.get_errno()
            raise errors.ConfigError(
                f"Landlock refused a rule for {os.fsdecode(path)}: {os.strerror(err)}")
    finally:
        os.close(fd)


def enter(planned: Plan, own: Iterable[bytes] = ()) -> None:
    """Put the calling (single-threaded) process in the planned sandbox for good, with full
    rights beneath the directories ``own`` too (a job's own /proc/<pid>)."""
    handled, rules, scoped = planned
    fd = build_ruleset((handled, [*rules, *((path, handled) for path in own)], scoped))
    try:
        restrict_self(fd)
    finally:
        os.close(fd)


@functools.cache
def separate_scopes() -> int:
    """The scopes of :func:`separate`'s domain: signals from ABI 6 on (Linux 6.12), none
    before. Asked of the kernel once, in the process that forks the jobs (its children
    inherit the answer)."""
    return SCOPE_SIGNAL if abi_version() >= 6 else 0


def separate() -> None:
    """Put the calling (single-threaded) process in a Landlock domain of its own that
    restricts no path it could otherwise use (:data:`MAKE_BLOCK` alone).

    What it is for is Landlock's ptrace rule: a process in a domain may read the
    ``/proc/<pid>/environ``, ``mem``, ``fd`` of, and ``ptrace``, only processes in its own
    domain or one nested in it. Jobs of a ``--run-as`` worker all run as one uid, so without
    it a job read the job token of any other job the worker had started by exec (a fresh
    interpreter, a shell script: dumpable, their token in their environment).

    From ABI 6 the domain is also scoped for signals (:func:`separate_scopes`): the same uid
    let a job ``kill -9`` any other job. The scope binds only what is inside: the worker and
    the zygote, in no domain, still signal a job (cancel, timeout, stop), and a job its own
    children (in its domain). Not abstract Unix sockets: jobs that talk to each other over
    one (NCCL, a local broker started by another job) would stop working, for nothing
    the token needs."""
    fd = build_ruleset((MAKE_BLOCK, [], separate_scopes()))
    try:
        restrict_self(fd)
    finally:
        os.close(fd)


def restrict_self(ruleset: int) -> None:
    """Put the calling (single-threaded) process in the sandbox, for good.

    ``no_new_privs`` first: Landlock demands it of an unprivileged caller, and it keeps a
    set-uid binary from shedding the sandbox's spirit by gaining privileges.
    """
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_restrict_self failed: {os.strerror(err)}")
