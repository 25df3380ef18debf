"""The blob store: content-addressed bodies, kept where every master can reach them.

One interface, :class:`~titan.storage.blobs.base.BlobStore` (``base.py``: what every store
promises), and three stores, picked by ``TITAN_BLOB_STORE`` in :func:`open_blob_store`:

- ``directory`` (the default, ``directory.py``): files under ``<data-dir>/blobs``, or under
  ``TITAN_BLOB_DIR`` — a shared filesystem (NFS) is the simplest store for several masters;
- ``database`` (``database.py``): rows of the Titan database itself, on PostgreSQL;
- ``s3://bucket/prefix`` (``s3.py``): objects in an S3-compatible store (``titan-agents[s3]``).

Domain code sees only the interface: no path, no SQL, no bucket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from titan.errors import ConfigError
from titan.storage.base import Storage
from titan.storage.blobs.base import CHUNK, BlobStore, check_sha256, sha256_problem
from titan.storage.blobs.database import DatabaseBlobStore
from titan.storage.blobs.directory import DirectoryBlobStore
from titan.storage.sql import SQLStorage

log = logging.getLogger("titan.master")

__all__ = ["CHUNK", "BlobSettings", "BlobStore", "DirectoryBlobStore", "check_sha256",
           "open_blob_store", "sha256_problem"]


@dataclass(frozen=True)
class BlobSettings:
    """Which store, and where: TITAN_BLOB_STORE, TITAN_BLOB_DIR and TITAN_S3_ENDPOINT_URL,
    checked together (:meth:`parse`) before the master opens anything."""

    kind: str  # "directory", "database" or "s3"
    #: Where uploads to a database or S3 store are received before they are stored.
    spool_dir: Path
    directory: Path | None = None
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str | None = None

    @classmethod
    def parse(cls, store: str | None, blob_dir: str | None, endpoint_url: str | None, *,
              data_dir: Path, database_url: str) -> BlobSettings:
        """ConfigError, in one line naming the setting, for a value that cannot work."""
        store = (store or "directory").strip()
        spool = data_dir / "spool"
        if blob_dir and store != "directory":
            raise ConfigError(f"TITAN_BLOB_DIR is the directory store's; TITAN_BLOB_STORE is "
                              f"{store!r}: unset one of them")
        if endpoint_url and not store.startswith("s3://"):
            raise ConfigError("TITAN_S3_ENDPOINT_URL is set but TITAN_BLOB_STORE is not an "
                              "s3://bucket/prefix URL: blobs would not go to that endpoint")
        if store == "directory":
            root = Path(blob_dir).expanduser().resolve() if blob_dir else data_dir / "blobs"
            return cls("directory", spool, directory=root)
        if store == "database":
            # On SQLite the database is one file on one host: blobs there reach no other
            # master, and a long upload would hold SQLite's single write lock, stalling every
            # commit of the scheduler while it lasted. The directory store does the same job.
            if not database_url.startswith(("postgresql", "postgres:")):
                raise ConfigError("TITAN_BLOB_STORE=database keeps blobs in a PostgreSQL "
                                  "database; this master's database is SQLite (use the "
                                  "default directory store there)")
            return cls("database", spool)
        if store.startswith("s3://"):
            bucket, _, prefix = store.removeprefix("s3://").partition("/")
            if not bucket:
                raise ConfigError(f"TITAN_BLOB_STORE={store!r} names no bucket: "
                                  "s3://bucket or s3://bucket/prefix")
            return cls("s3", spool, bucket=bucket, prefix=prefix.strip("/"),
                       endpoint_url=endpoint_url or None)
        raise ConfigError(f"TITAN_BLOB_STORE must be directory, database or "
                          f"s3://bucket/prefix, not {store!r}")


def open_blob_store(settings: BlobSettings, storage: Storage, *, announce: bool = True) -> BlobStore:
    """The store ``settings`` name; ``storage`` is the master's open database (the database
    store opens an engine of its own on it). ``announce``: log which store it is (not for a
    check made before the master opens it for good, which logged it twice)."""
    store = _open(settings, storage)
    if announce:
        log.info("blob store: %s", store.description)
    return store


def _open(settings: BlobSettings, storage: Storage) -> BlobStore:
    if settings.kind == "directory":
        assert settings.directory is not None
        return DirectoryBlobStore(settings.directory)
    if settings.kind == "database":
        if not isinstance(storage, SQLStorage) or storage.engine.dialect.name != "postgresql":
            raise ConfigError("TITAN_BLOB_STORE=database needs a PostgreSQL database")
        return DatabaseBlobStore(storage.engine.url, settings.spool_dir)
    # boto3 is an optional extra: the module that needs it is imported for an s3:// store only.
    try:
        from titan.storage.blobs.s3 import S3BlobStore
    except ModuleNotFoundError as exc:
        raise ConfigError(f"TITAN_BLOB_STORE=s3://… needs boto3: pip install 'titan-agents[s3]' "
                          f"({exc})") from exc
    return S3BlobStore(settings.bucket, settings.prefix, settings.spool_dir,
                       endpoint_url=settings.endpoint_url)
