"""TitanStore: shared strings and sets, atomic counters, and waiting for a key."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Body, Query, Request

from titan.errors import PayloadTooLarge, ValidationFailed, WaitTimeout
from titan.master.api.body import JSONRoute
from titan.master.api.deps import API_PREFIX, CtxDep, Reader, Writer, still_valid
from titan.master.api.params import check_key, check_new_key, check_unreserved
from titan.master.context import Ctx
from titan.master.idempotency import key_of, once, scope_of
from titan.master.scheduling.lending import lending
from titan.storage.base import Row
from titan.storage.base_store import whole_keys

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["store"])
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
    return {"key": key, "value": await c.engine.read(lambda tx: tx.store_get(key))}


@router.put("/store/values/{key:anytext}", summary="Set a value")
async def put_value(c: CtxDep, p: Writer, key: str, body: dict[str, Any] = Body(...)) -> Row:
    check_unreserved(check_new_key(key))
    value = _string(c, body, "value")
    now = time.time()
    await c.engine.run(lambda tx: tx.store_put(key, value, now))
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
    value, replayed = await c.engine.run(
        once(key_of(request), scope, lambda tx: tx.store_incr(key, by, now)))
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
    added, replayed = await c.engine.run(
        once(key_of(request), scope, lambda tx: tx.store_sadd(key, member, now)))
    if added and not replayed:
        c.hub.publish("store_updated", {"key": key, "op": "sadd"})
    return {"key": key, "added": added}


@router.get("/store/sets/{key:anytext}", summary="Members of a set")
async def smembers(c: CtxDep, p: Reader, key: str) -> Row:
    check_key(key)
    return {"key": key, "members": await c.engine.read(lambda tx: tx.store_smembers(key))}


@router.get("/store/wait/{key:anytext}", summary="Long-poll until the key has a value")
async def wait_key(c: CtxDep, p: Reader, request: Request, key: str,
                   timeout: float = Query(30, ge=0, le=300)) -> Row:
    check_key(key)
    waiter = c.hub.waiter(("store", key))
    try:
        value = await c.engine.read(lambda tx: tx.store_get(key))
        if value is None:
            try:
                with lending(c.engine, p):
                    await c.hub.until(waiter, timeout=timeout, guard=still_valid(request))
                    value = waiter.result()
            except TimeoutError:
                raise WaitTimeout(f"store key {key!r} was not set within {timeout:g}s",
                                  details={"key": key}) from None
        return {"key": key, "value": value}
    finally:
        c.hub.discard(("store", key), waiter)
