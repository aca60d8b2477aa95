"""Upcasters: pure functions that turn an old stored payload into the current schema.

Rows are never rewritten; every read passes the stored payload through the chain
``v1 -> v2 -> ... -> current`` registered here. Each upcaster takes and returns a plain dict.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from codirector.errors import IntegrityViolation

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn`` as the upgrade of ``type_name`` payloads from ``from_version`` to the next."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return register


def upcast(type_name: str, version: int, payload: Payload, target: int) -> Payload:
    """The payload upgraded from schema ``version`` to ``target`` (the current version of ``type_name``'s class,
    which the caller passes: this module knows only the upcasters, not the event classes)."""
    if version > target:
        raise IntegrityViolation(
            f"{type_name} payload has schema_version {version}, newer than this code's {target}",
            hint="upgrade codirector to read this database",
        )
    if version == target:
        return payload
    data = copy.deepcopy(payload)
    while version < target:
        fn = _UPCASTERS.get((type_name, version))
        if fn is None:
            raise IntegrityViolation(f"no upcaster for {type_name} v{version} -> v{version + 1}")
        data = fn(data)
        version += 1
    return data


@upcaster("EntityRegistered", 1)
def entity_registered_v1_v2(payload: Payload) -> Payload:
    """v1 had ``base`` (not ``base_entity``) and neither ``kind`` nor ``origin``.

    v1 entities came only from the memory controller; their kind was not tracked, so a name
    with the ``bg_`` prefix (the paper's background naming rule) becomes a background and
    everything else ``other``.
    """
    name = payload["name"]
    return {
        "name": name,
        "kind": "background" if name.startswith("bg_") else "other",
        "description": payload.get("description", ""),
        "base_entity": payload.get("base"),
        "origin": "memory_controller",
        "text_embedding": payload.get("text_embedding"),
    }
