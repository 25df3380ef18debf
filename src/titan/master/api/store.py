"""TitanStore: shared strings and sets, atomic counters, and waiting for a key.

A key holds one kind of thing: a value (a string; a counter is a value holding an integer,
and a published artifact's key a value naming its file) or a set. An operation on a key of
the other kind is :class:`~titan.errors.WrongKind` (409), as Redis's WRONGTYPE: a set read as
a value answered ``None`` as if absent, a wait on it never ended, and a put or an increment
wrote a value beside it. Delete the key to store the other kind. A key written with both
before this rule still reads both; a write to it is refused until it is deleted."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Body, Query, Request

from titan.errors import PayloadTooLarge, ValidationFailed, WaitTimeout, WrongKind
from titan.master.api.body import JSONRoute
from titan.master.api.deps import API_PREFIX, CtxDep, Reader, Writer, still_valid
from titan.master.api.params import check_key, check_new_key, check_unreserved
from titan.master.context import Ctx
from titan.master.idempotency import key_of, once, scope_of
from titan.master.scheduling.lending import lending
from titan.storage.base import Row
from titan.storage.base_store import StoreTransaction, whole_keys

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["store"])

#: What a parked wait is handed when a set is made at its key: a value cannot come now.
_SET_MADE = object()
#: What to do instead, by what the key holds and what was asked of it (a read, a write).
_INSTEAD = {
    ("set", "read"): "read its members with store_smembers (GET /store/sets/...)",
    ("value", "read"): "read it with store_get (GET /store/values/...)",
    ("set", "write"): "nothing was written; delete the key (store_delete) to put a value "
                      "there, or use another key",
    ("value", "write"): "nothing was added; delete the key (store_delete) to make a set "
                        "there, or use another key",
}


def wrong_kind(key: str, holds: str, asked: str) -> WrongKind:
    """The 409 for an operation of the other kind on ``key``, which ``holds`` a value or a
    set; ``asked``: ``"read"`` or ``"write"``."""
    wanted = "value" if holds == "set" else "set"
    shown = f"{key[:100]!r}{'…' if len(key) > 100 else ''}"
    return WrongKind(f"store key {shown} holds a {holds}, not a {wanted}: "
                     f"{_INSTEAD[(holds, asked)]}", details={"key": key, "holds": holds})


def writable(tx: StoreTransaction, key: str, kind: str) -> None:
    """Refuse, in the write's own transaction, to write a ``kind`` ("value" or "set") at a
    key that holds the other kind (both, for a key written before one kind per key)."""
    other = "set" if kind == "value" else "value"
    if other in tx.store_kinds(key):
        raise wrong_kind(key, other, "write")


def read_value(tx: StoreTransaction, key: str) -> str | None:
    """The value at ``key``; None when the key holds nothing, WrongKind when it holds a set."""
    value = tx.store_get(key)
    if value is None and "set" in tx.store_kinds(key):  # only a miss pays for the look
        raise wrong_kind(key, "set", "read")
    return value


def _members(tx: StoreTransaction, key: str) -> list[str]:
    members = tx.store_smembers(key)
    if not members and "value" in tx.store_kinds(key):
        raise wrong_kind(key, "value", "read")
    return members


def _string(c: Ctx, body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise ValidationFailed(f"'{field}' must be a string (store values are strings; "
                               "serialise other data, e.g. with json.dumps)",
                               details={"field": field})
    if "\x00" in value:
        raise ValidationFailed(f"'{field}' may not contain NUL characters",
                               details={"field": field})
    if len(value.encode("utf-8", "surrogatepass")) > c.config.max_value_bytes:
        raise PayloadTooLarge(f"store values are limited to {c.config.max_value_bytes} bytes")
    return value


def _announce(c: Ctx, key: str, value: str | None, op: str) -> None:
    c.hub.notify(("store", key), value)
    c.hub.publish("store_updated", {"key": key, "op": op})


@router.get("/store", summary="List keys by prefix, a page at a time")
async def keys(c: CtxDep, p: Reader, prefix: str = "", limit: int = Query(100, ge=1, le=10_000),
               after: str | None = Query(None, description=(
                   "the page's keys sort after this one: the `next` of the page before"))) -> Row:
    found = await c.engine.read(lambda tx: tx.store_keys(prefix, limit + 2, after))
    # Two rows more than the page: whether more follow (no count is kept: a store of
    # millions of keys would pay for it on every page), and a key's set after its value on
    # the page's last row, which the page takes too (whole_keys: the cursor is a key).
    page, more = whole_keys(found, limit)
    return {"keys": page, "next": page[-1]["key"] if more else None}


@router.get("/store/values/{key:anytext}", summary="Get a value (null when missing)")
async def get_value(c: CtxDep, p: Reader, key: str) -> Row:
    check_key(key)
    return {"key": key, "value": await c.engine.read(lambda tx: read_value(tx, key))}


@router.put("/store/values/{key:anytext}", summary="Set a value")
async def put_value(c: CtxDep, p: Writer, key: str, body: dict[str, Any] = Body(...)) -> Row:
    check_unreserved(check_new_key(key))
    value = _string(c, body, "value")
    now = time.time()

    def put(tx: StoreTransaction) -> None:
        writable(tx, key, "value")
        tx.store_put(key, value, now)

    await c.engine.run(put)
    _announce(c, key, value, "put")
    return {"key": key, "value": value}


@router.delete("/store/values/{key:anytext}", summary="Delete a value or a set")
async def delete_value(c: CtxDep, p: Writer, key: str) -> Row:
    check_unreserved(check_key(key))
    deleted = await c.engine.run(lambda tx: tx.store_delete(key))
    if deleted:
        c.hub.publish("store_updated", {"key": key, "op": "delete"})
    return {"key": key, "deleted": deleted}


@router.post("/store/incr/{key:anytext}", summary="Atomically add to an integer value")
async def incr(c: CtxDep, p: Writer, key: str, request: Request,
               body: dict[str, Any] = Body(default={})) -> Row:
    check_unreserved(check_new_key(key))
    by = body.get("by", 1)
    if isinstance(by, bool) or not isinstance(by, int):
        raise ValidationFailed("'by' must be an integer", details={"field": "by"})
    now = time.time()
    scope = await scope_of(request, p)

    def add(tx: StoreTransaction) -> int:
        writable(tx, key, "value")
        return tx.store_incr(key, by, now)

    value, replayed = await c.engine.run(once(key_of(request), scope, add))
    if not replayed:
        _announce(c, key, str(value), "incr")
    return {"key": key, "value": value}


@router.post("/store/sets/{key:anytext}", summary="Add a member to a set (1 if new, 0 if present)")
async def sadd(c: CtxDep, p: Writer, key: str, request: Request,
               body: dict[str, Any] = Body(...)) -> Row:
    check_unreserved(check_new_key(key))
    member = _string(c, body, "member")
    now = time.time()
    scope = await scope_of(request, p)

    def add(tx: StoreTransaction) -> int:
        writable(tx, key, "set")
        return tx.store_sadd(key, member, now)

    added, replayed = await c.engine.run(once(key_of(request), scope, add))
    if added and not replayed:
        # A wait parked on the key for a value is told at once: none can come while the set
        # is there (it waited out its timeout for nothing).
        c.hub.notify(("store", key), _SET_MADE)
        c.hub.publish("store_updated", {"key": key, "op": "sadd"})
    return {"key": key, "added": added}


@router.get("/store/sets/{key:anytext}", summary="Members of a set")
async def smembers(c: CtxDep, p: Reader, key: str) -> Row:
    check_key(key)
    return {"key": key, "members": await c.engine.read(lambda tx: _members(tx, key))}


@router.get("/store/wait/{key:anytext}", summary="Long-poll until the key has a value")
async def wait_key(c: CtxDep, p: Reader, request: Request, key: str,
                   timeout: float = Query(30, ge=0, le=300)) -> Row:
    check_key(key)
    waiter = c.hub.waiter(("store", key))
    try:
        value = await c.engine.read(lambda tx: read_value(tx, key))
        if value is None:
            try:
                with lending(c.engine, p):
                    await c.hub.until(waiter, timeout=timeout, guard=still_valid(request))
                    value = waiter.result()
            except TimeoutError:
                raise WaitTimeout(f"store key {key!r} was not set within {timeout:g}s",
                                  details={"key": key}) from None
            if value is _SET_MADE:
                raise wrong_kind(key, "set", "read")
        return {"key": key, "value": value}
    finally:
        c.hub.discard(("store", key), waiter)
