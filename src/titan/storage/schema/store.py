"""The key-value store, blobs (and their bodies in the database), and named files."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from titan.storage.schema.core import metadata

store_values = Table(
    "store_values",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

store_sets = Table(
    "store_sets",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("member", Text, primary_key=True),
    Column("added_at", Float, nullable=False),
)

# Every blob this database stored. ``used_at`` (migration 21) is when it was last stored
# again or vouched for (``POST /blobs/missing`` answered that it is there); NULL, its
# created_at. Garbage collection (master/blob_gc.py) deletes a blob only when that time is
# older than its grace period and nothing names it (storage/blob_refs.py).
blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),  # uploads may pass 2 GiB
    Column("created_at", Float, nullable=False),
    Column("used_at", Float),
)

# Blob bodies when TITAN_BLOB_STORE=database (storage/blobs/database.py): each blob in chunks
# of at most 1 MiB numbered from 0, all of them written in one transaction, so a blob is whole
# or absent. Chunk 0 exists for every blob, an empty one too: it is the blob's existence and
# the row concurrent writers of the same content meet on. Empty under the other stores.
blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("sha256", String(64), ForeignKey("blobs.sha256"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("store_key", String(1024)),
    Column("dag_id", Integer),
    Column("job", Integer),
    Column("created_at", Float, nullable=False),
    # Who uploaded or published this version: the token's name, a job's ``dag#run/job``
    # (NULL: stored before Titan recorded it, migration 28).
    Column("created_by", String(300)),
    Index("ix_files_name", "name", "id"),
    Index("ix_files_key", "store_key", "id"),
    Index("ix_files_dag", "dag_id", "id"),
)
