"""A master's data dir as a client finds it: ``$TITAN_DATA_DIR``, else the nearest
``./.titan/`` holding a ``master.json`` that this user alone owns; the address that file
records, the ``admin.token`` beside it, and why a data dir named holds no master. And the
rule that a master's data dir and a worker's workspace never nest, each checked at start.

What a master writes there is :mod:`titan.client.master_record`'s; which source of an address
comes first is :mod:`titan.client.config`'s.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from titan.client.urls import DEFAULT_PORT, make_url, parse_port, parse_url
from titan.errors import ConfigError

MASTER_FILE = "master.json"
#: What a standby master writes in its data dir until it leads: ``{"url", "leader"}`` (the
#: leader it knew when it started, or null): `titan token create` there says so.
STANDBY_FILE = "standby.json"
TOKEN_FILE = "admin.token"
LOCAL_DATA_DIR = ".titan"
#: Files a master writes in its data dir and nowhere else: a folder holding one is a data dir
#: (a master on PostgreSQL has no titan.db there, but its tokens all the same).
MASTER_MARKS = (TOKEN_FILE, "worker.token", MASTER_FILE, STANDBY_FILE)
#: The folder a worker makes in its ``--workdir``, where its jobs run (titan/worker/workspace.py).
WORKSPACE_DIR = "titan_workspace"


def read_json(path: Path) -> Any:
    """A Titan file's JSON (a data dir's, the user config), None when there is no file; one
    that cannot be read, or holds no JSON, a ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # was a traceback from every command, as admin.token's was
        raise ConfigError(f"{path} is not valid JSON (it is not UTF-8 text); fix or delete "
                          "the file") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid JSON ({exc}); fix or delete the file"
        ) from None


def read_token(path: Path) -> str | None:
    """The token a file holds (``admin.token``), None when there is no file or it is empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # was a traceback (a QA pass)
        raise ConfigError(f"{path} does not hold a token (it is not text): delete it and "
                          "restart its master to get a new one") from None
    return token or None


def no_master_in(directory: Path) -> str:
    """Why the data dir TITAN_DATA_DIR names finds no master: none ran there, or a standby
    runs there that has never led (it has no master.json and no admin.token: said as "no Titan
    master has run there", on the very host one runs, a QA pass)."""
    standby = read_json(directory / STANDBY_FILE)
    if not isinstance(standby, dict):
        return (f"TITAN_DATA_DIR={directory} holds no {MASTER_FILE}: no Titan master has run "
                "there (unset it to find one elsewhere)")
    leader = standby.get("leader")
    where = f"the leader, {leader}" if isinstance(leader, str) and leader else "the leader"
    url = standby.get("url") or "on this host"
    if (directory / TOKEN_FILE).exists():
        # It led before (a failover made it a standby again): its admin token is the
        # cluster's, good on the leader — it said "has not led yet ... no admin token" (QA).
        return (f"TITAN_DATA_DIR={directory} is the data dir of a standby master ({url}): it "
                f"leads no more. Run this against {where}, with --master and the admin token "
                f"this dir holds (TITAN_TOKEN=$(cat {directory / TOKEN_FILE}))")
    return (f"TITAN_DATA_DIR={directory} is the data dir of a standby master "
            f"({url}) that has not led yet: it holds no "
            f"{MASTER_FILE} and no admin token. Run this against {where}: with TITAN_DATA_DIR "
            "set to the leader's data dir on its host, or with --master and a token "
            "(TITAN_TOKEN)")


def recorded_master(directory: Path) -> tuple[str, str, int] | None:
    """The address recorded in ``<directory>/master.json``, if any."""
    path = directory / MASTER_FILE
    data = read_json(path)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a Titan master file; fix or delete it")
    if data.get("url"):
        return parse_url(str(data["url"]))
    if data.get("host"):
        port = parse_port(data.get("port", DEFAULT_PORT), str(path))
        return parse_url(make_url(str(data["host"]), port))
    raise ConfigError(f"{path} names no master (expected \"url\" or \"host\"/\"port\")")


def data_dirs() -> Iterator[Path]:
    """The data dirs to look in, in order (the walk up from here only once it is reached)."""
    env_dir = os.environ.get("TITAN_DATA_DIR")
    if env_dir:
        yield Path(env_dir).expanduser()
    # The nearest ./.titan/ holding a master.json, from here up (as git finds .git): from a
    # subfolder of the project where `titan up` runs, the CLI used to fall through to the
    # user config's default, which the latest `titan up` anywhere on the machine had set.
    # Only one this user owns and nobody else may write (as git refuses a .git another user
    # owns, CVE-2022-24765): a .titan planted in a shared folder above the work would send
    # the user's token, store values and scripts to the planter's "master".
    # None found, nothing more: the walk's fallback was ./.titan, so one planted in the current
    # folder itself was used after all, once the check had said it was ignored.
    here = Path.cwd()
    found = next((d / LOCAL_DATA_DIR for d in (here, *here.parents)
                  if (d / LOCAL_DATA_DIR / MASTER_FILE).is_file()
                  and _own(d / LOCAL_DATA_DIR)), None)
    if found is not None:
        yield found


def _own(directory: Path) -> bool:
    """Whether ``directory`` and its master file are this user's alone: owned by them and
    writable by no one else. Warns about one that is not (Python shows each text once)."""
    for path in (directory, directory / MASTER_FILE):
        try:
            st = path.stat()
        except OSError:
            return False
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            why = "belongs to another user" if st.st_uid != os.getuid() \
                else "may be written by other users"
            warnings.warn(
                f"ignoring {directory}: {'it' if path == directory else MASTER_FILE} {why} "
                "(a master's data dir is its user's, mode 0700); name the master with "
                "--host, TITAN_HOST or TITAN_DATA_DIR if it is yours", stacklevel=3)
            return False
    return True


def master_data_dir_around(path: Path) -> Path | None:
    """The master's data dir that ``path`` is or lies in, else None: the one
    ``$TITAN_DATA_DIR`` names (`titan up` names its own to its worker; it may be new, with
    nothing in it yet), or the nearest of ``path`` and its parents holding one of
    :data:`MASTER_MARKS`. ``path`` need not exist yet."""
    path = path.resolve()
    named = os.environ.get("TITAN_DATA_DIR")
    if named:
        known = Path(named).expanduser().resolve()
        if path == known or known in path.parents:
            return known
    # os.path.exists, not Path.exists: a parent this user may not list is no data dir of theirs.
    return next((d for d in (path, *path.parents)
                 if any(os.path.exists(d / mark) for mark in MASTER_MARKS)), None)


def workspace_around(path: Path) -> Path | None:
    """The worker's workspace (``<workdir>/titan_workspace``, with its ``shared/`` and
    ``.cache/``) that ``path`` is or lies in, else None."""
    path = path.resolve()
    return next((d for d in (path, *path.parents) if d.name == WORKSPACE_DIR
                 and os.path.isdir(d / "shared") and os.path.isdir(d / ".cache")), None)
