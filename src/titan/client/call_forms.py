"""How seed 001's module-level calls take their arguments: ``publish_artifact(key,
filename)``, ``get_artifact(key, save_path=...)``, ``wait_for_signal(client, key)``. A
:class:`~titan.client.TitanClient` may come first (or be named ``client=``) or be left out;
the rest come by position or by the name the seed gives them, as the client's methods take
them."""

from __future__ import annotations

from typing import Any

from titan.client.client import TitanClient
from titan.errors import ValidationFailed


def client_and_arguments(args: tuple[Any, ...], client: Any, named: dict[str, Any],
                         required: int, usage: str) -> tuple[TitanClient | None, list[Any]]:
    """(the client the caller gave, or None; the values of ``named`` in order): by position
    after an optional client, else by name (``named``: each name's keyword value, None when
    not given). One given both ways, a required one (the first ``required`` names) given
    neither way, or too many, is a usage error naming it, raised before anything is sent."""
    if args and isinstance(args[0], TitanClient):
        if client is not None:
            raise ValidationFailed(f"usage: {usage}: got the client twice (first and client=)")
        client, args = args[0], args[1:]
    names = list(named)
    if len(args) > len(names):
        raise ValidationFailed(f"usage: {usage}, or with a TitanClient first; got "
                               f"{len(args)} argument(s) besides the client")
    values = [*args, *[None] * (len(names) - len(args))]
    for i, name in enumerate(names):
        if named[name] is not None:
            if i < len(args):
                raise ValidationFailed(f"usage: {usage}: got {name} twice (by position and "
                                       f"as {name}=)", details={"field": name})
            values[i] = named[name]
    missing = [name for name, value in zip(names[:required], values, strict=False)
               if value is None]
    if missing:
        raise ValidationFailed(f"usage: {usage}, or with a TitanClient first; "
                               f"{', '.join(missing)} not given", details={"field": missing[0]})
    if client is not None and not isinstance(client, TitanClient):
        raise ValidationFailed(f"usage: {usage}: client= takes a TitanClient, got {client!r}",
                               details={"field": "client"})
    return client, values
