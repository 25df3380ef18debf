"""Whether a master serves the certificate its database's clients were told to trust.

Masters of one PostgreSQL database take turns leading, and clients follow whichever leads.
A client that trusts the leader by its certificate — pinned (``TITAN_TLS_FINGERPRINT``, as
every banner suggests) or given as its own CA file (``TITAN_CA_FILE``) — refuses a standby
that took over with a certificate of its own: a pinned worker could not report its running
jobs to the new leader, they ran out their lease and the DAG stalled, with nothing said when
the standby joined.

So the leader records the fingerprint of the certificate it serves in the database
(``meta.tls_fingerprint``), and a master compares its own with it:

* a standby whose certificate is another one starts, and says so loudly on its log with the
  three ways out (the same certificate on every master; a CA file holding every master's
  certificate, or the CA that signed them all; every master's pin, comma-separated). It is
  not refused: certificates of one CA differ from host to host as they should, and clients
  that trust that CA follow every master;
* a master about to lead says the same when its certificate is not the one the previous
  leader recorded, and records its own.

Plain HTTP beside HTTPS is refused outright (master/preflight.py): no client setting bridges that.
"""

from __future__ import annotations

import logging
from pathlib import Path

from titan.client.tls import fingerprint
from titan.master.config import MasterConfig
from titan.storage.base import Transaction

log = logging.getLogger("titan.master")
KEY = "tls_fingerprint"


def own(config: MasterConfig) -> str:
    """This master's certificate's ``sha256:`` fingerprint; "" on plain HTTP."""
    return fingerprint(Path(config.tls_cert)) if config.tls_cert else ""


def mismatch(recorded: str | None, mine: str, leader: str = "", *,
             leading: bool = False) -> str | None:
    """What to tell the operator when ``mine`` is not the certificate ``recorded`` for this
    database's leader (None when it is, or either serves plain HTTP)."""
    if not recorded or not mine or recorded == mine:
        return None
    at = f", at {leader}" if leader else ""
    theirs, when = (("the previous leader served", "now that it leads") if leading else
                    ("the leader serves", "when it takes over"))
    return (f"this master's TLS certificate ({mine}) is not the one {theirs} ({recorded}{at}): "
            "clients that pin that certificate (TITAN_TLS_FINGERPRINT) or trust it alone "
            f"(TITAN_CA_FILE) refuse this master {when}, and workers cannot report their "
            "running jobs to it. Give every master the same certificate and key; or give "
            "clients a TITAN_CA_FILE that holds every master's certificate (or the CA that "
            f"signed them all); or pin them all: TITAN_TLS_FINGERPRINT={recorded},{mine} "
            "(docs/deployment.md)")


def check_standby(tx: Transaction, config: MasterConfig, leader: str = "") -> None:
    """Before a standby serves: say loudly when its certificate is not the leader's."""
    said = mismatch(tx.get_meta(KEY), own(config), leader)
    if said is not None:
        log.warning("%s", said)


def ensure(tx: Transaction, config: MasterConfig) -> str | None:
    """At the leader's start: this master's fingerprint to record ("" on plain HTTP) when the
    database records another (said on the log if both serve TLS); None when it is recorded."""
    recorded, mine = tx.get_meta(KEY), own(config)
    if recorded == mine:
        return None
    said = mismatch(recorded, mine, leading=True)
    if said is not None:
        log.warning("%s", said)
    return mine
