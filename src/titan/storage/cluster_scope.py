"""Which Titan cluster of a PostgreSQL database: one per schema.

Several clusters may share one database, each in a schema of its own (``?options=-csearch_path
%3Dteam_a`` in the URL): their tables are apart, so what they coordinate with must be too.
Advisory locks are database-wide and ``pg_stat_activity`` lists every session of the server,
so both carry the schema the master's tables live in (``current_schema()``):

- the lock keys (the scheduler's and the migrations') are the base key for ``public``, as
  before schemas counted, and a key derived from the schema for any other;
- every connection of a master is named ``titan-master-<node>@<schema>`` in
  ``application_name``, so a standby ends only its own cluster's connections and an upgrade
  waits only for its own cluster's masters. A name without ``@`` is an older Titan's, whose
  schema nobody can tell: counted as this cluster's, to be safe.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import Connection, text

APP_PREFIX = "titan-master-"
# application_name keeps 63 bytes of printable ASCII: a schema name that would not fit whole
# (or would be mangled) is named by a hash.
_PLAIN = re.compile(r"^[A-Za-z0-9_$-]{1,36}\Z")


def current_schema(conn: Connection) -> str:
    """The schema this connection creates and finds Titan's tables in."""
    return str(conn.execute(text("SELECT current_schema()")).scalar() or "public")


def lock_key(base: int, schema: str) -> int:
    """The advisory lock key ``base`` stands for in ``schema``: ``base`` itself in ``public``
    (so masters of a Titan from before agree with this one there), a signed 64-bit key from
    both in any other."""
    if schema == "public":
        return base
    digest = hashlib.sha256(f"titan:{base}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def scope_tag(schema: str) -> str:
    """The schema as connection names carry it."""
    if _PLAIN.match(schema):
        return schema
    return "h" + hashlib.sha256(schema.encode()).hexdigest()[:16]


def app_name(node: str, schema: str) -> str:
    """The ``application_name`` of every connection of master ``node`` in ``schema``."""
    return f"{APP_PREFIX}{node}@{scope_tag(schema)}"


def same_cluster(name: str, schema: str) -> bool:
    """Whether a session named ``name`` may be a master of this schema's cluster."""
    if not name.startswith(APP_PREFIX):
        return False
    _, at, tag = name.partition("@")
    return not at or tag == scope_tag(schema)
