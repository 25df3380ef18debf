"""Whether a master's blob store is the one its database's blobs went to.

Rows name blobs by their SHA-256 (uploaded scripts, artifacts, large payloads): a master whose
blob store is not its database's (a standby left on its own host's directory, a moved
``TITAN_BLOB_DIR``) serves the same rows without their blobs, and at a failover every job whose
script is not there fails. Nothing said so: the standby joined, took over, and jobs failed.

So the leader leaves a *mark* in its store, a small blob of its own, and records its hash in
the database (``meta.blob_store_mark``). Every master looks for that blob in its own store
before it serves:

* a standby that does not find it refuses to start, naming both stores (the leader records
  its own beside the mark, ``meta.blob_store_where``, with its host for a directory): at a
  failover it would lead without the blobs. Often the leader is the odd one out — a master
  that ran alone on its data dir's blobs, joined by standbys set up as the docs say — so the
  refusal says that the leader, too, moves to the shared store;
* a master about to lead (one master on SQLite, or no leader alive) is told loudly on its log
  that blobs recorded before may be missing, then marks its store: moving to a new store is
  allowed, never silent. ``titan master`` and ``titan up`` mark it before the app starts
  (:func:`leave`), so a store that cannot take the mark (a full disk, a read-only mount) stops
  them with a one-line error; the app's own start marks it only when nothing did before.
"""

from __future__ import annotations

import logging
import secrets
import socket

from titan.errors import ConfigError
from titan.storage.base import Storage, Transaction
from titan.storage.blobs.base import BlobStore

log = logging.getLogger("titan.master")
KEY = "blob_store_mark"
#: ``meta`` key: the store the leader that left the mark uses, as a standby's refusal names it.
WHERE = "blob_store_where"


def where(blobs: BlobStore) -> str:
    """The store as another host's master names it: a directory means nothing without its host."""
    if blobs.description.startswith("directory "):
        return f"{blobs.description} on host {socket.gethostname()}"
    return blobs.description


def record(tx: Transaction, mark: str | None, blobs: BlobStore) -> None:
    """At the leader's start: the new mark :func:`ensure` made (if any), and where its store is."""
    if mark is not None:
        tx.set_meta(KEY, mark)
    if tx.get_meta(WHERE) != where(blobs):
        tx.set_meta(WHERE, where(blobs))


def check_standby(tx: Transaction, blobs: BlobStore) -> None:
    """Before a standby serves: ConfigError if its store is not the leader's."""
    mark = tx.get_meta(KEY)
    if mark is not None and not blobs.exists(mark):
        theirs = tx.get_meta(WHERE)
        raise ConfigError(
            f"this master's blob store ({blobs.description}) is not the one the other masters of this "
            f"database use{f' (the leader: {theirs})' if theirs else ''}: it does not hold the "
            f"mark they left in theirs (blob {mark[:12]}). At a failover it would lead without "
            "the scripts, artifacts and payloads they stored. Give every master the same store, "
            "the leader too (restarted with it, its blobs copied there first): "
            "TITAN_BLOB_STORE=database, one S3 bucket, or TITAN_BLOB_DIR on a shared filesystem "
            "(docs/deployment.md#adding-standbys-to-a-running-master)")


def ensure(tx: Transaction, blobs: BlobStore, *, say: bool = True) -> str | None:
    """At the leader's start: the hash of a new mark to record when the store lacks the one
    the database records (said on the log unless not ``say``) or none is recorded yet; None
    when it is in."""
    mark = tx.get_meta(KEY)
    if mark is not None and blobs.exists(mark):
        return None
    if mark is not None and say:
        log.warning("the blob store (%s) is not the one this database's blobs were written "
                    "to: it lacks their mark (blob %s). Scripts, artifacts and payloads "
                    "recorded before may be missing; if the store moved, copy its blobs over",
                    blobs.description, mark[:12])
    return blobs.write_bytes(b"titan blob store mark " + secrets.token_hex(16).encode() + b"\n")


def leave(storage: Storage, blobs: BlobStore) -> None:
    """Before a master about to lead binds its port: whether the store can take a new mark,
    when it needs one (BlobStoreUnwritable when it cannot: a full disk). Neither said nor
    recorded here: the app's start does both (master/app.py), once the port is bound, so a
    start that fails after this (the port in use) does not silence the warning that the store
    is not the database's — it was said only on the start that failed, and a restore without
    its blobs then looked fine. The mark written here stays unrecorded (a few bytes)."""
    with storage.read_transaction() as tx:
        ensure(tx, blobs, say=False)


#: ``meta`` key: this database's id, which names it among its blob store's users (and as
#: its owner: master/blob_gc.py).
DATABASE_ID = "database_id"


def record_use(storage: Storage, blobs: BlobStore, *, lead: bool) -> None:
    """At a master's start: record this database as a user of ``blobs``, so that a store two
    databases share is collected by neither (the owner learned of the other only if that
    one collected: it deleted blobs the other's jobs needed). A master about to lead makes
    the database's id if it has none; a standby records the leader's (none yet: the leader
    will). A store that cannot take the record is said, not fatal: collection then runs
    on what it knows, as before."""
    with storage.read_transaction() as tx:
        me = tx.get_meta(DATABASE_ID)
    if me is None and lead:
        with storage.transaction() as tx:
            me = tx.get_meta(DATABASE_ID)
            if me is None:
                me = secrets.token_hex(16)
                tx.set_meta(DATABASE_ID, me)
    if me is None:
        return
    try:
        others = sorted(blobs.users(me) - {me})
    except Exception as exc:  # OSError, a bucket's refusal: the start goes on
        log.warning("could not record this database as a user of the blob store (%s): %s",
                    blobs.description, exc)
        return
    if others:
        log.warning("the blob store (%s) is shared with another Titan database (%s): blob "
                    "garbage collection leaves it alone, here and there; give each database "
                    "a store of its own", blobs.description, ", ".join(o[:40] for o in others))
