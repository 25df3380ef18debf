"""The storage interface's data part: TitanStore keys and sets, content-addressed blobs and
the named files that point at them (contract: tests/contract/test_storage.py and, for what
garbage collection asks, tests/contract/test_storage_blobs.py)."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence

from titan.storage.rows import Row


def whole_keys(rows: Sequence[Row], limit: int) -> tuple[list[Row], bool]:
    """A page of :meth:`StoreTransaction.store_keys` rows read with ``limit + 2``: its first
    ``limit`` rows, and whether more follow. A key holding both a value and a set is never
    split across pages (the page takes its set too: ``limit + 1`` rows), so the last key is a
    cursor that loses nothing: a page that ended on a key's value, the next one starting after
    that key, left its set out of every page."""
    page = list(rows[:limit])
    if page and len(rows) > limit and rows[limit]["key"] == page[-1]["key"]:
        page.append(rows[limit])
    return page, len(rows) > len(page)


class StoreTransaction(abc.ABC):
    """What jobs share through the master."""

    # -- store --------------------------------------------------------------------------------
    @abc.abstractmethod
    def store_get(self, key: str) -> str | None:
        """The string value at key, or None."""

    @abc.abstractmethod
    def store_put(self, key: str, value: str, now: float) -> None:
        """Set the string value at key."""

    @abc.abstractmethod
    def store_delete(self, key: str) -> bool:
        """Delete the value and the set at key; True if anything was there."""

    @abc.abstractmethod
    def store_delete_value(self, key: str) -> bool:
        """Delete the value at key (not a set there); True if there was one."""

    @abc.abstractmethod
    def store_incr(self, key: str, by: int, now: float) -> int:
        """Atomically add ``by`` to the integer at key (missing counts as 0); the new value.
        Raises ValidationFailed when the current value is not an integer."""

    @abc.abstractmethod
    def store_sadd(self, key: str, member: str, now: float) -> int:
        """Add a member to the set at key: 1 if it was new, 0 if already present."""

    @abc.abstractmethod
    def store_smembers(self, key: str) -> list[str]:
        """Members of the set at key, sorted (empty when missing)."""

    @abc.abstractmethod
    def store_values_cut(self, keys: Sequence[str], chars: int) -> dict[str, tuple[str, int]]:
        """The value at each of these keys cut to its first ``chars`` characters, with its
        whole length in characters; keys without a value left out. A page of keys is read at
        once (the Store page read its keys one query each), and a large value is not read
        whole."""

    @abc.abstractmethod
    def store_members_cut(self, keys: Sequence[str],
                          limit: int) -> dict[str, tuple[list[str], int]]:
        """The first ``limit`` members (sorted, as :meth:`store_smembers`) of the set at each
        of these keys, with its member count; keys without a set left out."""

    @abc.abstractmethod
    def store_kinds(self, key: str) -> tuple[str, ...]:
        """What key holds: ``("value",)``, ``("set",)``, ``()`` when nothing, or
        ``("value", "set")`` for a key written with both before the API kept one kind per key
        (``master/api/store.py`` refuses the other kind: this read is what it asks)."""

    @abc.abstractmethod
    def store_keys(self, prefix: str, limit: int, after: str | None = None) -> list[Row]:
        """Keys starting with prefix (and sorting after ``after``, the last key of the page
        before), sorted: key, kind ('value' or 'set'), updated_at; a key holding both a value
        and a set is listed twice, the value first."""

    # -- blobs and files ----------------------------------------------------------------------
    @abc.abstractmethod
    def blobs_present(self, shas: Iterable[str]) -> set[str]:
        """Which of these content hashes are recorded as stored."""

    @abc.abstractmethod
    def add_blob(self, sha256: str, size: int, now: float) -> None:
        """Record a stored blob (idempotent); one recorded before counts as used ``now``
        (garbage collection spares it for a grace period from then)."""

    @abc.abstractmethod
    def use_blobs(self, shas: Iterable[str], now: float) -> set[str]:
        """Which of these blobs are recorded; those count as used ``now`` (a client told a
        blob is there names it a moment later: the grace period runs from here)."""

    @abc.abstractmethod
    def stale_blobs(self, before: float) -> Iterator[tuple[str, int]]:
        """(sha256, size) of every recorded blob last stored or used before ``before``, by
        name, read a page at a time as the iterator is consumed."""

    @abc.abstractmethod
    def blob_references(self) -> Iterator[str]:
        """Every blob name the database holds anywhere (``storage/blob_refs.py``: the one
        list), a name as often as it is found, read a page at a time."""

    @abc.abstractmethod
    def delete_blobs(self, shas: Iterable[str], before: float) -> list[tuple[str, int]]:
        """Forget those of these blobs still last stored or used before ``before``; the
        (sha256, size) forgotten. Their bodies are the blob store's to delete, after."""

    @abc.abstractmethod
    def add_file(self, row: Row) -> int:
        """Bind a name to a blob: name, sha256, size, store_key, dag_id, job, created_at,
        created_by (who uploaded it)."""

    @abc.abstractmethod
    def latest_file(self, *, name: str | None = None, store_key: str | None = None,
                    sha256: str | None = None) -> Row | None:
        """The newest file with that name, or published under that store key (and, with
        ``sha256``, only one of those bodies: an archive job's pinned project)."""

    @abc.abstractmethod
    def latest_files_by_key(self, keys: Sequence[str]) -> dict[str, Row]:
        """The newest file published under each of these store keys (as :meth:`latest_file`
        with ``store_key``), read at once; keys with none left out."""

    @abc.abstractmethod
    def list_files(self, *, dag_id: int | None = None, limit: int = 100,
                   before: int | None = None) -> list[Row]:
        """Files, newest first, optionally only those a DAG's jobs produced, and only those
        older than the file id ``before`` (the next page)."""

    @abc.abstractmethod
    def file_versions(self, *, name: str | None = None,
                      store_key: str | None = None) -> list[Row]:
        """Every file of that name (or published under that store key), oldest first: id,
        name, sha256, size, store_key."""

    @abc.abstractmethod
    def delete_files(self, ids: Sequence[int], *, old_only: bool = False) -> list[Row]:
        """Delete these files (``old_only``: only those that are, now, neither the newest of
        their name nor the newest published under their store key); the rows deleted (id,
        name, size). Their blobs stay until garbage collection finds nothing naming them."""

    @abc.abstractmethod
    def prunable_files(self, *, before: float | None = None, orphaned: bool = False,
                       after: int = 0, limit: int = 500) -> list[int]:
        """Ids (above ``after``, ascending, at most ``limit``) of the files that are neither
        the newest of their name nor the newest published under their store key, and were
        stored before ``before`` or (``orphaned``) published by a job of a DAG run that no
        longer exists (pruned)."""
