"""Remembering a master that starts, and forgetting it when it stops: ``<data_dir>/master.json``
and its entry (URL, token, certificate fingerprint) in the user config, where clients find it
(:mod:`titan.client.config` reads both); and a standby master that has not led yet, by
``<data_dir>/standby.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from titan.atomic import atomic_file
from titan.client.config import CONFIG_FILE, config_dir, load_user_config
from titan.client.data_dirs import MASTER_FILE, STANDBY_FILE
from titan.client.urls import parse_url
from titan.errors import ConfigError
from titan.permissions import private_dir, secure_tree


def _write_private(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` atomically, the file created with ``mode`` from the start."""
    with atomic_file(path, mode, durable=True) as fh:
        fh.write(text.encode("utf-8"))


def record_master(url: str, token: str | None, data_dir: str | os.PathLike[str], *,
                  dashboard_port: int | None = None, fingerprint: str | None = None) -> Path:
    """Remember a master: ``<data_dir>/master.json`` and the user config (mode 0600), with the
    ``sha256:`` fingerprint of its TLS certificate when it serves HTTPS.

    The user config's ``default`` becomes this master, and its token is recorded under its
    URL. A corrupt user config is refused with a :class:`ConfigError` naming the file rather
    than overwritten: it may hold the tokens of other masters. Returns the config file path.
    """
    normalized, host, port = parse_url(url)
    directory = Path(data_dir)
    found: dict[str, Any] = {"url": normalized, "host": host, "port": port}
    if dashboard_port:
        found["dashboard_port"] = dashboard_port
    try:
        private_dir(directory)  # the master made it already; private if not (a data dir)
        _write_private(directory / MASTER_FILE, json.dumps(found, indent=2) + "\n", 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {directory / MASTER_FILE}: {exc}") from None

    cfg_dir = config_dir()
    path = cfg_dir / CONFIG_FILE
    config = load_user_config()
    masters = config.setdefault("masters", {})
    entry = masters.get(normalized)
    if not isinstance(entry, dict):
        entry = {}
    elif token and entry.get("token") not in (None, token):
        # Someone's own entry for this URL (another master there before, a token kept by
        # hand): put back as it was when this master stops.
        entry = {"replaced": {k: v for k, v in entry.items() if k != "replaced"}}
    if token:
        entry["token"] = token
    entry.pop("ca_file", None)  # what an earlier version recorded for an https master
    if fingerprint:  # an https master: its clients here pin its certificate (client/tls.py)
        entry["fingerprint"] = fingerprint
    else:
        entry.pop("fingerprint", None)
    before = config.get("default")
    if isinstance(before, str) and before != normalized:
        entry["previous_default"] = before  # the default again when this one stops
    masters[normalized] = entry
    config["default"] = normalized
    _write_user_config(cfg_dir, path, config)
    return path


def forget_master(url: str, token: str | None = None) -> None:
    """A master that stops: its entry (and token) leave the user config, the entry that was
    there before it comes back, and the default goes back to the master that was the default
    before it, if it is still recorded. The default stayed on a stopped `titan up`, and
    clients found it before a running one. An entry another master has recorded since (a
    token that is not ``token``) is left alone."""
    normalized, _, _ = parse_url(url)
    cfg_dir = config_dir()
    path = cfg_dir / CONFIG_FILE
    config = load_user_config()
    masters = config.get("masters")
    if not isinstance(masters, dict) or normalized not in masters:
        return
    entry = masters[normalized]
    if token is not None and isinstance(entry, dict) and entry.get("token") != token:
        return
    replaced = entry.get("replaced") if isinstance(entry, dict) else None
    if isinstance(replaced, dict):
        masters[normalized] = replaced
    else:
        del masters[normalized]
    if config.get("default") == normalized and not isinstance(replaced, dict):
        before = entry.get("previous_default") if isinstance(entry, dict) else None
        if isinstance(before, str) and before in masters:
            config["default"] = before
        else:
            config.pop("default", None)
    _write_user_config(cfg_dir, path, config)


def record_standby(data_dir: str | os.PathLike[str], url: str, leader: str | None) -> None:
    """A standby master that has not led: ``<data_dir>/standby.json`` says so, for a client
    pointed at this data dir (it holds no master.json, nor an admin token, until it leads)."""
    directory = Path(data_dir)
    try:
        private_dir(directory)
        _write_private(directory / STANDBY_FILE,
                       json.dumps({"url": url, "leader": leader}, indent=2) + "\n", 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {directory / STANDBY_FILE}: {exc}") from None


def forget_standby(data_dir: str | os.PathLike[str]) -> None:
    """The standby leads, or stops: its ``standby.json`` goes."""
    (Path(data_dir) / STANDBY_FILE).unlink(missing_ok=True)


def _write_user_config(cfg_dir: Path, path: Path, config: dict[str, Any]) -> None:
    try:
        # It keeps a token per master: loosened modes are tightened, with a warning.
        secure_tree(cfg_dir, what="command", only_titans=False)
        _write_private(path, json.dumps(config, indent=2, sort_keys=True) + "\n", 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from None
